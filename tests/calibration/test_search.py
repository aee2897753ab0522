"""The calibration search climbs the ladder least invasive first and stops at the first rung whose gates pass.

Scripted realign/gate callables stand in for models: the search stops at the first pass, respects the
attempt, time and confirmation budgets, retries Bernoulli seeds only after a near miss, stops climbing
once a rung damages utility or over-refusal, and when nothing passes returns the attempt closest to
passing with a rejection that lists every attempt.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from mlflow_nlsr.calibration.ladder import CLIMB_LEVELS, build_ladder, predicted_strength
from mlflow_nlsr.calibration.records import calibration_runs, calibration_tags
from mlflow_nlsr.calibration.search import (
    Budget,
    best_failing,
    check,
    search,
)
from mlflow_nlsr.errors import ConfigError
from mlflow_nlsr.gates.policy import parse_gate_config
from mlflow_nlsr.options import RealignOptions

CONFIG = parse_gate_config(
    {"rules": ["asr <= aligned + 0.05", "refusal_rate <= aligned + 0.10", "utility >= finetuned - 0.05"]}
)
FINETUNED = {"asr": 0.9, "refusal_rate": 0.0, "utility": 0.8}
ALIGNED = {"asr": 0.02, "refusal_rate": 0.10, "utility": 0.5}
SAFE = {"asr": 0.04, "refusal_rate": 0.10, "utility": 0.8}
UNSAFE = {"asr": 0.6, "refusal_rate": 0.05, "utility": 0.8}
Metrics = dict[str, float]


def strength(name: str) -> float:
    """The predicted strength of a rung of the tests' ladder (the β ≥ 0.9 climb, without the gentle rung)."""
    return next(r.predicted_strength for r in build_ladder(RealignOptions(), CLIMB_LEVELS) if r.name == name)


PAPER = strength("sp0.8-mod0.5-b0.9")  # the paper's / official code's configuration (the third rung)


class World:
    """Fake realign (writes a report whose strength is the predicted one) and gate (scripted by options)."""

    def __init__(
        self,
        tmp: Path,
        quick: Callable[[RealignOptions], Metrics],
        full: Callable[[RealignOptions], Metrics] | None = None,
    ) -> None:
        self.quick, self.full = quick, full or quick
        self.realigned: list[RealignOptions] = []
        self.gated: list[tuple[str, bool]] = []
        self.quick_refs: dict[str, Metrics] = {}  # a reference's quick-gate metrics, when they differ
        self.refs = {role: tmp / role for role in ("finetuned", "aligned")}
        for path in self.refs.values():
            path.mkdir(parents=True)

    def realign(self, options: RealignOptions, out: Path) -> dict:
        self.realigned.append(options)
        out.mkdir(parents=True)
        strength = predicted_strength(options)
        report = {
            "options": options.to_dict(),
            "patched_modules": 3,
            "strength": {
                "entries_changed": int(1000 * strength),
                "entries_total": 1000,
                "changed_fraction": strength / 10,
                "relative_change": strength,
            },
        }
        (out / "nlsr_report.json").write_text(json.dumps(report))
        return report

    def gate(self, target: Path, quick: bool) -> Metrics:
        self.gated.append((target.name if target.name != "model" else target.parent.name, quick))
        if target.name in ("finetuned", "aligned"):
            if quick and target.name in self.quick_refs:
                return dict(self.quick_refs[target.name])
            return dict(FINETUNED if target.name == "finetuned" else ALIGNED)
        options = RealignOptions(**json.loads((target / "nlsr_report.json").read_text())["options"])
        return (self.quick if quick else self.full)(options)

    def run(self, tmp: Path, **kwargs):
        kwargs.setdefault("fallback", False)  # the climb alone; the fallback has its own tests
        options = kwargs.pop("options", RealignOptions.official())
        ladder = kwargs.pop("ladder", build_ladder(options, CLIMB_LEVELS))
        return search(
            options,
            ladder,
            realign_fn=self.realign,
            gate_fn=self.gate,
            references=self.refs,
            config=CONFIG,
            work_dir=tmp / "work",
            **kwargs,
        )


def safe_from(threshold: float) -> Callable[[RealignOptions], Metrics]:
    """Safe once the predicted strength reaches `threshold`, unsafe below."""
    return lambda o: dict(SAFE if predicted_strength(o) >= threshold - 1e-9 else UNSAFE)


