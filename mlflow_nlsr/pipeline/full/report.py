"""Report, plot and README of a full-weight realignment (the LoRA report's schema, plus mode and neuron)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from mlflow_nlsr.core import amplification, combine_strength, kept_rank
from mlflow_nlsr.core.selection import ModuleSelection
from mlflow_nlsr.options import SCORERS, RealignOptions
from mlflow_nlsr.pipeline.full.stats import FullRun, ModuleStats, iter_patched
from mlflow_nlsr.pipeline.plot import similarity_plot
from mlflow_nlsr.pipeline.report import (
    PLOT_NAME,
    README_NAME,
    json_safe,
    readme_lists,
    report_core,
    selection_decision,
    write_report_json,
)


def weights_sha256(file_hashes: dict[str, str]) -> str:
    """sha256 over the weight files (shards and index): sorted names and content hashes, as sha256_dir."""
    h = hashlib.sha256()
    for name in sorted(file_hashes):
        h.update(name.encode() + b"\0" + file_hashes[name].encode() + b"\n")
    return h.hexdigest()


def decisions(options: RealignOptions, rank_cap: int) -> dict[str, str]:
    """How each paper-vs-code decision point (spec §6) was taken in full-weight mode."""
    amp = amplification(options.variant, options.beta)
    d = {
        "D1": f"{options.variant}: dW_e = {amp:g} x (W_a - W_0)",
        "D3": (
            "row: whole output neurons by score norm"
            if options.neuron == "row"
            else "official: top entries per weight matrix"
            if options.variant == "official"
            else "paper: top entries per row"
        ),
        "D4": selection_decision(options),
        "D5": f"{options.correction}: dense W_0 + M*dW_e + (1-M)*dW_t = where(M, W_0 + dW_e, W_t); "
        "code and paper corrections coincide without LoRA factors (no cross terms)",
    }
    if SCORERS.get(options.scorer).uses_kept_rank:
        k = kept_rank(rank_cap, options.sparsity, options.variant)
        d["D2"] = (
            f"{options.variant}: kept rank of kept_rank(min(d_out, d_in, {rank_cap})), "
            f"{k} for matrices of rank >= {rank_cap}"
        )
    return dict(sorted(d.items()))


def build_full_report(
    options: RealignOptions, run: FullRun, *, inputs: dict[str, str], extra: dict[str, Any]
) -> dict[str, Any]:
    """The report dict in the LoRA report's schema; output_sha256 and seconds are filled in later."""
    rows = [
        {
            "name": m.name,
            "similarity": m.similarity,
            "patched": bool(p),
            "mask_density": {"weight": m.density},
        }
        for m, p in iter_patched(run)
    ]
    strength = combine_strength(
        (m.entries_changed, m.entries_total, m.change_sq, m.update_sq)
        if p
        else (0, m.entries_total, 0.0, m.update_sq)
        for m, p in iter_patched(run)
    )
    patched = sum(1 for row in rows if row["patched"])
    report: dict[str, Any] = {
        **report_core(
            options,
            rows,
            inputs=inputs,
            patched=patched,
            decisions=decisions(options, extra.get("rank_cap", 128)),
            strength=strength,
        ),
        "mode": "full",
        "neuron": options.neuron,
        "amplification": amplification(options.variant, options.beta),
        "input_kinds": run.sources,
        "files": sorted(run.files),
        **extra,
    }
    if run.selection.probability is not None:
        report["probabilities"] = [float(p) for p in run.selection.probability.tolist()]
    return report


def _readme(report: dict[str, Any]) -> str:
    decided, inputs = readme_lists(report)
    return f"""# Realigned full-weight checkpoint (mlflow-nlsr {report["package_version"]})

This Hugging Face checkpoint is the fine-tuned model after full-weight Neuron-Level Safety Realignment
(NLSR, Yi et al., AAAI 2025, arXiv 2412.12497) on dense weight updates: variant `{report["variant"]}`,
scorer `{report["scorer"]}`, neuron granularity `{report["neuron"]}`, selection `{report["selection"]}`,
seed {report["seed"]}, module draw seed {report.get("selection_seed", report["seed"])}.
{report["patched_modules"]} of {report["total_modules"]} linear modules were patched: their
safety-critical entries were set to the reference W_0 + dW_e; every other tensor
(embeddings, norms, lm_head, unpatched modules) is the fine-tuned tensor, bit for bit.

```python
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained("<this directory>")
```

## Decisions (paper vs official code)
{decided}

## Inputs (sha256)
{inputs}

## Files
- `model*.safetensors` (+ `model.safetensors.index.json` when sharded): the realigned weights
  (sha256 `{report["output_sha256"]}`); config, generation config and tokenizer from the fine-tuned input
- `masks.safetensors`: the safety-critical mask of every linear weight (True = transplanted if patched)
- `nlsr_report.json`: options, per-module similarity and decisions, provenance
- `similarity.png`: per-module similarity, patched modules in red
"""


def _title(options: RealignOptions, patched: int, total: int) -> str:
    return (
        f"nlsr full ({options.variant}, {options.neuron}, {options.selection}): "
        f"{patched}/{total} modules patched"
    )


def draw_plot(
    out_dir: Path, modules: list[ModuleStats], selection: ModuleSelection, options: RealignOptions
) -> Path:
    """Draw similarity.png from the pass-1 stats and the selection (runs while pass 2 writes)."""
    rows = [
        {"similarity": m.similarity, "patched": bool(p)}
        for m, p in zip(modules, selection.patched.tolist(), strict=True)
    ]
    title = _title(options, selection.count, len(rows))
    return similarity_plot(rows, out_dir / PLOT_NAME, title=title, ylabel="masked similarity S_j")


def write_report_files(out_dir: Path, report: dict[str, Any], *, plot: bool = True) -> dict[str, Any]:
    """Write nlsr_report.json, README.md (and similarity.png when `plot`); return the JSON-safe report."""
    report = json_safe(report)
    if plot:
        options = RealignOptions.from_mapping(report["options"])
        title = _title(options, report["patched_modules"], report["total_modules"])
        similarity_plot(report["modules"], out_dir / PLOT_NAME, title=title, ylabel="masked similarity S_j")
    (out_dir / README_NAME).write_text(_readme(report))
    write_report_json(out_dir, report)
    return report  # type: ignore[no-any-return]
