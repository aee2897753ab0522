"""The output directory of a LoRA realignment: adapter, masks, nlsr_report.json, similarity.png, README.md."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mlflow_nlsr import __version__
from mlflow_nlsr.core import PatchStrength
from mlflow_nlsr.io.adapters import SAFETENSORS_NAME, key_a, key_b, write_adapter
from mlflow_nlsr.io.hashing import sha256_file
from mlflow_nlsr.options import METHODS, RealignOptions
from mlflow_nlsr.pipeline.plot import similarity_plot

if TYPE_CHECKING:  # methods/nlsr.py imports selection_decision from here
    from mlflow_nlsr.pipeline.methods import MethodOutcome

REPORT_NAME = "nlsr_report.json"
MASKS_NAME = "masks.safetensors"
PLOT_NAME = "similarity.png"
README_NAME = "README.md"


def _density(mask: torch.Tensor) -> float:
    return float(mask.float().mean()) if mask.numel() else 0.0


def json_safe(value: Any) -> Any:
    """Replace non-finite floats by None, recursively (JSON has no NaN/inf)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def write_report_json(out_dir: Path, report: dict[str, Any]) -> None:
    """Write `report` (JSON-safe, indented) to nlsr_report.json in `out_dir`."""
    (out_dir / REPORT_NAME).write_text(json.dumps(json_safe(report), indent=2) + "\n")


def selection_decision(options: RealignOptions) -> str:
    """How modules were selected for patching (spec §6, D4), in both LoRA and full-weight mode."""
    return {
        "official": "official: Bernoulli, P rises with similarity, patched on 1",
        "paper": "paper: Bernoulli, least similar modules most likely patched",
        "threshold": f"threshold: patch similarity < {options.tau}",
        "fraction": f"fraction: patch the {options.layer_rate:g} least similar modules",
        "all": "all: every module patched",
    }[options.selection]


def report_core(
    options: RealignOptions,
    rows: list[dict[str, Any]],
    *,
    inputs: dict[str, str],
    patched: int,
    decisions: dict[str, str],
    strength: PatchStrength,
) -> dict[str, Any]:
    """The report keys shared by LoRA and full-weight mode, in schema order (output_sha256/seconds later)."""
    return {
        "method": options.method,
        "variant": options.variant,
        "scorer": options.scorer,
        "selection": options.selection,
        "seed": options.seed,
        "selection_seed": options.draw_seed,
        "sparsity": options.sparsity,
        "beta": options.beta,
        "layer_rate": options.layer_rate,
        "epsilon": options.epsilon,
        "modules": rows,
        "inputs": inputs,
        "output_sha256": "",
        "package_version": __version__,
        "seconds": 0.0,
        "patched_modules": patched,
        "total_modules": len(rows),
        "decisions": decisions,
        "strength": {
            "entries_changed": strength.entries_changed,
            "entries_total": strength.entries_total,
            "changed_fraction": strength.changed_fraction,
            "relative_change": strength.relative_change,
        },
        "options": options.to_dict(),
    }


def readme_lists(report: dict[str, Any]) -> tuple[str, str]:
    """The README's markdown lists of decisions and of input hashes."""
    decisions = "\n".join(f"- {k}: {v}" for k, v in report["decisions"].items())
    inputs = "\n".join(f"- {k}: `{v}`" for k, v in report["inputs"].items())
    return decisions, inputs


def build_report(
    options: RealignOptions,
    modules: list[str],
    outcome: MethodOutcome,
    *,
    inputs: dict[str, str],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The report dict (the issue's schema first, then extra keys); output_sha256/seconds filled later."""
    rows = [
        {
            "name": m,
            "similarity": float(sim),
            "patched": bool(p),
            "mask_density": {
                "lora_A": _density(outcome.masks[key_a(m)]),
                "lora_B": _density(outcome.masks[key_b(m)]),
            },
        }
        for m, sim, p in zip(modules, outcome.similarity, outcome.patched, strict=True)
    ]
    report: dict[str, Any] = {
        **report_core(
            options,
            rows,
            inputs=inputs,
            patched=sum(outcome.patched),
            decisions=outcome.decisions,
            strength=outcome.strength,
        ),
        **extra,
        **outcome.extra,
    }
    if outcome.probability is not None:
        report["probabilities"] = outcome.probability
    return report


def _readme(report: dict[str, Any]) -> str:
    patched, total = report["patched_modules"], report["total_modules"]
    decisions, inputs = readme_lists(report)
    return f"""# Realigned LoRA adapter (mlflow-nlsr {report["package_version"]})

This PEFT LoRA adapter is the fine-tuned adapter after safety realignment with method
`{report["method"]}` (variant `{report["variant"]}`, scorer `{report["scorer"]}`, selection
`{report["selection"]}`, seed {report["seed"]}, module draw seed
{report.get("selection_seed", report["seed"])}): {patched} of {total} LoRA modules were patched.
Method: NLSR, Yi et al., AAAI 2025 (arXiv 2412.12497); SafeLoRA, Hsu et al., NeurIPS 2024.

Load it on the same base model as the fine-tuned adapter:

```python
from transformers import AutoModelForCausalLM
from peft import PeftModel
model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(BASE), "<this directory>")
```

## Decisions (paper vs official code)
{decisions}

## Inputs (sha256)
{inputs}

## Files
- `adapter_config.json`, `adapter_model.safetensors`: the realigned adapter
  (weights sha256 `{report["output_sha256"]}`)
- `masks.safetensors`: the safety-critical entry mask of every LoRA factor (True = transplanted/projected)
- `nlsr_report.json`: options, per-module similarity and decisions, provenance
- `similarity.png`: per-module similarity, patched modules in red
"""


def write_outputs(out_dir: Path, outcome: MethodOutcome, report: dict[str, Any]) -> dict[str, Any]:
    """Write the five outputs into `out_dir`; returns the final report (with output_sha256)."""
    write_adapter(out_dir, outcome.config, outcome.tensors)
    from safetensors.torch import save_file

    masks = {k: outcome.masks[k].to(torch.bool).contiguous() for k in sorted(outcome.masks)}
    save_file(masks, str(out_dir / MASKS_NAME), metadata={"format": "pt"})
    report = {**report, "output_sha256": sha256_file(out_dir / SAFETENSORS_NAME)}
    ylabel = METHODS.get(report["method"]).similarity_label
    title = (
        f"{report['method']} ({report['variant']}, {report['selection']}): "
        f"{report['patched_modules']}/{report['total_modules']} modules patched"
    )
    similarity_plot(report["modules"], out_dir / PLOT_NAME, title=title, ylabel=ylabel)
    (out_dir / README_NAME).write_text(_readme(report))
    write_report_json(out_dir, report)
    return report


def finish_report(out_dir: Path, report: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Record the wall time in the report file (the adapter files are not touched)."""
    report = {**report, "seconds": round(seconds, 3)}
    write_report_json(out_dir, report)
    return json_safe(report)  # type: ignore[no-any-return]
