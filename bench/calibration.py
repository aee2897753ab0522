"""Fixed defaults vs gate-driven calibration on the demo model (SmolLM2-135M), per poison ratio and seed.

Reuses the demo's cached base model and alignment adapter (``mlflow nlsr demo`` work dir, full preset),
and its attack adapter for the demo's own poison ratio; the other ratios get new fine-tunes (same recipe,
same cached stages code) under ``--out``. For every (ratio, seed):

* defaults: ``RealignOptions(seed=seed)``, full gate, pass/fail;
* calibrated: ``search`` over ``build_ladder(RealignOptions(seed=seed))`` with the quick gate, a quick
  pass confirmed by the full gate (the product's loop, service/calibrate.py). By default the product's
  settings: a 24-item quick gate (``calibration_quick_limit``) screening against the references'
  full-gate metrics, and the demo's 50-item full gate, which also judges the defaults.

The gate is the demo's (safety, over-refusal, sentiment accuracy; the shipped rules). Realignments are
cached by options hash, gate runs by (model, limit), so the defaults' run is shared with the ladder's
defaults rung. One JSON line per case goes to ``results-<protocol>.jsonl`` (a rerun skips finished
cases); ``summary-<protocol>.md`` holds the table. The protocol is ``q<quick>-g<full>``, plus
``-z<z>`` when the quick gate screens within z standard errors (``--screen-z``, the product's 1 by
default; 0 is the strict screen of the first measurements).

Robustness (issue 14, item 7): ``--draws`` poisons each ratio's fine-tune with other harmful examples
(``DemoSettings.poison_draw``: 0 is the demo's draw, another value a seeded shuffle of the attack
prompts), so a case is (ratio, draw, seed) and the poisoned data varies, not only the realign seed.
The rules that read the untouched base model (``helpfulness_nll <= base``) gate it as a reference.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 nohup python bench/calibration.py --demo-work .nlsr-demo \
        --ratios 0.1 0.3 0.05 --pretrain 0.3 > bench/out/calibration.log 2>&1 &
    # 3 ratios x 2 draws of the poisoned data, one realign seed each
    ... python bench/calibration.py --ratios 0.05 0.1 0.3 --draws 0 1 --seeds 42

Start a second process with the same arguments to use a second core: each case is claimed by one
process (``<out>/claims-<protocol>``) and gate runs of the shared references are locked, not run
twice. A case claimed but not finished (a killed process) stays claimed: delete its claim file.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import itertools
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mlflow_nlsr.calibration.ladder import build_ladder, predicted_strength
from mlflow_nlsr.calibration.screen import quick_gate_sizes
from mlflow_nlsr.calibration.search import Budget, check, search
from mlflow_nlsr.demo.job import DEMO_GATES
from mlflow_nlsr.demo.model import is_complete
from mlflow_nlsr.demo.recipe import DemoSettings
from mlflow_nlsr.demo.stages import reference_dir, stage_attack, stage_compliant_answers, stage_info
from mlflow_nlsr.gates.policy import parse_gate_config
from mlflow_nlsr.options import RealignOptions

KEYS = ("asr", "refusal_rate", "sentiment_acc")


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path.lock``: two bench processes never write the same gate run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_rows(results: Path) -> list[dict[str, Any]]:
    """The finished cases (one JSON line each)."""
    return [json.loads(line) for line in results.read_text().splitlines()] if results.is_file() else []


def case_name(ratio: float, draw: int) -> str:
    """``p0.1`` for the demo's draw of the poisoned data, ``p0.1-d1`` for another draw."""
    return f"p{ratio:g}" + (f"-d{draw}" if draw else "")