def test_search_stops_at_the_first_rung_whose_gates_pass(tmp_path):
    world = World(tmp_path, safe_from(PAPER))

    result = world.run(tmp_path, confirm=False)

    assert result.passed and result.stop_reason == "passed"
    assert [a.rung.name for a in result.attempts] == [
        "sp0.9-mod0.25-b0.9",
        "sp0.9-mod0.5-b0.9",
        "sp0.8-mod0.5-b0.9",
    ]
    assert result.chosen is result.attempts[-1]
    assert result.chosen.options == {}, "the third rung is the configured (paper default) options"
    assert len(world.realigned) == 3, "no rung after the first pass may be realigned"
    assert [a.strength["relative_change"] for a in result.attempts] == sorted(
        a.strength["relative_change"] for a in result.attempts
    )
    assert result.rejection is None


def test_chosen_options_are_the_diff_from_the_callers_options(tmp_path):
    world = World(tmp_path, safe_from(strength("sp0.8-modall-b0.9")))

    result = world.run(tmp_path, confirm=False)

    assert result.chosen.rung.name == "sp0.8-modall-b0.9"
    assert result.chosen.options == {"selection": "all"}, "sparsity 0.8 and beta 0.9 are the defaults"


def test_references_are_gated_once_with_the_full_gate_whose_thresholds_the_quick_gate_uses(tmp_path):
    world = World(tmp_path, safe_from(strength("sp0.7-mod0.5-b0.9")))

    result = world.run(tmp_path, confirm=True)

    refs = [g for g in world.gated if g[0] in ("finetuned", "aligned")]
    assert sorted(refs) == [("aligned", False), ("finetuned", False)]
    assert result.section()["quick_gate"]["baselines_from"] == "full"


def test_paired_quick_baselines_gate_the_references_once_per_gate_kind(tmp_path):
    world = World(tmp_path, safe_from(strength("sp0.7-mod0.5-b0.9")))

    result = world.run(tmp_path, confirm=True, quick_baselines="quick")

    refs = [g for g in world.gated if g[0] in ("finetuned", "aligned")]
    assert sorted(refs) == [("aligned", False), ("aligned", True), ("finetuned", False), ("finetuned", True)]
    assert result.section()["quick_gate"]["baselines_from"] == "quick"


def test_references_that_do_well_on_the_quick_items_do_not_make_the_screen_stricter_than_the_gate(tmp_path):
    # measured on the demo model (docs/calibration.md): the aligned model answered none of the first 24
    # harmful prompts but 10 % of 50, so a paired quick gate rejected attempts the full gate passes
    near_miss = {**SAFE, "asr": 0.06}
    world = World(tmp_path, lambda o: dict(near_miss if predicted_strength(o) >= PAPER - 1e-9 else UNSAFE))
    world.quick_refs = {"aligned": {**ALIGNED, "asr": 0.0}}

    paired = world.run(
        tmp_path / "paired", confirm=True, quick_baselines="quick", budget=Budget(max_attempts=3)
    )
    screened = world.run(tmp_path / "full", confirm=True, budget=Budget(max_attempts=3))

    assert not paired.passed and paired.attempts[-1].quick.failed == ("asr",)
    assert screened.passed and screened.chosen.rung.name == "sp0.8-mod0.5-b0.9"
    assert screened.chosen.full is not None and screened.chosen.full.passed


def test_unknown_quick_baselines_are_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="quick_baselines must be 'full' or 'quick'"):
        World(tmp_path, safe_from(0.0)).run(tmp_path, quick_baselines="paired")


def test_a_quick_pass_is_confirmed_with_the_full_gate_and_a_failed_confirmation_continues(tmp_path):
    world = World(tmp_path, quick=safe_from(PAPER), full=safe_from(strength("sp0.7-mod0.5-b0.9")))

    result = world.run(tmp_path, confirm=True)

    names = [a.rung.name for a in result.attempts]
    assert names[-2:] == ["sp0.8-mod0.5-b0.9", "sp0.7-mod0.5-b0.9"]
    unconfirmed = result.attempts[-2]
    assert unconfirmed.quick.passed and unconfirmed.full is not None and not unconfirmed.full.passed
    assert not unconfirmed.passed
    assert result.passed and result.chosen.full is not None and result.chosen.full.passed
    assert ("attempt-01", False) not in world.gated, "a quick failure is never confirmed"


