"""NLSR (and the SafeLoRA baselines) on PEFT LoRA adapters: read, validate, realign, write atomically.

The method (``--method``) and its scorer (``--scorer``) are registered classes (options.METHODS,
options.SCORERS); this module only reads the inputs, hands them to the method and writes the outputs.
"""

from __future__ import annotations

import time
from pathlib import Path

from mlflow_nlsr import core
from mlflow_nlsr.io import (
    atomic_output_dir,
    check_compatible,
    check_continuation,
    check_output_free,
    read_adapter,
    sha256_dir,
)
from mlflow_nlsr.options import METHODS, RealignOptions
from mlflow_nlsr.pipeline.loading import module_order
from mlflow_nlsr.pipeline.methods.base import LoraRun
from mlflow_nlsr.pipeline.projection_cache import ProjectionCache
from mlflow_nlsr.pipeline.report import build_report, finish_report, write_outputs
from mlflow_nlsr.pipeline.result import RealignResult
from mlflow_nlsr.placement import placement


def realign_lora(
    base: str | Path,
    aligned: str | Path,
    finetuned: str | Path,
    output: str | Path,
    options: RealignOptions,
    *,
    progress: bool = True,
    overwrite: bool = False,
    projection_cache: ProjectionCache | None = None,
) -> RealignResult:
    """Realign a LoRA-fine-tuned adapter against its aligned predecessor and write the output dir.

    `projection_cache` (the calibration search passes one) reuses an earlier ActSVD projection of the
    same inputs and projection options.
    """
    start = time.perf_counter()
    base, output = Path(base), Path(output)
    check_output_free(output, overwrite)
    adapter_a, adapter_t = read_adapter(aligned), read_adapter(finetuned)
    check_compatible(base, adapter_a, adapter_t)
    score = check_continuation(adapter_a, adapter_t, force=options.force)
    modules = module_order(base, adapter_t.modules)
    inputs = {"base": sha256_dir(base), "aligned": sha256_dir(aligned), "finetuned": sha256_dir(finetuned)}
    run = LoraRun(base, adapter_a, adapter_t, modules, options, inputs, projection_cache, progress)
    outcome = METHODS.get(options.method)().realign_lora(run)
    extra = {
        "placement": dict(zip(("device", "dtype"), placement(options.device, options.dtype), strict=True)),
        "continuation_score": score,
        "amplification": core.amplification(options.variant, options.beta),
        "lora": {"r": adapter_t.r, "alpha": adapter_t.alpha, "scaling": adapter_t.scaling},
    }
    report = build_report(options, modules, outcome, inputs={**inputs, **outcome.inputs}, extra=extra)
    with atomic_output_dir(output, overwrite=overwrite) as tmp:
        report = write_outputs(tmp, outcome, report)
        report = finish_report(tmp, report, time.perf_counter() - start)
    return RealignResult(output=output.absolute(), report=report)
