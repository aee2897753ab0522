"""Safety-minus-utility ActSVD masks on the demo fine-tune: does the contrast break the trade-off?

Wei et al. (2024) isolate safety from utility ranks by projecting a weight onto the top activation
subspace of safety data and removing the top subspace of utility data: ``(I - Π_u) Π_s W``. This script
tries that on NLSR's reference factors (the demo's v3 reference, product-default options otherwise):

* ``ortho<k>``: ActSVD of each reference factor on the safety calibration set, minus its projection on
  the top-k output-activation subspace of the same factor on edgy-benign answers (``align_edgy.jsonl``);
  the masks are the top 20 % of that, as the product's ``actsvd`` scorer takes them.
* ``diff<q>``: Wei et al.'s set difference: the product's ``actsvd`` masks minus the top q % entries of
  the factor projected on the edgy-benign data.
* ``defaults``: the product's ``actsvd`` masks (what the registry job transplants).

Then ``mlflow nlsr gate`` (decline judge) on safety, over-refusal, helpfulness and sentiment. The
utility pass swaps ``lora_blockwise.project_factors`` for one that records each factor's subspace (a
bench-only experiment: the product scorers do not have this mode). One JSON line per try.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python bench/contrast_masks.py --try defaults ortho2 ortho4 diff20
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import torch

from mlflow_nlsr import core
from mlflow_nlsr.demo import data
from mlflow_nlsr.io import read_adapter
from mlflow_nlsr.io.adapters import LoraAdapter, key_a, key_b, write_adapter
from mlflow_nlsr.options import RealignOptions
from mlflow_nlsr.pipeline import lora_blockwise
from mlflow_nlsr.pipeline.activations import actsvd_reference_projections
from mlflow_nlsr.pipeline.loading import module_order
from mlflow_nlsr.pipeline.methods import nlsr

#: the edgy-benign answers the utility subspace is measured on (the reference was trained on them)
UTILITY = str(data.data_file(data.ALIGN_EDGY))
METRICS = ("asr", "refusal_rate", "degenerate_rate", "answered_rate", "sentiment_acc", "helpfulness_nll")
_TRY = re.compile(r"^(?P<mode>defaults|ortho|diff)(?P<k>\d*)$")


class Inputs(NamedTuple):
    """What every pass of one try shares: read once, reference factors built once."""

    base: Path
    finetuned: LoraAdapter
    modules: list[str]
    reference: dict[str, torch.Tensor]


def read_inputs(demo: Path, options: RealignOptions) -> Inputs:
    """The demo's fine-tune, its module order and NLSR's extrapolated reference factors."""
    finetuned = read_adapter(demo / "attack")
    modules = module_order(demo / "base", finetuned.modules)
    return Inputs(demo / "base", finetuned, modules,
                  nlsr.reference_factors(read_adapter(demo / "align"), modules, options))  # fmt: skip


def projections(inputs: Inputs, options: RealignOptions, project: Any) -> dict[str, torch.Tensor]:
    """The reference factors projected block by block with `project` in place of the product's."""
    saved, lora_blockwise.project_factors = lora_blockwise.project_factors, project
    try:
        return actsvd_reference_projections(
            inputs.base, inputs.finetuned, inputs.reference, options, progress=False
        )[0]
    finally:
        lora_blockwise.project_factors = saved


def contrast_masks(inputs: Inputs, mode: str, k: int, options: RealignOptions) -> dict[str, torch.Tensor]:
    """The masks of one try (see the module docstring)."""
    product, utility_options = lora_blockwise.project_factors, options.replace(calibration=UTILITY)
    per = nlsr.per_of(options)
    subspaces: dict[str, torch.Tensor] = {}

    def record(factors: Any, grams: Any, sparsity: float, variant: str, projected: Any) -> None:
        for key, linear in factors.items():
            weight = linear.weight.detach().float()
            subspaces[key] = core.actsvd_subspace(weight, grams[key], min(k, weight.shape[0]))
        product(factors, grams, sparsity, variant, projected)

    def minus_utility(factors: Any, grams: Any, sparsity: float, variant: str, projected: Any) -> None:
        for key, linear in factors.items():
            weight = linear.weight.detach().float()
            keep = core.kept_rank(min(weight.shape), sparsity, variant)
            safe = core.actsvd_project(weight, grams[key], keep).double()
            v = subspaces[key].double()
            new = (safe - v @ (v.T @ safe)).float()
            linear.weight.data.copy_(new.to(linear.weight.dtype))
            projected[key] = new.cpu()

    if mode == "ortho":
        projections(inputs, utility_options, record)
        scores = projections(inputs, options, minus_utility)
        return {key: core.top_mask(s, options.sparsity, per=per) for key, s in scores.items()}
    safety = projections(inputs, options, product)
    masks = {key: core.top_mask(s, options.sparsity, per=per) for key, s in safety.items()}
    if mode == "diff":
        utility = projections(inputs, utility_options, product)
        masks = {key: m & ~core.top_mask(utility[key], 1 - k / 100, per=per) for key, m in masks.items()}
    return masks


def realign(demo: Path, name: str, out: Path) -> dict[str, Any]:
    """Write the try's adapter to ``out/adapter`` (once); return its mask fraction and strength."""
    info = out / "realign.json"
    if not info.is_file():
        m = _TRY.match(name)
        if m is None:
            raise SystemExit(f"cannot parse {name!r}: expected defaults, ortho<k> or diff<q>")
        options = RealignOptions()
        inputs = read_inputs(demo, options)
        masks = contrast_masks(inputs, m["mode"], int(m["k"] or 0), options)
        ordered = {k: masks[k] for mod in inputs.modules for k in (key_a(mod), key_b(mod))}
        outcome = nlsr.run_nlsr(inputs.finetuned, inputs.modules, inputs.reference, ordered, options)
        write_adapter(out / "adapter", outcome.config, outcome.tensors)
        fraction = sum(int(v.sum()) for v in masks.values()) / sum(v.numel() for v in masks.values())
        row = {"mask_fraction": round(fraction, 4), "relative_change": outcome.strength.relative_change}
        info.write_text(json.dumps(row))
    return dict(json.loads(info.read_text()))


def gate(demo: Path, out: Path, limit: int) -> dict[str, Any]:
    """``mlflow nlsr gate`` on the try's adapter (once); return its metrics."""
    gate_dir = out / f"gate{limit}"
    if not (gate_dir / "metrics.json").is_file():
        mlflow = Path(sys.executable).with_name("mlflow")
        subprocess.run([str(mlflow), "nlsr", "gate", "--model", str(demo / "base"), "--adapter",
                        str(out / "adapter"), "--suite", "safety,overrefusal,helpfulness", "--task",
                        "nlsr_sentiment", "--limit", str(limit), "--batch-size", "16", "--output",
                        str(gate_dir)], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    metrics = json.loads((gate_dir / "metrics.json").read_text())["metrics"]
    return {k: metrics.get(k) for k in METRICS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-work", type=Path, default=Path(".nlsr-demo"))
    parser.add_argument("--out", type=Path, default=Path("bench/out/contrast"))
    parser.add_argument("--try", dest="tries", nargs="+", default=["defaults", "ortho2", "ortho4", "diff20"])
    parser.add_argument("--gate-limit", type=int, default=50)
    args = parser.parse_args()
    for name in args.tries:
        out = args.out / name
        out.mkdir(parents=True, exist_ok=True)
        row = {"try": name, **realign(args.demo_work, name, out)}
        print(json.dumps({**row, **gate(args.demo_work, out, args.gate_limit)}), flush=True)


if __name__ == "__main__":
    main()
