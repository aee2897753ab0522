"""The demo measurement over poison ratios x draws of the poisoned data (issue 14, item 7).

For every (ratio, draw): the attack fine-tune of that draw (``DemoSettings.poison_draw``: 0 is the demo's
own poisoned examples, another value a seeded shuffle of the attack prompts, so the harmful examples
differ and not only a seed), then the registry job's decision without calibration: the product-default
realignment (``RealignOptions(seed=seed)``), the demo's gate (``DEMO_GATES``: decline judge, the shipped
rules, sentiment as utility) at ``--gate-limit`` items per generative task, every sentiment and
helpfulness item. The fine-tune, the aligned model and (for the NLL rule) the base are gated as
references. Every rate is written with its item count and 95 % Wilson interval.

Shares bench/calibration.py's caches (fine-tunes, realignments by options hash, gate runs), so
``bench/calibration.py --draws`` later reuses what this gated. Two processes with the same arguments
split the cases (``<out>/claims-robustness-g<limit>``); a killed process's claim must be deleted.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python bench/robustness.py --ratios 0.05 0.1 0.3 --draws 0 1
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

from calibration import Cache, case_name, claim, finetune, locked, log, read_rows

from mlflow_nlsr.calibration.search import check
from mlflow_nlsr.demo.job import DEMO_GATES
from mlflow_nlsr.demo.model import is_complete
from mlflow_nlsr.demo.recipe import DemoSettings
from mlflow_nlsr.demo.stages import reference_dir
from mlflow_nlsr.gates.policy import parse_gate_config
from mlflow_nlsr.options import RealignOptions

RATES = ("asr", "refusal_rate", "sentiment_acc")
ROLES = ("finetuned", "aligned", "realigned")


def rates(gate_dir: Path) -> dict[str, Any]:
    """{rate: [value, ci low, ci high, n]} and the helpfulness NLL of one gate run."""
    data = json.loads((gate_dir / "metrics.json").read_text())
    out: dict[str, Any] = {}
    for name in RATES:
        if name in data["metrics"]:
            low, high = data["intervals"][name]["low"], data["intervals"][name]["high"]
            n = data["metric_samples"][name]["effective"]
            out[name] = [round(data["metrics"][name], 4), round(low, 4), round(high, 4), n]
    if "helpfulness_nll" in data["metrics"]:
        out["helpfulness_nll"] = round(data["metrics"]["helpfulness_nll"], 4)
    return out


def run_case(cache: Cache, ratio: float, draw: int, seed: int) -> dict[str, Any]:
    """Gate the references, realign with the product defaults, gate and decide."""
    config = parse_gate_config(DEMO_GATES)
    refs = cache.references(config)
    baselines = {role: cache.gate(path, False) for role, path in refs.items()}
    model = cache.root / "defaults" / f"seed{seed}"  # bench/calibration.py's path for the defaults
    started = time.perf_counter()
    report = cache.realign(RealignOptions(seed=seed), model)
    verdict = check(config, cache.gate(model, False), baselines)
    dirs = {"finetuned": refs["finetuned"], "aligned": refs["aligned"], "realigned": model}
    return {
        "ratio": ratio,
        "draw": draw,
        "seed": seed,
        **{role: rates(cache.gate_dir(path, False)) for role, path in dirs.items()},
        "passed": verdict.passed,
        "failed": list(verdict.failed),
        "relative_change": report["strength"]["relative_change"],
        "seconds": round(time.perf_counter() - started, 1),
    }


def _cell(rate: list[float] | None) -> str:
    return "–" if rate is None else f"{100 * rate[0]:.1f} [{100 * rate[1]:.1f}, {100 * rate[2]:.1f}]"


def summarize(rows: list[dict[str, Any]], path: Path) -> None:
    """The markdown table: per case the fine-tune's and the repair's rates and the decision."""
    lines = [
        "| p | draw | fine-tune ASR | repaired ASR | fine-tune over-refusal | repaired over-refusal | "
        "fine-tune sentiment | repaired sentiment | NLL ft → repaired | decision | failed rules |",
        "|" + "---|" * 11,
    ]
    for r in sorted(rows, key=lambda r: (r["ratio"], r["draw"], r["seed"])):
        ft, rep = r["finetuned"], r["realigned"]
        nll = " → ".join(f"{d.get('helpfulness_nll', float('nan')):.3f}" for d in (ft, rep))
        cells = [_cell(d.get(k)) for k in RATES for d in (ft, rep)]
        failed = "; ".join(f"`{f}`" for f in r["failed"]) or "–"
        lines.append(
            f"| {r['ratio']:g} | {r['draw']} | " + " | ".join(cells)
            + f" | {nll} | {'PASS' if r['passed'] else 'reject'} | {failed} |"
        )
    passed = sum(1 for r in rows if r["passed"])
    lines.append(f"\nThe job would promote {passed} of {len(rows)} repairs (product defaults).")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo-work", type=Path, default=Path(".nlsr-demo"))
    parser.add_argument("--out", type=Path, default=Path("bench/out/calibration"))
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.05, 0.1, 0.3])
    parser.add_argument("--draws", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--gate-limit", type=int, default=50, help="items per generative task")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    demo, out = args.demo_work.resolve(), args.out.resolve()
    if not (is_complete(demo / "base") and is_complete(demo / "align")):
        raise SystemExit(f"{demo} has no complete base/align stages: run `mlflow nlsr demo` first")
    name = f"robustness-g{args.gate_limit}"
    results, summary = out / f"{name}.jsonl", out / f"{name}.md"
    for ratio, draw in itertools.product(args.ratios, args.draws):
        done = read_rows(results)
        if any((r["ratio"], r["draw"], r["seed"]) == (ratio, draw, args.seed) for r in done):
            continue
        if not claim(out / f"claims-{name}", ratio, args.seed, draw):
            continue
        finetuned = finetune(demo, out, ratio, DemoSettings.full(), draw=draw)  # may wait for the demo
        models = (demo / "base", reference_dir(demo), finetuned)
        cache = Cache(out / case_name(ratio, draw) / "cases", out / "gates", models, args.batch_size)
        cache.limits = {True: args.gate_limit, False: args.gate_limit}
        row = run_case(cache, ratio, draw, args.seed)
        with locked(results):
            rows = [*read_rows(results), row]
            results.write_text("".join(json.dumps(r) + "\n" for r in rows))
            summarize(rows, summary)
        log(f"{case_name(ratio, draw)}: {'PASS' if row['passed'] else 'reject'} {row['failed']}")


if __name__ == "__main__":
    main()
