"""Realignment methods on in-memory adapters: NLSR (masks, similarity, selection, transplant), SafeLoRA."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from mlflow_nlsr import core
from mlflow_nlsr.errors import ConfigError
from mlflow_nlsr.io.adapters import LoraAdapter, key_a, key_b
from mlflow_nlsr.options import RealignOptions
from mlflow_nlsr.pipeline.report import selection_decision

OFFICIAL_SAFELORA_THRESHOLD = 0.5  # IBM/SafeLoRA config.py default
NLSR_SAFELORA_TAU = 0.6  # the NLSR repository's SafeLoRA runs (spec §4)


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
    extra: dict[str, Any] = field(default_factory=dict)


def per_of(options: RealignOptions) -> str:
    """Top-k granularity (D3): per factor matrix for the official variant, per row for the paper's."""
    return "matrix" if options.variant == "official" else "row"


def reference_factors(
    aligned: LoraAdapter, modules: list[str], options: RealignOptions
) -> dict[str, torch.Tensor]:
    """Reference (pre-amplified) factors A_e, B_e of every module (spec §1.3, D1), keyed like the adapter."""
    out: dict[str, torch.Tensor] = {}
    for m in modules:
        a_e, b_e = core.extrapolate_factors(
            aligned.factor_a(m), aligned.factor_b(m), variant=options.variant, beta=options.beta
        )
        out[key_a(m)], out[key_b(m)] = a_e, b_e
    return out


def factor_masks(
    reference: dict[str, torch.Tensor],
    keys: list[str],
    options: RealignOptions,
    projected: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Safety-critical entry masks of every factor key (spec §1.4c) with the chosen scorer."""
    per, sparsity, scorer = per_of(options), options.sparsity, options.scorer
    generator = torch.Generator().manual_seed(int(options.seed))
    masks: dict[str, torch.Tensor] = {}
    for key in keys:
        ref = reference[key]
        if scorer == "actsvd":
            if projected is None or key not in projected:
                raise ConfigError(f"actsvd scorer: no projected factor for {key}")
            masks[key] = core.top_mask(projected[key], sparsity, per=per)
        elif scorer == "weight-lowrank":
            keep = core.kept_rank(min(ref.shape), sparsity, options.variant)
            masks[key] = core.weight_lowrank_mask(ref, sparsity, keep, per=per)
        else:
            masks[key] = core.magnitude_mask(ref, sparsity, per=per)
            if scorer == "random":
                masks[key] = core.random_mask_like(masks[key], generator)
    return masks


def _decisions_nlsr(options: RealignOptions, r: int) -> dict[str, str]:
    beta = options.beta
    d = {
        "D1": f"official: each factor x{2 * beta:g} (dW x{(2 * beta) ** 2:g})"
        if options.variant == "official"
        else f"paper: dW x{1 + beta:g} (lora_B x{1 + beta:g})",
        "D3": "official: top entries per factor matrix"
        if options.variant == "official"
        else "paper: top entries per row",
        "D4": selection_decision(options),
        "D5": "code: masked entries of A and B replaced by the reference (cross terms kept)"
        if options.correction == "code"
        else "paper: W_e' + W_t-hat as exact rank-2r factors (no cross terms)",
    }
    if options.scorer in ("actsvd", "weight-lowrank"):
        k = core.kept_rank(r, options.sparsity, options.variant)
        rule = "int(r*P_SR)" if options.variant == "official" else "r*(1-P_SR)"
        d["D2"] = f"{options.variant}: kept rank {rule} = {k} of {r}"
    return dict(sorted(d.items()))


def _scaled_alpha(config: dict[str, Any], new_r: int) -> float:
    """lora_alpha that keeps PEFT's scaling when r changes to `new_r`."""
    r, alpha = int(config["r"]), float(config.get("lora_alpha", config["r"]))
    if config.get("use_rslora"):
        return alpha * math.sqrt(new_r / r)
    return alpha * new_r / r


def run_nlsr(
    finetuned: LoraAdapter,
    modules: list[str],
    reference: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor],
    options: RealignOptions,
) -> MethodOutcome:
    """Similarity per module, module selection, transplant (spec §1.5–1.6) on in-memory factors."""
    sims = [
        core.factor_similarity(
            finetuned.factor_a(m),
            finetuned.factor_b(m),
            reference[key_a(m)],
            reference[key_b(m)],
            masks[key_a(m)],
            masks[key_b(m)],
        )
        for m in modules
    ]
    selection = core.select_modules(
        torch.tensor(sims, dtype=torch.float64),
        mode=options.selection,
        layer_rate=options.layer_rate,
        epsilon=options.epsilon,
        tau=options.tau,
        seed=options.draw_seed,
    )
    patched = [bool(p) for p in selection.patched.tolist()]
    tensors = dict(finetuned.tensors)
    config = dict(finetuned.config)
    parts = []
    paper = options.correction == "paper"
    for m, is_patched in zip(modules, patched, strict=True):
        a_t, b_t = finetuned.factor_a(m), finetuned.factor_b(m)
        args = (a_t, b_t, reference[key_a(m)], reference[key_b(m)], masks[key_a(m)], masks[key_b(m)])
        if paper:
            if is_patched:
                a_new, b_new = core.paper_correction_factors(*args)
            else:  # zero-padded to rank 2r: B2 A2 == B_t A_t exactly
                a_new = torch.cat([a_t, torch.zeros_like(a_t)], dim=0)
                b_new = torch.cat([b_t, torch.zeros_like(b_t)], dim=1)
        elif is_patched:
            a_new, b_new = core.transplant_factors(*args)
        else:
            a_new, b_new = a_t, b_t
        tensors[key_a(m)], tensors[key_b(m)] = a_new, b_new
        parts.append(core.factor_change(a_t, b_t, a_new, b_new))
    if paper:
        config["r"] = 2 * finetuned.r
        config["lora_alpha"] = _scaled_alpha(finetuned.config, 2 * finetuned.r)
    probability = None if selection.probability is None else [float(p) for p in selection.probability]
    return MethodOutcome(
        tensors=tensors,
        config=config,
        masks=masks,
        similarity=sims,
        patched=patched,
        strength=core.combine_strength(parts),
        decisions=_decisions_nlsr(options, finetuned.r),
        probability=probability,
    )


