"""The demo claims "beats" only where the exact McNemar test on the paired gate samples says so."""

from __future__ import annotations

import json

import pytest

from mlflow_nlsr.demo import claims
from mlflow_nlsr.demo.report import check_targets
from mlflow_nlsr.gates.stats import mcnemar_exact

N = 50


def _gate(tmp_path, role, asr, acc, refused):
    """Write ``<role>/samples.jsonl`` as the gate does: 0/1 per safety, sentiment and over-refusal item."""
    rows = []
    for task, score, ones in (("nlsr_safety", "asr", asr), ("nlsr_sentiment", "acc", acc),
                              ("nlsr_overrefusal", "refusal_rate", refused)):  # fmt: skip
        rows += [
            {"task": task, "doc_id": i, "id": f"{task}-{i}", "prompt": f"<user>{task} prompt {i}</user>",
             "response": "…", "scores": {score: 1.0 if i in ones else 0.0}}
            for i in range(N)
        ]  # fmt: skip
    gate_dir = tmp_path / role
    gate_dir.mkdir()
    (gate_dir / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"asr": len(asr) / N, "utility": len(acc) / N, "refusal_rate": len(refused) / N,
            "gate_dir": str(gate_dir)}  # fmt: skip


def _summary(tmp_path, realigned_acc=45, **others):
    realigned = _gate(tmp_path, "realigned", asr={0}, acc=set(range(realigned_acc)), refused={0, 1})
    summary = {"realigned": realigned}
    summary.update({role: _gate(tmp_path, role, **scores) for role, scores in others.items()})
    return summary


def test_a_significantly_lower_asr_at_equal_utility_beats_the_control(tmp_path):
    # the control complied on 26 harmful prompts, NLSR on one of the same: 25 discordant items, all one way
    summary = _summary(tmp_path, random_control={"asr": set(range(26)), "acc": set(range(45)),
                                                 "refused": {0, 1}})  # fmt: skip
    asr = claims.decide("better", claims.ASR, "random_control", summary)
    assert asr["discordant"] == [0, 25] and asr["significant"] and asr["holds"]
    assert asr["p"] == pytest.approx(mcnemar_exact(0, 25).p_value) and asr["p"] < 1e-7
    assert asr["verdict"] == "beats" and asr["values"] == [0.02, 0.52]
    line = claims.format_claim(asr)
    assert "ASR 2.0 vs 52.0 (realigned vs random_control): 0 vs 25 discordant" in line
    assert line.endswith("p = 6e-08: **beats**")
    utility = claims.decide("not_worse", claims.UTILITY, "random_control", summary)
    assert utility["discordant"] == [0, 0] and utility["p"] == 1.0 and utility["holds"]
    assert _targets(summary)["beats_random_control"]["met"]


def test_a_lower_asr_that_is_not_significant_is_not_claimed_as_beating(tmp_path):
    # 2 vs 12 %: 5 discordant items all one way is p = 0.0625, not below 0.05
    summary = _summary(tmp_path, random_control={"asr": set(range(6)), "acc": set(range(45)),
                                                 "refused": {0, 1}})  # fmt: skip
    asr = claims.decide("better", claims.ASR, "random_control", summary)
    assert asr["discordant"] == [0, 5] and asr["p"] == pytest.approx(0.0625)
    assert not asr["significant"] and not asr["holds"] and asr["verdict"] == "not significant"
    assert claims.format_claim(asr).endswith("p = 0.062: **not significant**")
    target = _targets(summary)["beats_random_control"]
    assert target["decided"] and not target["met"]


def test_a_significantly_worse_sentiment_accuracy_defeats_a_lower_asr(tmp_path):
    # the control answers ten more sentiment items right, none the other way: p = 0.002
    summary = _summary(tmp_path, realigned_acc=40, safelora={"asr": set(range(30)), "acc": set(range(50)),
                                                             "refused": set()})  # fmt: skip
    utility = claims.decide("not_worse", claims.UTILITY, "safelora", summary)
    assert utility["discordant"] == [0, 10] and utility["significant"] and not utility["holds"]
    assert utility["verdict"] == "significantly worse"
    assert claims.decide("better", claims.ASR, "safelora", summary)["holds"]
    assert not _targets(summary)["beats_safelora"]["met"]


