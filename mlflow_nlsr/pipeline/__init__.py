"""Realignment pipelines: LoRA adapters (lora.py) and full weights (the full/ subpackage).

``realign`` is the one entry point; it dispatches on ``options.mode``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlflow_nlsr.options import RealignOptions
from mlflow_nlsr.pipeline.result import RealignResult

__all__ = ["RealignResult", "realign", "resolve_mode"]


def _is_adapter(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def resolve_mode(aligned: str | Path, finetuned: str | Path, options: RealignOptions) -> str:
    """Mode to run: options.mode, or for "auto" "lora" when both inputs are PEFT adapter dirs, else "full"."""
    if options.mode != "auto":
        return options.mode
    return "lora" if _is_adapter(aligned) and _is_adapter(finetuned) else "full"


def realign(
    base: str | Path,
    aligned: str | Path,
    finetuned: str | Path,
    output: str | Path,
    options: RealignOptions | None = None,
    **kwargs: Any,
) -> RealignResult:
    """Realign `finetuned` against `aligned` on `base` and write `output` (see RealignOptions)."""
    options = options or RealignOptions()
    mode = resolve_mode(aligned, finetuned, options)
    if mode == "lora":
        from mlflow_nlsr.pipeline.lora import realign_lora

        return realign_lora(base, aligned, finetuned, output, options, **kwargs)
    from mlflow_nlsr.pipeline.full.realign import realign_full

    kwargs.pop("projection_cache", None)  # LoRA mode only: full mode streams its own projections
    return realign_full(base, aligned, finetuned, output, options, **kwargs)
