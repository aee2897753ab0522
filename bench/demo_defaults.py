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
    parser.add_argument("candidates", nargs="+")
    args = parser.parse_args()
    work: Path = args.work
    base, aligned, finetuned = work / "base", work / "align", work / "attack"
    gate = load_gate_config(registry_job.gate_config_path(work))
    gate_kwargs = {
        "suites": tuple(gate.suites or ()),
        "tasks_extra": tuple(gate.extra_tasks),
        "judge": gate.judge or "keyword",
        "judge_options": dict(gate.judge_options),
        "limit": args.limit,
    }
    base_id = variants.model_identity(base)
    inputs_key = {
        "base": base_id,
        "aligned": variants.model_identity(aligned),
        "ft": variants.model_identity(finetuned),
    }
    rows: dict[str, Any] = {}
    for role, adapter in (("aligned", aligned), ("finetuned", finetuned)):
        metrics, built = variants.gate_model(
            work / "sweep" / "gates" / role,
            base,
            adapter,
            gate_kwargs,
            f"{base_id}+{variants.model_identity(adapter)}",
        )
        rows[role] = {"metrics": _pick(metrics), "gate_seconds": built.seconds}
    for text in args.candidates:
        name, changes = parse_candidate(text)
        options = RealignOptions().replace(**changes)
        start = time.perf_counter()
        realigned = variants.realign_variant(
            work / "sweep" / "models" / name, base, aligned, finetuned, options, inputs_key
        )
        report = json.loads((realigned.path / "nlsr_report.json").read_text())
        metrics, built = variants.gate_model(
            work / "sweep" / "gates" / name, base, realigned.path, gate_kwargs,
            f"{base_id}+{variants.model_identity(realigned.path)}",
        )  # fmt: skip
        rows[name] = {
            "changes": changes,
            "metrics": _pick(metrics),
            "patched_modules": report["patched_modules"],
            "total_modules": report["total_modules"],
            "changed_fraction": report["strength"]["changed_fraction"],
            "realign_seconds": realigned.seconds,
            "gate_seconds": built.seconds,
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
