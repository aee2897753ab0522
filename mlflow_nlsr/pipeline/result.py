"""The value every realignment returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RealignResult:
    """Where the realigned model was written and the report that was saved with it."""

    output: Path
    report: dict[str, Any] = field(repr=False)

    @property
    def patched_modules(self) -> int:
        """Number of patched modules."""
        return int(self.report.get("patched_modules", 0))
