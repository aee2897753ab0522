"""Measure realignment candidates on the demo's fine-tuned SmolLM2 (the data behind RealignOptions defaults).

Uses the models a full ``mlflow nlsr demo`` built in ``--work`` (base, aligned adapter, poisoned
fine-tune) and the demo's gate (safety, over-refusal, sentiment; keyword judge; ``--limit`` items per
task, stratified). Each candidate is realigned with ``pipeline.realign`` and gated with ``run_gates``;
both are cached under ``<work>/sweep`` so the script can be rerun with more candidates.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python bench/demo_defaults.py --work .nlsr-demo --limit 50 \\
        paper=selection=official,sparsity=0.8 all-0.8=selection=all,sparsity=0.8

A candidate is ``NAME=key=value,key=value`` (RealignOptions fields; values read as YAML scalars).
Prints one JSON document (also written to ``<work>/sweep/results.json``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import yaml

from mlflow_nlsr.demo import job as registry_job
from mlflow_nlsr.demo import variants
from mlflow_nlsr.gates.policy import load_gate_config
from mlflow_nlsr.options import RealignOptions


def parse_candidate(text: str) -> tuple[str, dict[str, Any]]:
    name, _, spec = text.partition("=")
    changes = {}
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition("=")
        changes[key.strip()] = yaml.safe_load(value)
    return name, changes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=Path(".nlsr-demo"))
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument(
        "--summary",
        type=Path,
        default=None,
        help="a demo summary.json gated at the same limit: reuse its aligned/fine-tuned gate metrics",
    )
    parser.add_argument("candidates", nargs="+")
    args = parser.parse_args()
    work: Path = args.work
    base, aligned, finetuned = work / "base", work / "align", work / "attack"
    gate = load_gate_config(registry_job.gate_config_path(work))
    # the limited gate ("sentiment 50") without the demo's per-task override: sentiment on every item is
    # the separate run below ("sentiment 240"), so the limited gate does not evaluate all 240 again
    gate_kwargs = {**gate.run_kwargs(args.limit), "task_limits": {}}
    sentiment_kwargs = {**gate_kwargs, "suites": (), "tasks_extra": ("nlsr_sentiment",), "limit": None}
    base_id = variants.model_identity(base)
    inputs_key = {
        "base": base_id,
        "aligned": variants.model_identity(aligned),
        "ft": variants.model_identity(finetuned),
    }
    summary = json.loads(args.summary.read_text()) if args.summary else {}
    if summary and summary["gate"]["limit"] != args.limit:
        raise SystemExit(f"{args.summary} was gated at limit {summary['gate']['limit']}, not {args.limit}")

    def gate_both(name: str, path: Path) -> tuple[dict[str, float], float]:
        key = f"{base_id}+{variants.model_identity(path)}"
        # an adapter is gated on the base; a full-weight output (--mode full) is a model on its own
        model, adapter = (base, path) if (path / "adapter_config.json").is_file() else (path, None)
        seconds = 0.0
        if name in summary:
            metrics = summary[name]["metrics"]
        else:
            metrics, built = variants.gate_model(
                work / "sweep" / "gates" / name, model, adapter, gate_kwargs, key, batch_size=16
            )
            seconds += built.seconds
        # every sentiment item (240): utility differences of a few points are below the limit's resolution
        full, more = variants.gate_model(
            work / "sweep" / "sentiment" / name, model, adapter, sentiment_kwargs, key, batch_size=16
        )
        return {
            **_pick(metrics),
            "sentiment_acc_all": round(full["sentiment_acc"], 4),
        }, seconds + more.seconds

    from mlflow_nlsr.pipeline.projection_cache import ProjectionCache

    projections = ProjectionCache()  # candidates differing only in module choice share one ActSVD pass
    rows: dict[str, Any] = {}
    for role, adapter in (("aligned", aligned), ("finetuned", finetuned)):
        metrics, seconds = gate_both(role, adapter)
        rows[role] = {"metrics": metrics, "gate_seconds": round(seconds, 1)}
        print(json.dumps({role: rows[role]}), flush=True)
    for text in args.candidates:
        name, changes = parse_candidate(text)
        options = RealignOptions().replace(**changes)
        start = time.perf_counter()
        realigned = variants.realign_variant(
            work / "sweep" / "models" / name, base, aligned, finetuned, options, inputs_key,
            projection_cache=projections,
        )
        report = json.loads((realigned.path / "nlsr_report.json").read_text())
        metrics, seconds = gate_both(name, realigned.path)
        rows[name] = {
            "changes": changes,
            "metrics": metrics,
            "patched_modules": report["patched_modules"],
            "total_modules": report["total_modules"],
            "changed_fraction": report["strength"]["changed_fraction"],
            "realign_seconds": realigned.seconds,
            "gate_seconds": round(seconds, 1),
            "wall_seconds": round(time.perf_counter() - start, 1),
        }
        print(json.dumps({name: rows[name]}), flush=True)
    out = {"limit": args.limit, "rows": rows}
    (work / "sweep").mkdir(parents=True, exist_ok=True)
    (work / "sweep" / "results.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


def _pick(metrics: dict[str, float]) -> dict[str, float]:
    return {k: round(metrics[k], 4) for k in ("asr", "refusal_rate", "sentiment_acc") if k in metrics}


if __name__ == "__main__":
    main()
