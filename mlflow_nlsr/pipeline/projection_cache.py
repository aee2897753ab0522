"""The last few ActSVD projections of one process, so calibration rungs reuse the model pass."""

from __future__ import annotations

import json
from typing import Any

import torch

from mlflow_nlsr.options import RealignOptions

#: the options that decide the ActSVD projections (spec §1.4b); selection, layer rate, epsilon and
#: tau only choose modules afterwards, so calibration rungs differing in those share one projection
PROJECTION_KNOBS = (
    "variant", "beta", "sparsity", "calibration", "calibration_prompts", "calibration_samples",
    "max_length", "seed", "device", "dtype",
)  # fmt: skip



class ProjectionCache:
    """The last few ActSVD projections of one process, keyed by the inputs' hashes and PROJECTION_KNOBS.

    The calibration search realigns the same inputs many times; rungs that differ only in which
    modules are patched reuse the projection (the ~minute-long calibration pass) instead of redoing it.
    """

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self.hits = 0
        self._entries: dict[str, tuple[dict[str, torch.Tensor], dict[str, Any]]] = {}

    @staticmethod
    def key(inputs: dict[str, str], options: RealignOptions) -> str:
        """The cache key of `options` on `inputs` (sha256 of the input dirs)."""
        knobs = {k: getattr(options, k) for k in PROJECTION_KNOBS}
        return json.dumps({"inputs": inputs, "options": knobs}, sort_keys=True, default=str)

    def get(self, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The projection stored under `key` (counted as a hit), else None."""
        found = self._entries.pop(key, None)
        if found is not None:
            self.hits += 1
            self._entries[key] = found  # most recently used last
        return found

    def put(self, key: str, value: tuple[dict[str, torch.Tensor], dict[str, Any]]) -> None:
        """Store `value`, dropping the least recently used entry beyond `size`."""
        self._entries[key] = value
        while len(self._entries) > self.size:
            self._entries.pop(next(iter(self._entries)))
