"""NLSR (spec §1.3–1.6): reference factors, safety-critical masks (the scorer), similarity, transplant."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch

from mlflow_nlsr import core
from mlflow_nlsr.io.adapters import LoraAdapter, key_a, key_b
from mlflow_nlsr.options import SCORERS, RealignOptions
from mlflow_nlsr.pipeline.methods.base import LoraRun, Method, MethodOutcome
from mlflow_nlsr.pipeline.report import selection_decision
from mlflow_nlsr.pipeline.scorers import FactorContext


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


def decisions(options: RealignOptions, r: int) -> dict[str, str]:
    """How each paper-vs-code decision point (spec §6) was taken in LoRA mode."""
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
    if SCORERS.get(options.scorer).uses_kept_rank:
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


def _similarities(
    finetuned: LoraAdapter, modules: list[str], reference: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor],
) -> list[float]:  # fmt: skip
    return [
        core.factor_similarity(
            finetuned.factor_a(m), finetuned.factor_b(m), reference[key_a(m)], reference[key_b(m)],
            masks[key_a(m)], masks[key_b(m)],
        )  # fmt: skip
        for m in modules
    ]


def _new_factors(
    a_t: torch.Tensor, b_t: torch.Tensor, args: tuple[torch.Tensor, ...], patched: bool, paper: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    if paper:
        if patched:
            return core.paper_correction_factors(a_t, b_t, *args)
        # zero-padded to rank 2r: B2 A2 == B_t A_t exactly
        return torch.cat([a_t, torch.zeros_like(a_t)], dim=0), torch.cat([b_t, torch.zeros_like(b_t)], dim=1)
    if patched:
        return core.transplant_factors(a_t, b_t, *args)
    return a_t, b_t


def run_nlsr(
    finetuned: LoraAdapter,
    modules: list[str],
    reference: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor],
    options: RealignOptions,
) -> MethodOutcome:
    """Similarity per module, module selection, transplant (spec §1.5–1.6) on in-memory factors."""
    sims = _similarities(finetuned, modules, reference, masks)
    selection = core.select_modules(
        torch.tensor(sims, dtype=torch.float64),
        mode=options.selection,
        layer_rate=options.layer_rate,
        epsilon=options.epsilon,
        tau=options.tau,
        seed=options.draw_seed,
    )
    patched = [bool(p) for p in selection.patched.tolist()]
    tensors, config, parts = dict(finetuned.tensors), dict(finetuned.config), []
    paper = options.correction == "paper"
    for m, is_patched in zip(modules, patched, strict=True):
        a_t, b_t = finetuned.factor_a(m), finetuned.factor_b(m)
        args = (reference[key_a(m)], reference[key_b(m)], masks[key_a(m)], masks[key_b(m)])
        a_new, b_new = _new_factors(a_t, b_t, args, is_patched, paper)
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
        decisions=decisions(options, finetuned.r),
        probability=probability,
    )


class NLSR(Method):
    """Transplant the safety-critical entries of the amplified aligned update (spec §1.3–1.6)."""

    summary = "neuron transplant from the amplified aligned update, the default"
    full_weight = True
    tunable_strength = True
    similarity_label = "masked similarity S_j"

    def realign_lora(self, run: LoraRun) -> MethodOutcome:
        """Masks from the scorer (a model pass is recorded as ``actsvd_data``), then :func:`run_nlsr`."""
        options = run.options
        reference = reference_factors(run.aligned, run.modules, options)
        scorer = SCORERS.get(options.scorer)()
        evidence = scorer.lora_evidence(run, reference)
        generator = torch.Generator().manual_seed(int(options.seed))
        ctx = FactorContext(options, per_of(options), evidence, generator)
        keys = [k for m in run.modules for k in (key_a(m), key_b(m))]
        masks = {k: scorer.factor_mask(k, reference[k], ctx) for k in keys}
        outcome = run_nlsr(run.finetuned, run.modules, reference, masks, options)
        if evidence.data is None:
            return outcome
        extra = {**outcome.extra, "actsvd_data": evidence.data}
        return replace(outcome, extra=extra, inputs={"calibration": evidence.data["sha256"]})
