"""Streaming safetensors output: every shard's header is planned and written first, then one tensor at a time.

Every tensor's name, dtype and shape must be known before the first byte is written (from input headers),
so memory stays at the one tensor being written whatever the shard size; a writer that buffers a whole
shard before saving it (mergekit's, or ``safetensors.torch.save_file`` per shard) peaks at a shard. The
layout is the Hugging Face one: ``model.safetensors``, or ``model-0000i-of-0000n.safetensors`` plus
``model.safetensors.index.json``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import torch

from mlflow_nlsr.errors import ConfigError, InputError
from mlflow_nlsr.io.safetensors_io import INDEX_NAME, SINGLE_NAME, dtype_name, dtype_size

DEFAULT_MAX_SHARD_SIZE = 2 * 10**9
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


@dataclass(frozen=True)
class Entry:
    """One tensor to be written: name, safetensors dtype name and shape."""

    key: str
    dtype: str
    shape: tuple[int, ...]

    @classmethod
    def of(cls, key: str, tensor: torch.Tensor) -> Entry:
        """The entry that `tensor` would be written as under `key`."""
        return cls(key, dtype_name(tensor.dtype), tuple(tensor.shape))

    @property
    def nbytes(self) -> int:
        """Size of the tensor data in bytes."""
        return math.prod(self.shape) * dtype_size(self.dtype)


def parse_size(size: int | str) -> int:
    """Bytes of a size such as ``2GB`` (10^9), ``500MiB`` (2^20) or a plain integer."""
    if isinstance(size, int) and not isinstance(size, bool):
        value = size
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?I?B?)\s*", str(size).upper())
        if match is None or match.group(2) not in _UNITS:
            raise ConfigError(f"max shard size must look like 2GB, 500MB or 500MiB; got {size!r}")
        value = int(float(match.group(1)) * _UNITS[match.group(2)])
    if value < 1:
        raise ConfigError(f"max shard size must be at least 1 byte; got {size!r}")
    return value


def plan_shards(entries: Sequence[Entry], max_shard_size: int) -> list[list[Entry]]:
    """Split entries, in order, into shards of at most `max_shard_size` bytes (one tensor may exceed it)."""
    shards: list[list[Entry]] = [[]]
    size = 0
    for entry in entries:
        if shards[-1] and size + entry.nbytes > max_shard_size:
            shards.append([])
            size = 0
        shards[-1].append(entry)
        size += entry.nbytes
    return shards


def _header(entries: Sequence[Entry], metadata: dict[str, str]) -> bytes:
    header: dict[str, object] = {"__metadata__": metadata}
    offset = 0
    for entry in entries:
        header[entry.key] = {"dtype": entry.dtype, "shape": list(entry.shape),
                             "data_offsets": [offset, offset + entry.nbytes]}
        offset += entry.nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # safetensors aligns the data start to 8 bytes
    return len(blob).to_bytes(8, "little") + blob


class SafetensorsWriter:
    """One safetensors file whose header is written up front; tensors must then come in entry order."""

    def __init__(self, path: Path, entries: Sequence[Entry], metadata: dict[str, str] | None = None) -> None:
        """Create `path` and write the header for `entries`."""
        self.path = path
        self.entries = list(entries)
        self._next = 0
        self._file: BinaryIO | None = open(path, "wb")  # noqa: SIM115 - closed in finish()/abort()
        header = _header(self.entries, {"format": "pt", **(metadata or {})})
        self._sha = hashlib.sha256(header)
        self._file.write(header)

    def write(self, key: str, tensor: torch.Tensor) -> None:
        """Append `tensor` as `key`; it must be the next planned entry, with its dtype and shape."""
        if self._file is None or self._next >= len(self.entries):
            raise InputError(f"{self.path}: no more tensors expected, got {key}")
        entry = self.entries[self._next]
        found = (key, dtype_name(tensor.dtype), tuple(tensor.shape))
        if found != (entry.key, entry.dtype, entry.shape):
            raise InputError(f"{self.path}: expected {entry.key} {entry.dtype} {list(entry.shape)}; "
                             f"got {key} {found[1]} {list(found[2])}")
        data = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().data
        self._sha.update(data)
        self._file.write(data)
        self._next += 1

    @property
    def sha256(self) -> str:
        """Hex sha256 of the bytes written so far (the whole file once finished)."""
        return self._sha.hexdigest()

    def finish(self) -> None:
        """Close the file; every planned tensor must have been written."""
        if self._file is None:
            return
        if self._next != len(self.entries):
            missing = self.entries[self._next].key
            self.abort()
            raise InputError(f"{self.path}: tensor {missing} was never written")
        self._file.close()
        self._file = None

    def abort(self) -> None:
        """Close and delete the partial file."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self.path.unlink(missing_ok=True)


