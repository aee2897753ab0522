"""``actsvd``: the reference update projected onto its top-k output-activation subspace (spec §1.4a–b).

The one scorer that loads a model: the reference model runs on calibration pairs (actsvd_data.py). In
LoRA mode the factors are projected block by block (pipeline/activations.py, shared across calibration
rungs by a ProjectionCache); in full-weight mode each block's input Gram matrices are reduced, as soon
as the block is done, to every linear module's kept subspace V [d_out, k] (pipeline/full/activations.py)
and each module is projected onto its V while it streams.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from mlflow_nlsr import core
from mlflow_nlsr.errors import CalibrationError, ConfigError
from mlflow_nlsr.pipeline.activations import actsvd_reference_projections
from mlflow_nlsr.pipeline.full.activations import capture_subspaces
from mlflow_nlsr.pipeline.full.scoring import kept_rank_for
from mlflow_nlsr.pipeline.projection_cache import ProjectionCache
from mlflow_nlsr.pipeline.scorers.base import Evidence, FactorContext, FullScoring, ModuleContext, Scorer
from mlflow_nlsr.placement import dtype_name, resolve_dtype

if TYPE_CHECKING:
    from mlflow_nlsr.pipeline.methods.base import LoraRun


class ActSVDScorer(Scorer):
    """Activation-aware low rank: what the aligned model's safe answers actually use."""

    summary = (
        "activation-aware low rank; loads the reference model and runs calibration data through it, "
        "in LoRA and full-weight mode"
    )
    uses_kept_rank = True

    def lora_evidence(self, run: LoraRun, reference: dict[str, torch.Tensor]) -> Evidence:
        """The projected reference factors (from `run.projection_cache` when it holds them)."""
        key = ProjectionCache.key(run.inputs, run.options)
        cache = run.projection_cache
        cached = cache.get(key) if cache is not None else None
        if cached is None:
            cached = actsvd_reference_projections(
                run.base, run.finetuned, reference, run.options, progress=run.progress
            )
            if cache is not None:
                cache.put(key, cached)
        return Evidence(projected=cached[0], data=dict(cached[1]))

    def factor_mask(self, key: str, reference: torch.Tensor, ctx: FactorContext) -> torch.Tensor:
        """Top entries of the projected factor."""
        projected = ctx.evidence.projected
        if projected is None or key not in projected:
            raise ConfigError(f"actsvd scorer: no projected factor for {key}")
        return core.top_mask(projected[key], ctx.options.sparsity, per=ctx.per)

    def full_evidence(self, run: FullScoring) -> Evidence:
        """Every linear module's kept output-activation subspace on the calibration data."""
        dtype = dtype_name(resolve_dtype(run.options.dtype, torch.device(run.device)))
        path, data = capture_subspaces(
            run.base.path, run.tokenizer_dir, run.base, run.aligned, run.linear, run.options, run.work,
            run.device, dtype,
        )  # fmt: skip
        return Evidence(subspaces=path, data=data)

    def full_scores(self, key: str, delta_e: torch.Tensor, ctx: ModuleContext) -> torch.Tensor:
        """ΔW_e projected onto the top-k subspace of its output activations."""
        if ctx.subspace is None:
            raise CalibrationError(f"actsvd needs the calibration subspace of {key}; none was captured")
        keep = kept_rank_for(tuple(delta_e.shape), ctx.options, ctx.rank_cap)
        if tuple(ctx.subspace.shape) != (delta_e.shape[0], keep):
            raise CalibrationError(f"actsvd: the subspace of {key} is {tuple(ctx.subspace.shape)}, expected "
                                   f"[{delta_e.shape[0]}, {keep}] (captured with another kept rank)")
        return core.project_onto(delta_e.float(), ctx.subspace)
