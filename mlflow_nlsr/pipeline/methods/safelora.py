"""SafeLoRA (Hsu et al. 2024) as the official IBM/SafeLoRA code runs it: B <- C B on the chosen modules.

C = V Vᵀ / ‖V‖_F is the projector onto the aligned update V = scaling · B_a A_a; modules are chosen by
the cosine between the projected and the original fine-tuned update (spec §4, D6).
:class:`~mlflow_nlsr.pipeline.methods.safelora_nlsr.SafeLoRANLSR` overrides the projection side and
the selection rule.
"""

from __future__ import annotations

import torch

from mlflow_nlsr import core
from mlflow_nlsr.io.adapters import key_a, key_b
from mlflow_nlsr.options import RealignOptions
from mlflow_nlsr.pipeline.loading import resolve_device
from mlflow_nlsr.pipeline.methods.base import LoraRun, Method, MethodOutcome

OFFICIAL_SAFELORA_THRESHOLD = 0.5  # IBM/SafeLoRA config.py default
#: one module's LoRA factors (A [r, d_in], B [d_out, r])
Factors = tuple[torch.Tensor, torch.Tensor]


class SafeLoRA(Method):
    """Project the fine-tuned update of the least aligned modules onto the aligned update's subspace."""

    summary = "official SafeLoRA projection, a baseline"
    similarity_label = "SafeLoRA cosine"
    #: which factor the projection replaces: "B" (output side) or "A" (input side)
    projected_factor = "B"

    def project(self, tuned: Factors, aligned: Factors, scaling: float) -> tuple[torch.Tensor, float]:
        """The new B of one module and its cosine (the official code rounds it to 5 digits)."""
        # the official projector C is [d_out, d_out]: built on the device the factors are on
        v = scaling * (aligned[1].double() @ aligned[0].double())
        new, cos = core.safelora_official(*tuned, core.safelora_projector(v))
        return new, round(cos, 5)

    def choose(self, cosines: torch.Tensor, options: RealignOptions) -> tuple[torch.Tensor, float, str]:
        """(patched flags, tau, decision text): the N lowest-cosine modules, or cos <= tau."""
        tau = options.tau if options.tau is not None else OFFICIAL_SAFELORA_THRESHOLD
        layers = options.safelora_layers
        chosen = core.select_safelora(cosines, num_layers=layers, threshold=tau, strict=False)
        rule = f"{layers} lowest-cosine modules" if layers else f"cos <= {tau}"
        decision = f"official SafeLoRA: C = VV^T/||V||_F from the aligned adapter, B <- C B on the {rule}"
        return chosen, tau, decision

    def realign_lora(self, run: LoraRun) -> MethodOutcome:
        """Project every module, choose by cosine, replace the projected factor of the chosen ones."""
        device = resolve_device(run.options.device)
        finetuned, new_factor, cosines = run.finetuned, {}, []
        for m in run.modules:
            tuned = (finetuned.factor_a(m).to(device), finetuned.factor_b(m).to(device))
            aligned = (run.aligned.factor_a(m).to(device), run.aligned.factor_b(m).to(device))
            new, cos = self.project(tuned, aligned, run.aligned.scaling)
            new_factor[m] = new.cpu()
            cosines.append(cos)
        chosen, tau, decision = self.choose(torch.tensor(cosines, dtype=torch.float64), run.options)
        patched = [bool(p) for p in chosen.tolist()]
        on_b = self.projected_factor == "B"
        tensors, masks, parts = dict(finetuned.tensors), {}, []
        for m, is_patched in zip(run.modules, patched, strict=True):
            a_t, b_t = finetuned.factor_a(m), finetuned.factor_b(m)
            a_new, b_new = a_t, b_t
            if is_patched:
                a_new, b_new = (a_t, new_factor[m]) if on_b else (new_factor[m], b_t)
            tensors[key_a(m)], tensors[key_b(m)] = a_new, b_new
            masks[key_a(m)] = torch.full(a_t.shape, is_patched and not on_b, dtype=torch.bool)
            masks[key_b(m)] = torch.full(b_t.shape, is_patched and on_b, dtype=torch.bool)
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
