"""The scorer base class: one class serves LoRA mode (factor masks) and full-weight mode (module masks)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from mlflow_nlsr.errors import ConfigError
from mlflow_nlsr.options import SCORERS, RealignOptions
from mlflow_nlsr.pipeline.full.scoring import RANK_CAP, mask_from_scores

if TYPE_CHECKING:
    from mlflow_nlsr.pipeline.full.inputs import Source
    from mlflow_nlsr.pipeline.methods.base import LoraRun


@dataclass(frozen=True)
class Evidence:
    """What a scorer measured before masking (only data-driven scorers measure anything).

    Attributes:
        projected: LoRA mode: the projected reference factors, keyed like the adapter.
        subspaces: full mode: safetensors checkpoint (file or sharded dir) of each linear weight's kept
            output-activation subspace V [d_out, k] (``core.actsvd_subspace``), keyed by weight name.
        data: provenance of the data the measurement used (the report's ``actsvd_data``).

    """

    projected: dict[str, torch.Tensor] | None = None
    subspaces: Path | None = None
    data: dict[str, Any] | None = None


@dataclass(frozen=True)
class FactorContext:
    """What the factor masks of one LoRA-mode run share."""

    options: RealignOptions
    #: top-k granularity (D3): "matrix" (official variant) or "row" (paper)
    per: str
    evidence: Evidence
    #: shared by the factors of one run, in module order (the random control)
    generator: torch.Generator


@dataclass(frozen=True)
class ModuleContext:
    """What the mask of one dense module needs in full-weight mode."""

    options: RealignOptions
    #: the module's kept output-activation subspace V [d_out, k] (actsvd)
    subspace: torch.Tensor | None = None
    #: the dense update counts as a LoRA of at most this rank when choosing the kept rank
    rank_cap: int = RANK_CAP


@dataclass(frozen=True)
class FullScoring:
    """What a scorer gets in full-weight mode before the streaming passes."""

    base: Source
    aligned: Source
    finetuned: Source
    #: the realigned linear weights' names
    linear: set[str]
    options: RealignOptions
    #: the model config and tokenizer dir (the fine-tuned checkpoint, or the base under an adapter)
    tokenizer_dir: Path
    #: scratch dir removed after the run
    work: Path
    device: str


class Scorer(ABC):
    """Scores the entries of the reference update; the top (1 − sparsity) are safety-critical."""

    #: one line for ``--help``
    summary: ClassVar[str] = ""
    #: the scorer keeps a rank-k subspace (the report's D2 decision)
    uses_kept_rank: ClassVar[bool] = False

    def lora_evidence(self, run: LoraRun, reference: dict[str, torch.Tensor]) -> Evidence:
        """LoRA mode: measure what the masks need (default: nothing)."""
        return Evidence()

    @abstractmethod
    def factor_mask(self, key: str, reference: torch.Tensor, ctx: FactorContext) -> torch.Tensor:
        """LoRA mode: the bool mask of one reference factor `key` (top-k per ``ctx.per``)."""

    def full_evidence(self, run: FullScoring) -> Evidence:
        """Full-weight mode: measure what the masks need (default: nothing)."""
        return Evidence()

    def full_scores(self, key: str, delta_e: torch.Tensor, ctx: ModuleContext) -> torch.Tensor:
        """Full-weight mode: per-entry scores [d_out, d_in] of the reference update ΔW_e of `key`."""
        raise ConfigError(f"scorer {ctx.options.scorer!r} has no full-weight scores")

    def full_mask(self, key: str, delta_e: torch.Tensor, ctx: ModuleContext) -> torch.Tensor:
        """Full-weight mode: the bool mask [d_out, d_in] of one module (True = transplant)."""
        return mask_from_scores(self.full_scores(key, delta_e, ctx), ctx.options)


def scorer_for(options: RealignOptions) -> Scorer:
    """A new instance of the scorer `options.scorer` names."""
    return SCORERS.get(options.scorer)()
