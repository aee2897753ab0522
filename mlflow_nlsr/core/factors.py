"""The factor set of one LoRA module that similarity and transplant work on (spec §1.5, §1.6)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from mlflow_nlsr.core._checks import check_lora_pair, check_mask, check_same_shape


class ModuleFactors(NamedTuple):
    """Fine-tuned and reference LoRA factors of one module with its safety masks.

    Attributes:
        a_t: fine-tuned lora_A [r, d_in].
        b_t: fine-tuned lora_B [d_out, r].
        a_e: reference lora_A [r, d_in].
        b_e: reference lora_B [d_out, r].
        m_a: bool mask of A [r, d_in].
        m_b: bool mask of B [d_out, r].

    """

    a_t: torch.Tensor
    b_t: torch.Tensor
    a_e: torch.Tensor
    b_e: torch.Tensor
    m_a: torch.Tensor
    m_b: torch.Tensor

    def checked_masks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Check the shapes (InputError / IncompatibleModelsError); return the bool masks (M_A, M_B).

        The masks come back on ``a_t``'s and ``b_t``'s devices.
        """
        check_lora_pair(self.a_t, self.b_t, "fine-tuned")
        check_same_shape(self.a_e, self.a_t, "reference vs fine-tuned lora_A")
        check_same_shape(self.b_e, self.b_t, "reference vs fine-tuned lora_B")
        m_a = check_mask(self.m_a, self.a_t, "mask vs lora_A")
        return m_a, check_mask(self.m_b, self.b_t, "mask vs lora_B")