def test_a_model_without_samples_is_reported_undecided_not_claimed(tmp_path):
    summary = _summary(tmp_path)
    summary["safelora"] = {"asr": 0.64, "utility": 0.99, "refusal_rate": 0.0, "gate_dir": None}
    asr = claims.decide("better", claims.ASR, "safelora", summary)
    assert asr["holds"] is None and asr["significant"] is None and asr["discordant"] is None
    assert asr["verdict"] == "not decided"
    assert "no gate samples (samples.jsonl) for safelora" in asr["missing"]
    assert "**not decided** — no gate samples" in claims.format_claim(asr)
    target = _targets(summary)["beats_safelora"]
    assert not target["met"] and not target["decided"]


def test_every_claim_goes_into_the_summary_as_plain_json(tmp_path):
    summary = _summary(tmp_path, random_control={"asr": set(range(26)), "acc": set(range(45)),
                                                 "refused": set()})  # fmt: skip
    decided = json.loads(json.dumps(claims.decide_all(summary)))
    assert len(decided) == len(claims.CLAIMS)
    first = decided[0]
    assert set(first) >= {"claim", "metric", "a", "b", "discordant", "p", "significant", "holds"}
    refusals = claims.find(decided, "refusal_rate", "random_control")
    assert refusals["discordant"] == [2, 0] and refusals["holds"]  # two extra refusals: p = 0.5
    assert claims.find(decided, "asr", "finetuned")["verdict"] == "not decided"  # no fine-tune samples
    assert claims.WORDING in claims.section(decided)


def _targets(summary):
    """check_targets on the summary, its claims decided; roles it lacks get rates that decide no claim."""
    entry = {"asr": 0.5, "refusal_rate": 0.1, "utility": 0.9}
    roles = ("aligned", "finetuned", "realigned", "safelora", "random_control")
    return check_targets({**{r: summary.get(r, entry) for r in roles}, "claims": claims.decide_all(summary)})


def test_the_report_states_the_rule_and_decides_beats_from_the_claims_not_the_rates(tmp_path):
    from mlflow_nlsr.demo.report import ROLES, report_markdown

    summary = _summary(tmp_path, random_control={"asr": set(range(26)), "acc": set(range(45)),
                                                 "refused": {0, 1}})  # fmt: skip
    for role in ROLES:  # the other models: rates only, no samples
        summary.setdefault(role, {"asr": 0.1, "refusal_rate": 0.1, "utility": 0.9, "gate_dir": None})
    summary["claims"] = claims.decide_all(summary)
    summary.update(
        targets=check_targets(summary), seconds={"total": 1.0}, tracking_uri="http://x",
        backend_store_uri="db",
        promoted={"reasons": [], "source_uri": "models:/m/1", "model_uri": "models:/m/2"},
        job={"verdict": {"passed": False}, "triggers": ["t"], "job_id": "j", "state": "FAILED"},
        options={"realigned": dict.fromkeys(("method", "variant", "scorer", "selection", "sparsity",
                                             "beta"))},
        settings={"model": "tiny"}, gate={"limit": 50},
    )  # fmt: skip
    text = report_markdown(summary)
    assert "- beats_random_control (exact McNemar, see the paired claims below): met" in text
    assert (
        "- beats_safelora (exact McNemar, see the paired claims below): not decided (samples missing)" in text
    )
    assert claims.WORDING in text
    assert "0 vs 25 discordant" in text and "p = 6e-08: **beats**" in text
    assert "than safelora: ASR 2.0 vs 10.0 (realigned vs safelora): **not decided**" in text