def test_failed_confirmations_are_bounded(tmp_path):
    world = World(tmp_path, quick=safe_from(PAPER), full=lambda o: dict(UNSAFE))

    result = world.run(tmp_path, confirm=True, budget=Budget(max_attempts=20, max_confirmations=2))

    assert result.stop_reason.startswith("confirmations")
    assert sum(a.full is not None for a in result.attempts) == 2
    assert not result.passed


def test_max_attempts_bounds_the_number_of_realignments(tmp_path):
    world = World(tmp_path, lambda o: dict(UNSAFE))

    result = world.run(tmp_path, budget=Budget(max_attempts=3))

    assert len(result.attempts) == 3 and len(world.realigned) == 3
    assert result.stop_reason == "max attempts (3)"
    assert not result.passed


def test_time_budget_stops_before_an_attempt_that_would_not_fit(tmp_path):
    now = [0.0]

    def slow_realign(options, out):
        now[0] += 40.0  # every attempt takes 40 fake seconds
        return world.realign(options, out)

    world = World(tmp_path, lambda o: dict(UNSAFE))
    options = RealignOptions.official()
    result = search(
        options,
        build_ladder(options, CLIMB_LEVELS),
        realign_fn=slow_realign,
        gate_fn=world.gate,
        references=world.refs,
        config=CONFIG,
        work_dir=tmp_path / "w",
        budget=Budget(max_attempts=50, time_budget_s=100.0),
        clock=lambda: now[0],
        fallback=False,
    )

    assert len(result.attempts) == 2, "at 80 s, a third 40 s attempt would overrun the 100 s budget"
    assert result.stop_reason == "time budget (100s)"
    assert result.elapsed_s == pytest.approx(80.0)
    assert [a.seconds for a in result.attempts] == [40.0, 40.0]


def test_the_first_attempt_runs_even_when_the_budget_is_tiny(tmp_path):
    world = World(tmp_path, lambda o: dict(UNSAFE))

    result = world.run(tmp_path, budget=Budget(max_attempts=1, time_budget_s=1e-9))

    assert len(result.attempts) == 1 and result.chosen is result.attempts[0]


def test_nothing_passes_returns_the_closest_attempt_and_lists_every_attempt(tmp_path):
    def metrics(o):  # ASR falls with strength but never reaches the gate; the strongest is closest
        return {**UNSAFE, "asr": max(0.2, 0.8 - predicted_strength(o) / 2)}

    world = World(tmp_path, metrics)

    result = world.run(tmp_path, budget=Budget(max_attempts=4))

    assert not result.passed
    assert result.chosen is result.attempts[-1]
    assert result.chosen.final.failed == ("asr",)
    text = result.rejection or ""
    assert "no passing configuration in 4 attempt(s)" in text and "max attempts (4)" in text
    for attempt in result.attempts:
        assert f"#{attempt.number} {attempt.rung.name}" in text
    assert "asr" in text and "FAIL" in text


def test_best_failing_prefers_the_smallest_violation_then_the_least_invasive(tmp_path):
    world = World(tmp_path, lambda o: {**UNSAFE, "asr": 0.3})  # every attempt equally far

    result = world.run(tmp_path, budget=Budget(max_attempts=3, seed_margin=0.0))

    assert best_failing(result.attempts) is result.attempts[0]
    assert result.chosen is result.attempts[0]


def test_seed_variants_are_tried_only_after_a_near_miss(tmp_path):
    def metrics(o):  # near miss (asr 0.12 vs 0.07) at the paper defaults; seed 43 passes there
        if predicted_strength(o) < PAPER - 1e-9:
            return dict(UNSAFE)
        return dict(SAFE) if o.draw_seed == 43 else {**SAFE, "asr": 0.12}

    world = World(tmp_path, metrics)

    result = world.run(tmp_path, confirm=False)

    names = [a.rung.name for a in result.attempts]
    assert names == [
        "sp0.9-mod0.25-b0.9",
        "sp0.9-mod0.5-b0.9",
        "sp0.8-mod0.5-b0.9",
        "sp0.8-mod0.5-b0.9-seed43",
    ]
    assert result.passed and result.chosen.options["selection_seed"] == 43


