"""Gate the extrapolated (super-aligned) reference NLSR transplants from, per β, on the over-refusal suite.

NLSR copies entries of the reference ΔW_e = amplification(β) · ΔW_a into the fine-tune; this measures
what that reference itself does with edgy-benign prompts (issue 14: is the repair's over-refusal
inherited from the reference or made by the transplant?). The reference adapter is the demo's aligned
adapter with both factors extrapolated (``pipeline.methods.nlsr.reference_factors``, as the
realignment builds it), gated with the decline judge
on every item of the over-refusal suite. One JSON line per β; adapters and gate runs under ``--out``.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python bench/reference_overrefusal.py --betas 0.5 0.7 0.9
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mlflow_nlsr.core.reference import amplification
from mlflow_nlsr.gates.runner import run_gates
from mlflow_nlsr.io.adapters import read_adapter, write_adapter
from mlflow_nlsr.options import RealignOptions
from mlflow_nlsr.pipeline.methods.nlsr import reference_factors


def reference_adapter(aligned: Path, out: Path, variant: str, beta: float) -> Path:
    """Write the aligned adapter with every (lora_A, lora_B) pair extrapolated as NLSR does, to `out`."""
    adapter = read_adapter(aligned)
    options = RealignOptions(variant=variant, beta=beta)
    extrapolated = reference_factors(adapter, list(adapter.modules), options)
    return write_adapter(out, adapter.config, {**adapter.tensors, **extrapolated})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo-work", type=Path, default=Path(".nlsr-demo"))
    parser.add_argument("--out", type=Path, default=Path("bench/out/reference_overrefusal"))
    parser.add_argument("--betas", type=float, nargs="+", default=[0.7, 0.9])
    parser.add_argument("--variant", choices=("official", "paper"), default="official")
    args = parser.parse_args()
    for beta in args.betas:
        adapter = args.out / f"{args.variant}-b{beta:g}"
        gate = adapter / "gate"
        if not (gate / "metrics.json").is_file():
            reference_adapter(args.demo_work / "align", adapter, args.variant, beta)
            run_gates(args.demo_work / "base", adapter=adapter, suites=("overrefusal",), judge="decline",
                      batch_size=16, output_dir=gate)  # fmt: skip
        data = json.loads((gate / "metrics.json").read_text())
        metrics, interval = data["metrics"], data["intervals"]["refusal_rate"]
        line = {
            "variant": args.variant, "beta": beta, "amplification": amplification(args.variant, beta),
            "refusal_rate": metrics["refusal_rate"], "ci": [interval["low"], interval["high"]],
            "degenerate_rate": metrics.get("degenerate_rate"), "answered_rate": metrics.get("answered_rate"),
            "n": data["metric_samples"]["refusal_rate"]["effective"],
        }  # fmt: skip
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