class ShardedWriter:
    """A HF (sharded) checkpoint in `directory`, written tensor by tensor in a planned order.

    ``entries`` (name, dtype, shape of every tensor, in the order they will be written) are split into
    shards of at most ``max_shard_size`` bytes up front (``plan_shards``); ``write`` must then be called
    for ``order`` in turn. As a context manager, a clean exit calls ``finish`` and an error removes every
    file written. Write into a temporary directory and rename it into place (see ``atomic_output_dir``).
    """

    def __init__(self, directory: str | Path, entries: Sequence[Entry], *,
                 max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
                 metadata: dict[str, str] | None = None) -> None:
        """Plan the shards of `entries` in `directory` (nothing is written until the first tensor)."""
        self.directory = Path(directory)
        keys = [e.key for e in entries]
        if len(set(keys)) != len(keys):
            twice = next(k for i, k in enumerate(keys) if k in keys[:i])
            raise InputError(f"tensor {twice} is planned twice for {self.directory}")
        self.shards = plan_shards(entries, parse_size(max_shard_size))
        self.metadata = metadata
        n = len(self.shards)
        self.names = [SINGLE_NAME] if n == 1 else [f"model-{i:05d}-of-{n:05d}.safetensors" for i in
                                                    range(1, n + 1)]
        self.order: list[str] = keys
        self._shard_of = [i for i, shard in enumerate(self.shards) for _ in shard]
        self._pos = 0
        self._current: SafetensorsWriter | None = None
        self._written: list[Path] = []
        #: file name -> sha256 of every file written so far (all of them once finished)
        self.sha256: dict[str, str] = {}
        #: names of the files written, in order (set by ``finish``)
        self.files: list[str] = []

    def _open(self, shard: int) -> SafetensorsWriter:
        if self._current is not None:
            self._current.finish()
            self.sha256[self._current.path.name] = self._current.sha256
        self.directory.mkdir(parents=True, exist_ok=True)
        self._written.append(self.directory / self.names[shard])
        self._current = SafetensorsWriter(self._written[-1], self.shards[shard], self.metadata)
        return self._current

    def write(self, key: str, tensor: torch.Tensor) -> None:
        """Append tensor `key` (the next name in ``order``), opening the next shard when one is full."""
        if self._pos >= len(self.order) or key != self.order[self._pos]:
            expected = self.order[self._pos] if self._pos < len(self.order) else "no more tensors"
            raise InputError(f"{self.directory}: expected {expected}, got tensor {key}")
        shard = self._shard_of[self._pos]
        current = self._current
        if current is None or current.path.name != self.names[shard]:
            current = self._open(shard)
        current.write(key, tensor)
        self._pos += 1

    def finish(self) -> list[str]:
        """Close the last shard, write the index (when sharded) and return the file names written."""
        if self.files:
            return list(self.files)
        if self._pos != len(self.order):
            raise InputError(f"the checkpoint in {self.directory} is incomplete: tensor "
                             f"{self.order[self._pos]} was never written")
        current = self._current if self._current is not None else self._open(0)  # no tensors at all
        current.finish()
        self.sha256[current.path.name] = current.sha256
        self.files = list(self.names)
        if len(self.names) > 1:
            weight_map = {e.key: self.names[i] for i, shard in enumerate(self.shards) for e in shard}
            total = sum(e.nbytes for shard in self.shards for e in shard)
            index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
            blob = (json.dumps(index, indent=2) + "\n").encode()
            self._written.append(self.directory / INDEX_NAME)
            self._written[-1].write_bytes(blob)
            self.sha256[INDEX_NAME] = hashlib.sha256(blob).hexdigest()
            self.files.append(INDEX_NAME)
        return list(self.files)

    def abort(self) -> None:
        """Delete every file written so far (the shard in progress and the finished ones)."""
        if self._current is not None:
            self._current.abort()
            self._current = None
        for path in self._written:
            path.unlink(missing_ok=True)
        self._written, self.files = [], []
        self.sha256.clear()

    def __enter__(self) -> ShardedWriter:
        """Start writing."""
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Finish the checkpoint, or delete what was written on error."""
        if exc_type is not None:
            self.abort()
            return
        try:
            self.finish()
        except BaseException:
            self.abort()
            raise
