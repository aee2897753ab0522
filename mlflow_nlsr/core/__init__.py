"""The NLSR algorithm as pure tensor functions: torch + stdlib only (and ``mlflow_nlsr.errors``).

Tensors and frozen dataclasses in, tensors and floats out; no I/O, no model classes, no global RNG
(randomness only from an explicit seed or ``torch.Generator``). Modules follow the spec sections:

* ``reference``  — safety reference by LoRA extrapolation (§1.3, D1)
* ``masks``      — safety-critical neurons: ActSVD projection and top-k masks (§1.4, D2, D3)
* ``factors``    — the factor set of one module (fine-tuned, reference, masks) (§1.5, §1.6)
* ``similarity`` — per-module masked similarity S_j (§1.5)
* ``selection``  — which modules are patched (§1.5, D4)
* ``transplant`` — neuron-level transplant, code and paper corrections, full-weight mode (§1.6, D5)
* ``safelora``   — SafeLoRA baseline, official and NLSR-repo variants (§4, D6)
* ``strength``   — deterministic patch-strength measure for auto-calibration
"""

from __future__ import annotations

from mlflow_nlsr.core.factors import ModuleFactors
from mlflow_nlsr.core.masks import (
    actsvd_project,
    actsvd_subspace,
    input_gram,
    kept_rank,
    magnitude_mask,
    project_onto,
    random_mask_like,
    top_mask,
    weight_lowrank_mask,
)
from mlflow_nlsr.core.reference import amplification, extrapolate_delta, extrapolate_factors
from mlflow_nlsr.core.safelora import safelora_nlsr, safelora_official, safelora_projector, select_safelora
from mlflow_nlsr.core.selection import ModuleSelection, rank_probabilities, select_modules
from mlflow_nlsr.core.similarity import (
    cosine,
    delta_similarity,
    factor_similarity,
    product_cosine,
    product_inner,
)
from mlflow_nlsr.core.strength import PatchStrength, combine_strength, delta_change, factor_change
from mlflow_nlsr.core.transplant import (
    paper_correction_factors,
    row_mask,
    transplant_delta,
    transplant_factors,
)

__all__ = [
    "ModuleFactors",
    "ModuleSelection",
    "PatchStrength",
    "actsvd_project",
    "actsvd_subspace",
    "amplification",
    "combine_strength",
    "cosine",
    "delta_change",
    "delta_similarity",
    "extrapolate_delta",
    "extrapolate_factors",
    "factor_change",
    "factor_similarity",
    "input_gram",
    "kept_rank",
    "magnitude_mask",
    "paper_correction_factors",
    "product_cosine",
    "project_onto",
    "product_inner",
    "random_mask_like",
    "rank_probabilities",
    "row_mask",
    "safelora_nlsr",
    "safelora_official",
    "safelora_projector",
    "select_modules",
    "select_safelora",
    "top_mask",
    "transplant_delta",
    "transplant_factors",
    "weight_lowrank_mask",
]
