"""The method base class, its LoRA-mode input bundle and its outcome."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from mlflow_nlsr import core
from mlflow_nlsr.io.adapters import LoraAdapter
from mlflow_nlsr.options import RealignOptions

if TYPE_CHECKING:
    from mlflow_nlsr.pipeline.projection_cache import ProjectionCache


@dataclass(frozen=True)
class LoraRun:
    """What a method gets in LoRA mode: the read, validated inputs and the options."""

    base: Path
    aligned: LoraAdapter
    finetuned: LoraAdapter
    #: module names in the base model's order
    modules: list[str]
    options: RealignOptions
    #: sha256 of the input dirs (the ActSVD projection cache keys on them)
    inputs: dict[str, str]
    projection_cache: ProjectionCache | None = None
    progress: bool = True


@dataclass(frozen=True)
class MethodOutcome:
    """New adapter tensors/config, masks and per-module decisions of one realignment."""

    tensors: dict[str, torch.Tensor]
    config: dict[str, Any]
    masks: dict[str, torch.Tensor]
    similarity: list[float]
    patched: list[bool]
    strength: core.PatchStrength
    decisions: dict[str, str]
    probability: list[float] | None = None
    #: extra report keys (e.g. ``actsvd_data``, ``tau``)
    extra: dict[str, Any] = field(default_factory=dict)
    #: extra input hashes (e.g. the ActSVD calibration file's)
    inputs: dict[str, str] = field(default_factory=dict)


class Method(ABC):
    """One realignment method (``--method``): registered in ``options.METHODS``."""

    #: one line for ``--help``
    summary: ClassVar[str] = ""
    #: full-weight mode implements it (streamed, tensor by tensor: pipeline/full/)
    full_weight: ClassVar[bool] = False
    #: the calibration ladder may vary its strength knobs (sparsity, beta, module fraction)
    tunable_strength: ClassVar[bool] = False
    #: the y axis of similarity.png
    similarity_label: ClassVar[str] = "similarity"

    @abstractmethod
    def realign_lora(self, run: LoraRun) -> MethodOutcome:
        """Realign the fine-tuned adapter of `run` in memory."""
