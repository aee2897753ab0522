"""Streaming safetensors output for full-weight mode: headers first, then one tensor at a time.

``io.ShardedWriter`` buffers a whole shard in memory before writing it, so its peak memory grows with
``max_shard_size``. Here every shape and dtype is known before the first byte is written (from the input
headers), so each shard's header is written first and tensors are appended as they are produced:
memory stays at one tensor whatever the shard size. The layout is the Hugging Face one
(``model.safetensors`` or ``model-0000i-of-0000n.safetensors`` + ``model.safetensors.index.json``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from io import BufferedRandom
from pathlib import Path
from typing import BinaryIO

import torch

from mlflow_nlsr.errors import ConfigError, InputError

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"

#: safetensors dtype name -> (torch dtype, bytes per element)
DTYPES: dict[str, tuple[torch.dtype, int]] = {
    "F64": (torch.float64, 8),
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "I64": (torch.int64, 8),
    "I32": (torch.int32, 4),
    "I16": (torch.int16, 2),
    "I8": (torch.int8, 1),
    "U8": (torch.uint8, 1),
    "BOOL": (torch.bool, 1),
    "F8_E4M3": (torch.float8_e4m3fn, 1),
    "F8_E5M2": (torch.float8_e5m2, 1),
}
_NAMES = {dtype: name for name, (dtype, _) in DTYPES.items()}
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


@dataclass(frozen=True)
class Entry:
    """One tensor to be written: name, safetensors dtype name and shape."""

    key: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        """Size of the tensor data in bytes."""
        return math.prod(self.shape) * DTYPES[self.dtype][1]


def dtype_name(dtype: torch.dtype) -> str:
    """The safetensors dtype name of a torch dtype (e.g. ``torch.bfloat16`` -> ``"BF16"``)."""
    try:
        return _NAMES[dtype]
    except KeyError:
        raise InputError(f"dtype {dtype} cannot be stored in safetensors by mlflow-nlsr") from None


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


class StreamingSafetensors:
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


class StreamingShardedWriter:
    """A HF sharded checkpoint written tensor by tensor in a planned order (see ``plan_shards``)."""

    def __init__(self, directory: Path, entries: Sequence[Entry], max_shard_size: int) -> None:
        """Plan the shards of `entries` in `directory` (nothing is written until the first tensor)."""
        self.directory = directory
        self.shards = plan_shards(entries, max_shard_size)
        n = len(self.shards)
        self.names = [SINGLE_NAME] if n == 1 else [f"model-{i:05d}-of-{n:05d}.safetensors" for i in
                                                    range(1, n + 1)]
        self._where = {e.key: i for i, shard in enumerate(self.shards) for e in shard}
        self._current: StreamingSafetensors | None = None
        self._index = -1
        #: file name -> sha256 of every file written (filled by ``finish``)
        self.sha256: dict[str, str] = {}

    @property
    def order(self) -> list[str]:
        """Tensor names in the order they must be written."""
        return [e.key for shard in self.shards for e in shard]

    def write(self, key: str, tensor: torch.Tensor) -> None:
        """Append the next tensor, opening the next shard when the current one is full."""
        shard = self._where.get(key)
        if shard is None:
            raise InputError(f"tensor {key} is not part of the planned output")
        current = self._current
        if shard != self._index or current is None:
            if current is not None:
                current.finish()
                self.sha256[current.path.name] = current.sha256
            current = StreamingSafetensors(self.directory / self.names[shard], self.shards[shard])
            self._current, self._index = current, shard
        current.write(key, tensor)

    def finish(self) -> list[str]:
        """Close the last shard, write the index (when sharded) and return the file names written."""
        if self._current is None or self._index != len(self.shards) - 1:
            raise InputError("the output checkpoint is incomplete: not every shard was written")
        self._current.finish()
        self.sha256[self._current.path.name] = self._current.sha256
        if len(self.names) == 1:
            return list(self.names)
        weight_map = {e.key: self.names[i] for i, shard in enumerate(self.shards) for e in shard}
        total = sum(e.nbytes for shard in self.shards for e in shard)
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        blob = (json.dumps(index, indent=2) + "\n").encode()
        (self.directory / INDEX_NAME).write_bytes(blob)
        self.sha256[INDEX_NAME] = hashlib.sha256(blob).hexdigest()
        return [*self.names, INDEX_NAME]

    def abort(self) -> None:
        """Drop the shard being written (the caller's temp dir holds the rest)."""
        if self._current is not None:
            self._current.abort()


class ValueSpill:
    """Append-only scratch file of 1-D tensors (reference values of masked entries), read back by key."""

    def __init__(self, path: Path) -> None:
        """Create the scratch file at `path`."""
        self.path = path
        self._file: BufferedRandom = open(path, "w+b")  # noqa: SIM115 - closed in close()
        self._where: dict[str, tuple[int, int, torch.dtype]] = {}
        self._end = 0

    def write(self, key: str, values: torch.Tensor) -> None:
        """Append the 1-D tensor `values` under `key`."""
        flat = values.detach().to("cpu").contiguous().reshape(-1)
        raw = flat.view(torch.uint8).numpy()
        self._file.seek(self._end)
        self._file.write(raw.data)
        self._where[key] = (self._end, flat.numel(), flat.dtype)
        self._end += raw.nbytes

    def read(self, key: str) -> torch.Tensor:
        """The tensor stored under `key`."""
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
