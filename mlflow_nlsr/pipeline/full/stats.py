"""What pass 1 of a full-weight realignment measured, per module and per run (the report's input)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mlflow_nlsr.core.selection import ModuleSelection


@dataclass(frozen=True)
class ModuleStats:
    """Pass-1 numbers of one realigned module (weight name `key`)."""

    key: str
    similarity: float
    density: float
    entries_changed: int
    entries_total: int
    change_sq: float
    update_sq: float

    @property
    def name(self) -> str:
        """Module name: the weight name without ``.weight``."""
        return self.key.removesuffix(".weight")


@dataclass(frozen=True)
class FullRun:
    """Everything the report needs about one full-weight realignment."""

    modules: list[ModuleStats]
    selection: ModuleSelection
    files: list[str]
    sources: dict[str, str]
    #: provenance of the scorer's calibration data (actsvd), the report's ``actsvd_data``
    actsvd_data: dict[str, Any] | None = None
    weight_hashes: dict[str, str] = field(default_factory=dict)


def iter_patched(run: FullRun) -> Iterator[tuple[ModuleStats, bool]]:
    """(module stats, patched) in module order."""
    yield from zip(run.modules, run.selection.patched.tolist(), strict=True)
