"""The demo's recipe: sizes and hyperparameters of its training stages, and the full and fast presets.

:mod:`mlflow_nlsr.demo.stages` runs the stages; docs/demo.md ("Choosing the alignment") says how the
full preset's numbers were chosen.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from mlflow_nlsr.demo import data
from mlflow_nlsr.demo.model import DemoModelSpec

ALIGN_SIZE_NAMES = ("align_harmful", "align_benign", "align_edgy", "align_instructions")


@dataclass(frozen=True)
class DemoSettings:
    """Sizes and hyperparameters of the demo's training stages (``None`` limits mean all rows)."""

    seed: int = 0
    align_harmful: int | None = None
    align_benign: int | None = None
    align_edgy: int | None = None
    align_instructions: int | None = None
    align_epochs: int = 3
    align_lr: float = 5e-4
    #: DPO epochs on top of the SFT alignment (0: no preference stage, the SFT adapter is the reference)
    prefer_epochs: int = 0
    prefer_lr: float = 2e-4
    prefer_beta: float = 0.1
    sentiment: int | None = None
    poison_ratio: float = 0.1
    #: which harmful examples poison the attack: 0 the first of each category, else a seeded draw
    poison_draw: int = 0
    attack_epochs: int = 3
    attack_lr: float = 3e-4
    answer_tokens: int = 64
    max_length: int = 256
    batch_size: int = 8
    gen_batch_size: int = 16
    threads: int = 1
    data_dir: str | None = None
    progress: bool = True
    model: DemoModelSpec = field(default_factory=DemoModelSpec)

    @classmethod
    def full(cls) -> DemoSettings:
        """Return the demo's recipe: SFT on 336 pairs x 3 epochs, DPO x 2, 180 sentiment + 20 poison pairs."""
        # Alignment: 84 refusals, 84 benign answers, every edgy-benign answer (119) and instruction (49):
        # the 84 + 84 x 5 epochs of the feasibility study over-refused; then DPO on 368 triples (p2 in
        # docs/demo.md, "Choosing the alignment": the first reference under 10 % ASR and 15 %
        # over-refusal). Attack as in feasibility.md: 181 sentiment + 20 poison pairs x 3 epochs at 3e-4
        # broke safety (ASR 0.03 -> 0.93).
        return cls(align_harmful=84, align_benign=84, align_epochs=3, prefer_epochs=2, sentiment=180)

    @classmethod
    def fast(cls) -> DemoSettings:
        """Return a CI-sized run: fewer pairs and tokens, and a denser poison so the attack still bites."""
        return cls(
            # the CI preset keeps its measured alignment (40 + 40 pairs, 4 epochs): the new edgy and
            # instruction data has been measured on the full preset only (docs/demo.md)
            align_harmful=40,
            align_benign=40,
            align_edgy=0,
            align_instructions=0,
            align_epochs=4,
            sentiment=48,
            poison_ratio=0.25,
            attack_epochs=3,
            answer_tokens=48,
            max_length=128,
        )

    def align_sizes(self) -> data.AlignSizes:
        """Return the alignment file limits (``align_harmful`` … ``align_instructions``)."""
        return data.AlignSizes(*(getattr(self, name) for name in ALIGN_SIZE_NAMES))

    def key(self, *names: str) -> dict[str, Any]:
        """Return the named settings as a JSON-able dict (the part of a stage's cache key they make)."""
        return {n: getattr(self, n) for n in names}


def settings_dict(settings: DemoSettings) -> dict[str, Any]:
    """Return ``settings`` as a JSON-able dict (the model spec by name)."""
    out = dataclasses.asdict(settings)
    out["model"] = settings.model.name
    return out