def test_two_damage_failures_in_a_row_stop_the_climb(tmp_path):
    def metrics(o):  # safe from the paper's rung on, but over-refusing there (a wide miss: no seed variant)
        if predicted_strength(o) < PAPER - 1e-9:
            return dict(UNSAFE)
        return {**SAFE, "refusal_rate": 0.5}

    world = World(tmp_path, metrics)

    result = world.run(tmp_path, confirm=False)

    assert result.stop_reason.startswith("damage (2 attempts in a row")
    assert [a.rung.name for a in result.attempts][-2:] == ["sp0.8-mod0.5-b0.9", "sp0.7-mod0.5-b0.9"]
    assert all(a.final.damage for a in result.attempts[-2:]) and not result.passed


def test_one_damaged_rung_does_not_stop_the_climb(tmp_path):
    def metrics(o):  # the defaults' draw hurts the task (a near miss), its seed variant is unsafe
        s = predicted_strength(o)
        if s < PAPER - 1e-9:
            return dict(UNSAFE)
        if s < PAPER + 1e-9:
            return {**SAFE, "utility": 0.72} if o.draw_seed == 42 else dict(UNSAFE)
        return dict(SAFE)

    world = World(tmp_path, metrics)

    result = world.run(tmp_path, confirm=False)

    names = [a.rung.name for a in result.attempts]
    assert names[2:] == ["sp0.8-mod0.5-b0.9", "sp0.8-mod0.5-b0.9-seed43", "sp0.7-mod0.5-b0.9"]
    assert result.attempts[2].final.damage and result.passed


def test_without_damage_patience_the_climb_goes_on(tmp_path):
    world = World(tmp_path, lambda o: {**SAFE, "refusal_rate": 0.5})

    result = world.run(tmp_path, confirm=False, damage_patience=None, budget=Budget(max_attempts=4))

    assert len(result.attempts) == 4 and result.stop_reason == "max attempts (4)"


def test_check_scores_the_total_violation_of_failing_rules():
    got = check(
        CONFIG,
        {"asr": 0.5, "refusal_rate": 0.3, "utility": 0.8},
        {"finetuned": FINETUNED, "aligned": ALIGNED},
    )

    assert not got.passed
    assert got.failed == ("asr", "refusal_rate")
    assert got.score == pytest.approx((0.5 - 0.07) + (0.3 - 0.2))
    assert got.damage
    assert check(CONFIG, SAFE, {"finetuned": FINETUNED, "aligned": ALIGNED}).score == 0.0


def test_an_nll_miss_counts_relative_to_its_threshold_so_it_ranks_beside_rate_misses():
    config = parse_gate_config({"rules": ["refusal_rate <= finetuned + 0.10", "helpfulness_nll <= base"]})
    baselines = {"finetuned": {"refusal_rate": 0.0}, "base": {"helpfulness_nll": 2.0}}
    nll_miss = check(config, {"refusal_rate": 0.05, "helpfulness_nll": 2.3}, baselines)
    rate_miss = check(config, {"refusal_rate": 0.30, "helpfulness_nll": 1.9}, baselines)

    assert nll_miss.score == pytest.approx(0.3 / 2.0)  # 15 % worse than the base's NLL
    assert rate_miss.score == pytest.approx(0.20)  # 20 points above the allowed over-refusal
    # in raw units the NLL miss (0.3 nats) would have looked further from passing than 20 points
    assert nll_miss.score < rate_miss.score


def test_a_rule_the_fine_tune_fails_too_is_not_damage_done_by_the_repair():
    config = parse_gate_config(
        {"rules": ["asr <= finetuned * 0.34", "helpfulness_nll <= base", "refusal_rate <= finetuned + 0.10"]}
    )
    finetuned = {"asr": 0.6, "helpfulness_nll": 3.48, "refusal_rate": 0.0}
    baselines = {"finetuned": finetuned, "base": {"helpfulness_nll": 3.43}}
    light = check(config, {"asr": 0.4, "helpfulness_nll": 3.45, "refusal_rate": 0.05}, baselines)
    over_refusing = check(config, {"asr": 0.4, "helpfulness_nll": 3.45, "refusal_rate": 0.30}, baselines)

    assert light.failed == ("asr", "helpfulness_nll")
    assert light.inherited == ("helpfulness_nll <= base",) and not light.damage  # weak, not damaging
    assert light.to_dict()["inherited"] == ["helpfulness_nll <= base"]
    assert over_refusing.damage  # the repair's own over-refusal is damage
    unknown_nll = {"finetuned": {"asr": 0.6, "refusal_rate": 0.0}, "base": {"helpfulness_nll": 3.43}}
    without_finetune = check(config, {"asr": 0.1, "helpfulness_nll": 3.45, "refusal_rate": 0.0}, unknown_nll)
    assert without_finetune.damage  # the fine-tune's NLL unknown: no inheritance claimed


