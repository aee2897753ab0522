"""Append-only scratch file of 1-D tensors read back by key (values kept on disk instead of in RAM)."""

from __future__ import annotations

from io import BufferedRandom
from pathlib import Path

import torch

from mlflow_nlsr.errors import InputError


class ValueSpill:
    """Append-only scratch file of 1-D tensors, read back by key with plain reads; deleted on close."""

    def __init__(self, path: Path) -> None:
        """Create the scratch file at `path`."""
        self.path = path
        self._file: BufferedRandom = open(path, "w+b")  # noqa: SIM115 - closed in close()
        self._where: dict[str, tuple[int, int, torch.dtype]] = {}
        self._end = 0

    def write(self, key: str, values: torch.Tensor) -> None:
        """Append the values of `values` (flattened) under `key`."""
        flat = values.detach().to("cpu").contiguous().reshape(-1)
        raw = flat.view(torch.uint8).numpy()
        self._file.seek(self._end)
        self._file.write(raw.data)
        self._where[key] = (self._end, flat.numel(), flat.dtype)
        self._end += raw.nbytes

    def read(self, key: str) -> torch.Tensor:
        """The 1-D tensor stored under `key`."""
        if key not in self._where:
            raise InputError(f"scratch file {self.path} holds no values for {key}")
        offset, numel, dtype = self._where[key]
        out = torch.empty(numel, dtype=dtype)
        raw = out.view(torch.uint8).numpy()
        self._file.seek(offset)
        if self._file.readinto(raw.data) != raw.nbytes:
            raise InputError(f"scratch file {self.path} is shorter than expected while reading {key}")
        return out

    def close(self) -> None:
        """Close and delete the scratch file."""
        self._file.close()
        self.path.unlink(missing_ok=True)