def run_safelora(
    aligned: LoraAdapter,
    finetuned: LoraAdapter,
    modules: list[str],
    options: RealignOptions,
    device: torch.device | None = None,
) -> MethodOutcome:
    """SafeLoRA (official: B <- C B; safelora-nlsr: A <- A C_in) on the selected modules (spec §4, D6)."""
    device = device or torch.device("cpu")
    official = options.method == "safelora"
    new_factor: dict[str, torch.Tensor] = {}
    cosines: list[float] = []
    for m in modules:
        # the official projector C is [d_out, d_out]: build it on the chosen device
        a_t, b_t = finetuned.factor_a(m).to(device), finetuned.factor_b(m).to(device)
        a_a, b_a = aligned.factor_a(m).to(device), aligned.factor_b(m).to(device)
        if official:
            v = aligned.scaling * (b_a.double() @ a_a.double())
            new, cos = core.safelora_official(a_t, b_t, core.safelora_projector(v))
            cosines.append(round(cos, 5))  # the official code rounds before comparing
        else:
            new, cos = core.safelora_nlsr(a_t, b_t, a_a, b_a)
            cosines.append(cos)
        new_factor[m] = new.cpu()
    cos_t = torch.tensor(cosines, dtype=torch.float64)
    if official:
        tau = options.tau if options.tau is not None else OFFICIAL_SAFELORA_THRESHOLD
        chosen = core.select_safelora(cos_t, num_layers=options.safelora_layers, threshold=tau, strict=False)
        rule = (
            f"{options.safelora_layers} lowest-cosine modules" if options.safelora_layers else f"cos <= {tau}"
        )
        decision = f"official SafeLoRA: C = VV^T/||V||_F from the aligned adapter, B <- C B on the {rule}"
    else:
        tau = options.tau if options.tau is not None else NLSR_SAFELORA_TAU
        chosen = core.select_safelora(cos_t, num_layers=0, threshold=tau, strict=True)
        decision = f"NLSR-repo SafeLoRA: input-side C_in = V^T V/||V||_F, A <- A C_in where cos < {tau}"
    patched = [bool(p) for p in chosen.tolist()]
    tensors, masks, parts = dict(finetuned.tensors), {}, []
    for m, is_patched in zip(modules, patched, strict=True):
        a_t, b_t = finetuned.factor_a(m), finetuned.factor_b(m)
        a_new, b_new = a_t, b_t
        if is_patched:
            a_new, b_new = (a_t, new_factor[m]) if official else (new_factor[m], b_t)
        tensors[key_a(m)], tensors[key_b(m)] = a_new, b_new
        masks[key_a(m)] = torch.full(a_t.shape, is_patched and not official, dtype=torch.bool)
        masks[key_b(m)] = torch.full(b_t.shape, is_patched and official, dtype=torch.bool)
        parts.append(core.factor_change(a_t, b_t, a_new, b_new))
    return MethodOutcome(
        tensors=tensors,
        config=dict(finetuned.config),
        masks=masks,
        similarity=cosines,
        patched=patched,
        strength=core.combine_strength(parts),
        decisions={"D6": decision},
        extra={"tau": tau},
    )