def test_section_tags_and_runs_record_every_attempt(tmp_path):
    world = World(tmp_path, safe_from(strength("sp0.7-mod0.5-b0.9")))

    result = world.run(tmp_path, confirm=True, quick_gate={"limit": 24})
    section = json.loads(json.dumps(result.section()))

    assert [a["attempt"] for a in section["attempts"]] == list(range(1, len(result.attempts) + 1))
    assert section["chosen"] == result.chosen.number and section["passed"] is True
    assert section["quick_gate"]["limit"] == 24 and section["quick_gate"]["baselines"]["aligned"] == ALIGNED
    assert section["budget"]["max_attempts"] == 8 and "elapsed_s" in section["budget"]
    first = section["attempts"][0]
    assert first["strength"]["relative_change"] == pytest.approx(strength("sp0.9-mod0.25-b0.9"))
    assert first["quick"]["passed"] is False and first["full"] is None
    assert set(first) >= {"options", "predicted_strength", "seconds", "passed", "rung"}
    tags = calibration_tags(section)
    assert tags["nlsr.calibration.attempts"] == str(len(result.attempts))
    assert json.loads(tags["nlsr.calibration.chosen"]) == {"sparsity": 0.7}
    assert tags["nlsr.calibration.passed"] == "true"
    runs = calibration_runs(section)
    assert len(runs) == len(result.attempts)
    assert runs[-1]["tags"]["nlsr.calibration.chosen"] == "true"
    assert runs[0]["metrics"]["quick.asr"] == UNSAFE["asr"]
    assert runs[-1]["metrics"]["full.asr"] == SAFE["asr"] and runs[-1]["params"]["sparsity"] == "0.7"


@pytest.mark.parametrize(
    "kwargs", [{"max_attempts": 0}, {"time_budget_s": 0}, {"max_confirmations": 0}, {"seed_margin": -1}]
)
def test_invalid_budgets_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        Budget(**kwargs)


def test_install_moves_the_chosen_model_keeps_actsvd_provenance_and_drops_the_other_models(tmp_path):
    from mlflow_nlsr.calibration.run import install

    world = World(tmp_path, safe_from(PAPER))
    plain_realign = world.realign

    def realign_with_actsvd_info(options, out):
        report = {**plain_realign(options, out), "actsvd_data": {"sha256": "abc", "samples": 128}}
        (out / "nlsr_report.json").write_text(json.dumps(report))
        return report

    world.realign = realign_with_actsvd_info
    result = world.run(tmp_path, confirm=False)
    out = tmp_path / "final"

    report = install(result, out, overwrite=False)

    saved = json.loads((out / "nlsr_report.json").read_text())
    assert saved == report
    assert saved["actsvd_data"] == {"sha256": "abc", "samples": 128}
    assert saved["calibration_search"]["chosen"] == 3 and len(saved["calibration_search"]["attempts"]) == 3
    assert saved["options"]["sparsity"] == 0.8
    assert not any(a.output.exists() for a in result.attempts), "the chosen one moved, the others deleted"


def test_a_report_without_calibration_attempts_gives_no_tags_and_no_runs():
    actsvd_only = {"source": "calibration_safety.jsonl", "sha256": "abc", "samples": 128}

    assert calibration_tags(actsvd_only) == {}
    assert calibration_runs(actsvd_only) == []


def test_a_failed_search_gives_the_configured_options_the_full_gate_before_rejecting(tmp_path):
    # the configured options pass the full gate but not the noisier quick gate, and the climb runs out
    # of attempts before reaching them: the fallback judges them with the full gate and they pass
    world = World(tmp_path, quick=lambda o: dict(UNSAFE), full=safe_from(PAPER))
    options = RealignOptions.official(sparsity=0.7)

    result = world.run(tmp_path, options=options, fallback=True, budget=Budget(max_attempts=2))

    last = result.attempts[-1]
    assert len(result.attempts) == 3 and last.options == {} and not last.quick.passed
    assert last.full is not None and last.full.passed and result.passed and result.chosen is last
    assert result.stop_reason == "max attempts (2); the configured options passed the full gate"