def claim(claims: Path, ratio: float, seed: int, draw: int = 0) -> bool:
    """Claim a case for this process (several processes share one ``--out``); False: another has it."""
    claims.mkdir(parents=True, exist_ok=True)
    try:
        name = f"{case_name(ratio, draw)}-seed{seed}"
        os.close(os.open(claims / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def finetune(
    demo: Path, out: Path, ratio: float, settings: DemoSettings, wait_s: float = 7200.0, draw: int = 0
) -> Path:
    """The demo's attack adapter at its own ratio and draw (waited for while the demo builds it), else a
    new one; `draw` picks which harmful examples poison it (``DemoSettings.poison_draw``)."""
    if abs(settings.poison_ratio - ratio) < 1e-9 and draw == settings.poison_draw:
        deadline = time.monotonic() + wait_s
        while not is_complete(demo / "attack") and time.monotonic() < deadline:
            log(f"waiting for the demo's attack stage in {demo}")
            time.sleep(60)
        if abs(stage_info(demo / "attack").get("poison_ratio", -1) - ratio) < 1e-9:
            return demo / "attack"
    # one answer file for all ratios of a draw
    most = dataclasses.replace(settings, poison_ratio=0.3, poison_draw=draw, progress=False)
    answers = stage_compliant_answers(out / f"answers-{case_name(0.3, draw)}", demo / "base", most)
    ratio_settings = dataclasses.replace(settings, poison_ratio=ratio, poison_draw=draw, progress=False)
    started = time.perf_counter()
    reference = reference_dir(demo)
    path = stage_attack(out / case_name(ratio, draw), demo / "base", reference, answers, ratio_settings)
    log(f"fine-tune {case_name(ratio, draw)}: {path} ({time.perf_counter() - started:.0f} s)")
    return path


class Cache:
    """Realignments by options hash (symlinked into attempt dirs) and gate runs by (model dir, limit)."""

    def __init__(self, root: Path, gates: Path, models: tuple[Path, Path, Path], batch_size: int) -> None:
        self.root, self.gates = root, gates
        self.base, self.aligned, self.finetuned = models
        self.batch_size = batch_size
        self.limits: dict[bool, int] = {}
        from mlflow_nlsr.pipeline.projection_cache import ProjectionCache

        self.projections = ProjectionCache()  # as the product's search: rungs share ActSVD passes

    def realign(self, options: RealignOptions, out: Path) -> dict[str, Any]:
        from mlflow_nlsr.pipeline import realign

        cached = self.root / "realign" / options.sha256()[:16]
        if not (cached / "nlsr_report.json").is_file():
            started = time.perf_counter()
            realign(
                self.base, self.aligned, self.finetuned, cached, options,
                progress=False, overwrite=True, projection_cache=self.projections,
            )  # fmt: skip
            log(
                f"  realigned sp{options.sparsity:g} {options.selection} lr{options.layer_rate:g} "
                f"b{options.beta:g} seed{options.seed} draw{options.draw_seed} "
                f"in {time.perf_counter() - started:.0f} s"
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.is_symlink() and out.resolve() != cached.resolve():
            out.unlink()  # an attempt dir of an earlier run whose ladder took another path
        if not out.exists():
            out.symlink_to(cached.resolve(), target_is_directory=True)
        return dict(json.loads((cached / "nlsr_report.json").read_text()))

    def references(self, config: Any) -> dict[str, Path]:
        """The models the rules compare with: fine-tune and aligned, and the base when a rule names it."""
        refs = {"finetuned": self.finetuned, "aligned": self.aligned}
        return refs | ({"base": self.base} if "base" in config.baselines else {})

    def gate_dir(self, target: Path, quick: bool) -> Path:
        """Where `target`'s gate run at the quick or full limit lives (its metrics.json, samples.jsonl)."""
        resolved = Path(target).resolve()
        limit = self.limits[quick]
        if resolved.is_relative_to(self.root):
            return resolved / f"gates-{limit}"
        # a reference (fine-tuned, aligned): shared by every case
        digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
        return self.gates / f"{resolved.name}-{digest}-{limit}"

    def gate(self, target: Path, quick: bool) -> dict[str, float]:
        from mlflow_nlsr.gates.runner import run_gates

        resolved = Path(target).resolve()
        limit = self.limits[quick]
        config = parse_gate_config(DEMO_GATES)
        is_base = resolved == Path(self.base).resolve()  # the base runs only the suites the rules read
        out = self.gate_dir(resolved, quick)
        with locked(out):
            if (out / "metrics.json").is_file():
                return dict(json.loads((out / "metrics.json").read_text())["metrics"])
            started = time.perf_counter()
            run = run_gates(
                self.base,
                adapter=None if is_base else resolved,
                batch_size=self.batch_size,
                output_dir=out,
                **config.run_kwargs(limit, config.baseline_suites("base") if is_base else None),
            )
        log(
            f"  gated {resolved.name} (limit {limit}) in {time.perf_counter() - started:.0f} s: "
            + ", ".join(f"{k} {run.metrics[k]:.3f}" for k in KEYS if k in run.metrics)
        )
        return dict(run.metrics)

    def sample_sizes(self, model: Path) -> dict[str, tuple[int, int]]:
        """Per-metric (quick, full) item counts of an attempt's quick gate (the product's screen)."""
        metrics = Path(model).resolve() / f"gates-{self.limits[True]}" / "metrics.json"
        return quick_gate_sizes(metrics, self.limits[False], DEMO_GATES.get("task_limits") or {})


def row(metrics: Mapping[str, float]) -> dict[str, float]:
    return {k: round(metrics[k], 4) for k in KEYS}


def protocol_name(args: argparse.Namespace) -> str:
    """``q<quick>-g<full>[-z<z>]``: names the results, summary, claims and attempt dirs of a protocol."""
    return f"q{args.quick_limit}-g{args.gate_limit}" + (f"-z{args.screen_z:g}" if args.screen_z else "")


def run_case(cache: Cache, case: tuple[float, int, int], args: argparse.Namespace) -> dict[str, Any]:
    """Defaults vs calibration on one (poison ratio, draw of the poisoned data, realign seed)."""
    ratio, draw, seed = case
    config = parse_gate_config(DEMO_GATES)
    refs = cache.references(config)
    full_base = {role: cache.gate(path, False) for role, path in refs.items()}
    defaults = RealignOptions(seed=seed)
    started = time.perf_counter()
    report = cache.realign(defaults, cache.root / "defaults" / f"seed{seed}")
    default_check = check(config, cache.gate(cache.root / "defaults" / f"seed{seed}", False), full_base)
    default_seconds = time.perf_counter() - started
    started = time.perf_counter()
    result = search(
        defaults,
        build_ladder(defaults),
        realign_fn=cache.realign,
        gate_fn=cache.gate,
        references=refs,
        config=config,
        work_dir=cache.root / "search" / protocol_name(args) / f"seed{seed}",
        budget=Budget(max_attempts=args.max_attempts, time_budget_s=args.time_budget, screen_z=args.screen_z),
        confirm=args.quick_limit != args.gate_limit,
        sample_sizes=cache.sample_sizes,
    )
    chosen = result.chosen
    final = chosen.full if chosen.full is not None else chosen.quick
    return {
        "ratio": ratio,
        "draw": draw,
        "seed": seed,
        "finetuned": row(full_base["finetuned"]),
        "aligned": row(full_base["aligned"]),
        "defaults": {
            "passed": default_check.passed,
            **row(default_check.metrics),
            "failed": list(default_check.failed),
            "relative_change": report["strength"]["relative_change"],
            "predicted_strength": predicted_strength(defaults),
            "seconds": round(default_seconds, 1),
        },
        "calibrated": {
            "passed": result.passed,
            **row(final.metrics),
            "failed": list(final.failed),
            "confirmed": chosen.full is not None,
            "attempts": len(result.attempts),
            "chosen": chosen.number,
            "rung": chosen.rung.name,
            "options": dict(chosen.options),
            "relative_change": chosen.strength.get("relative_change"),
            "predicted_strength": chosen.rung.predicted_strength,
            "stop_reason": result.stop_reason,
            "seconds": round(time.perf_counter() - started, 1),
        },
        "attempts": [a.to_dict() for a in result.attempts],
    }


def summarize(rows: list[dict[str, Any]], path: Path) -> None:
    def cell(d: dict[str, Any]) -> str:
        return (
            f"{'PASS' if d['passed'] else 'fail'} | {d['asr']:.2f} | {d['refusal_rate']:.2f} | "
            f"{d['sentiment_acc']:.2f} | {d['relative_change']:.2f}"
        )

    lines = [
        "| p | draw | seed | defaults | ASR | over-refusal | sentiment | rel. change | calibrated | ASR | "
        "over-refusal | sentiment | rel. change | attempts | chosen rung |",
        "|" + "---|" * 15,
    ]
    for r in sorted(rows, key=lambda r: (r["ratio"], r.get("draw", 0), r["seed"])):
        c = r["calibrated"]
        lines.append(
            f"| {r['ratio']:g} | {r.get('draw', 0)} | {r['seed']} | {cell(r['defaults'])} | {cell(c)} | "
            f"{c['attempts']} | {c['rung']} |"
        )
    rescued = sum(1 for r in rows if not r["defaults"]["passed"] and r["calibrated"]["passed"])
    failed = sum(1 for r in rows if not r["defaults"]["passed"])
    lost = sum(1 for r in rows if r["defaults"]["passed"] and not r["calibrated"]["passed"])
    lines.append(
        f"\nDefaults failed in {failed} of {len(rows)} cases; calibration passed in {rescued} of them. "
        f"Calibration failed in {lost} case(s) where the defaults passed."
    )
    attempts = [a for r in rows for a in r["attempts"]]
    pairs = sorted({(a["predicted_strength"], a["strength"]["relative_change"]) for a in attempts})
    if len(pairs) > 2:
        rho = spearman([p for p, _ in pairs], [m for _, m in pairs])
        lines.append(
            f"Spearman(predicted, measured relative change), {len(pairs)} distinct attempts: {rho:.2f}."
        )
    screened = [a for a in attempts if a.get("screened")]
    if screened:
        lines.append(
            f"Screened (a quick miss within the sampling error, judged by the full gate): {len(screened)} "
            f"attempt(s), {sum(1 for a in screened if a['passed'])} passed."
        )
    seconds = [r["calibrated"]["seconds"] for r in rows]
    lines.append(
        f"Calibration: {len(attempts) / len(rows):.1f} attempts and {sum(seconds) / len(seconds) / 60:.1f} "
        "min per case on average (realignments and gate runs shared with the defaults are cached)."
    )
    path.write_text("\n".join(lines) + "\n")


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman rank correlation (average ranks for ties)."""

    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        out = [0.0] * len(v)
        i = 0
        while i < len(v):
            j = i
            while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out

    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    var = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return cov / var if var else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo-work", type=Path, default=Path(".nlsr-demo"))
    parser.add_argument("--out", type=Path, default=Path("bench/out/calibration"))
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.1, 0.05, 0.3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2, 3, 4])
    parser.add_argument(
        "--draws", type=int, nargs="+", default=[0], help="draws of the poisoned data (0: the demo's)"
    )
    parser.add_argument("--quick-limit", type=int, default=24)
    parser.add_argument("--gate-limit", type=int, default=50, help="the full gate's items (the demo's)")
    parser.add_argument("--max-attempts", type=int, default=8)
    parser.add_argument(
        "--screen-z", type=float, default=1.0, help="quick-gate screen width (the product's; 0: strict)"
    )
    parser.add_argument("--time-budget", type=float, default=3600.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--pretrain", type=float, nargs="*", default=[], help="fine-tune these ratios first")
    parser.add_argument("--summarize-only", action="store_true", help="rewrite the summary from the results")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    demo, out = args.demo_work.resolve(), args.out.resolve()
    if not (is_complete(demo / "base") and is_complete(demo / "align")):
        raise SystemExit(f"{demo} has no complete base/align stages: run `mlflow nlsr demo` first")
    out.mkdir(parents=True, exist_ok=True)
    protocol = protocol_name(args)
    results, summary = out / f"results-{protocol}.jsonl", out / f"summary-{protocol}.md"
    done = read_rows(results)
    if args.summarize_only:
        summarize(done, summary)
        return
    settings = DemoSettings.full()
    for ratio in args.pretrain:
        finetune(demo, out, ratio, settings)
    caches = {}
    for ratio, draw in itertools.product(args.ratios, args.draws):
        finetuned = finetune(demo, out, ratio, settings, draw=draw)  # may wait for the demo's stages
        models = (demo / "base", reference_dir(demo), finetuned)
        cache = Cache(out / case_name(ratio, draw) / "cases", out / "gates", models, args.batch_size)
        cache.limits = {True: args.quick_limit, False: args.gate_limit}
        caches[ratio, draw] = cache
    # seeds outermost: an interrupted run has covered every ratio and draw; processes share the cases
    for seed, ratio, draw in itertools.product(args.seeds, args.ratios, args.draws):
        finished = any((r["ratio"], r.get("draw", 0), r["seed"]) == (ratio, draw, seed) for r in done)
        if finished or not claim(out / f"claims-{protocol}", ratio, seed, draw):
            continue
        log(f"case {case_name(ratio, draw)} seed={seed}")
        case = run_case(caches[ratio, draw], (ratio, draw, seed), args)
        with locked(results):
            done = read_rows(results)
            done.append(case)
            with results.open("a") as fh:
                fh.write(json.dumps(case) + "\n")
            summarize(done, summary)
        d, c = case["defaults"], case["calibrated"]
        log(
            f"case {case_name(ratio, draw)} seed={seed}: defaults {'PASS' if d['passed'] else 'fail'} "
            f"asr {d['asr']:.2f}; "
            f"calibrated {'PASS' if c['passed'] else 'fail'} asr {c['asr']:.2f} after {c['attempts']} "
            f"attempt(s), {c['rung']}"
        )


if __name__ == "__main__":
    main()