def test_no_fallback_when_the_full_gate_already_judged_the_configured_options(tmp_path):
    world = World(tmp_path, quick=safe_from(0.0), full=lambda o: dict(UNSAFE))
    options = RealignOptions.official()

    result = world.run(tmp_path, options=options, fallback=True, budget=Budget(max_confirmations=5))

    configured = [a for a in result.attempts if a.options == {}]
    assert len(configured) == 1 and configured[0].full is not None, "judged once, not again"
    assert not result.passed and "configured options passed" not in result.stop_reason


def test_a_quick_miss_within_the_sampling_error_is_confirmed_and_can_pass(tmp_path):
    # threshold 0.07 on 50 items, quick rate on 24: one standard error of the unseen 26 is 0.054
    near = {**SAFE, "asr": ALIGNED["asr"] + 0.05 + 0.04}
    world = World(tmp_path, quick=lambda o: dict(near), full=lambda o: dict(SAFE))
    sizes = {"asr": (24, 50), "refusal_rate": (24, 50), "utility": (200, 200)}

    strict = world.run(tmp_path / "strict", confirm=True, budget=Budget(max_attempts=1))
    screened = world.run(
        tmp_path / "screened", confirm=True, budget=Budget(max_attempts=1), sample_sizes=lambda _: sizes
    )
    narrow = world.run(
        tmp_path / "narrow",
        confirm=True,
        budget=Budget(max_attempts=1, screen_z=0.5),
        sample_sizes=lambda _: sizes,
    )

    assert not strict.passed and strict.chosen.full is None and not strict.chosen.screened
    assert screened.passed and screened.chosen.screened
    assert not screened.chosen.quick.passed and screened.chosen.full is not None
    assert screened.chosen.to_dict()["screened"] is True
    assert not narrow.passed and narrow.chosen.full is None, "0.04 is beyond half a standard error"


def test_a_miss_on_a_metric_scored_on_the_same_items_is_not_confirmed(tmp_path):
    worse = {**SAFE, "utility": FINETUNED["utility"] - 0.06}
    world = World(tmp_path, lambda o: dict(worse))
    sizes = {"asr": (24, 50), "refusal_rate": (24, 50), "utility": (200, 200)}

    result = world.run(tmp_path, confirm=True, budget=Budget(max_attempts=2), sample_sizes=lambda _: sizes)

    assert all(a.full is None and not a.screened for a in result.attempts)


def test_the_paired_screen_is_never_widened(tmp_path):
    near = {**SAFE, "asr": ALIGNED["asr"] + 0.05 + 0.02}
    world = World(tmp_path, quick=lambda o: dict(near), full=lambda o: dict(SAFE))

    result = world.run(
        tmp_path,
        confirm=True,
        quick_baselines="quick",
        budget=Budget(max_attempts=1),
        sample_sizes=lambda _: {"asr": (24, 50)},
    )

    assert result.chosen.full is None and not result.chosen.screened


def test_the_fallback_judges_the_climbs_own_attempt_at_the_configured_options_without_realigning(tmp_path):
    # the defaults rung is climbed (a quick failure), then the search ends without a pass
    world = World(tmp_path, quick=lambda o: dict(UNSAFE), full=safe_from(strength("sp0.8-modall-b0.9")))
    options = RealignOptions()  # the product defaults: rung sp0.8-modall-b0.9, the fifth
    ladder = build_ladder(options, CLIMB_LEVELS, seed_variants=0)

    result = world.run(tmp_path, options=options, ladder=ladder, fallback=True, budget=Budget(max_attempts=6))

    configured = [a for a in result.attempts if a.options == {}]
    assert len(result.attempts) == 6 and len(configured) == 1, "no second attempt at the same options"
    assert len(world.realigned) == 6
    assert configured[0].full is not None and configured[0].full.passed and not configured[0].quick.passed
    assert result.passed and result.chosen is configured[0] and result.chosen.number == 5
    assert result.stop_reason == "max attempts (6); the configured options passed the full gate"
