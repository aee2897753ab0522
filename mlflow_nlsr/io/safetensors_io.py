"""Reading Hugging Face safetensors checkpoints tensor by tensor with plain file reads (no memory map).

A checkpoint dir (``model.safetensors``, or shards listed in ``model.safetensors.index.json``) is
described by its headers alone (dtype, shape, shard and byte offset of every tensor) before any tensor
data is read. Tensors are then read with ``readinto`` into fresh tensors: a memory-mapped shard stays
resident as its pages are touched, so reading a whole model through mmap makes RSS grow by up to a
shard per input, while explicit reads keep RSS at the live tensors.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from io import BufferedReader
from pathlib import Path
from typing import Any

import torch

from mlflow_nlsr.errors import CorruptCheckpointError, InputError

SINGLE_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
_MAX_HEADER = 100_000_000  # the safetensors format's own limit

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


def dtype_name(dtype: torch.dtype) -> str:
    """The safetensors dtype name of a torch dtype (e.g. ``torch.bfloat16`` -> ``"BF16"``)."""
    try:
        return _NAMES[dtype]
    except KeyError:
        raise InputError(f"dtype {dtype} cannot be stored in safetensors by mlflow-nlsr") from None


def dtype_size(name: str) -> int:
    """Bytes per element of safetensors dtype `name`; InputError for a dtype mlflow-nlsr cannot read."""
    try:
        return DTYPES[name][1]
    except KeyError:
        raise InputError(f"safetensors dtype {name} is not supported by mlflow-nlsr") from None


@dataclass(frozen=True)
class TensorInfo:
    """Header facts of one stored tensor: safetensors dtype name, shape, shard file and byte offset."""

    dtype: str
    shape: tuple[int, ...]
    shard: str
    offset: int

    @property
    def nbytes(self) -> int:
        """Size of the tensor data in bytes."""
        return math.prod(self.shape) * dtype_size(self.dtype)


def read_header(file: Path) -> tuple[dict[str, Any], int]:
    """The tensor entries of a safetensors header and the byte offset where tensor data starts.

    Raises CorruptCheckpointError naming `file` when the header is unreadable or the file is shorter
    than the header says (a truncated download or copy).
    """
    try:
        with open(file, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if size <= 0 or size > _MAX_HEADER:
                raise CorruptCheckpointError(f"{file} is truncated or corrupt: invalid header length {size}")
            header = json.loads(fh.read(size))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        header.pop("__metadata__", None)
        end = max((int(v["data_offsets"][1]) for v in header.values()), default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise CorruptCheckpointError(f"{file} is truncated or corrupt: unreadable header ({exc})") from exc
    if file.stat().st_size < 8 + size + end:
        raise CorruptCheckpointError(f"{file} is truncated: its header needs {8 + size + end} bytes, "
                                     f"the file has {file.stat().st_size}")
    return header, 8 + size


class SafetensorsReader:
    """One safetensors file read with plain reads into fresh tensors (header parsed up front)."""

    def __init__(self, path: str | Path) -> None:
        """Parse the header of `path` (the file is opened on the first read)."""
        self.path = Path(path)
        self.header, self.data_start = read_header(self.path)
        self._fh: BufferedReader | None = None

    def keys(self) -> list[str]:
        """Tensor names in the file, in header order."""
        return list(self.header)

    def get(self, key: str) -> torch.Tensor:
        """Tensor `key` as a new CPU tensor in its stored dtype."""
        entry = self.header.get(key)
        if entry is None:
            raise InputError(f"tensor {key} is not in {self.path}")
        start, end = (int(v) for v in entry["data_offsets"])
        dtype = DTYPES.get(entry["dtype"])
        if dtype is None:
            raise InputError(f"{self.path}: tensor {key} has unsupported dtype {entry['dtype']}")
        shape = [int(d) for d in entry["shape"]]
        out = torch.empty(shape, dtype=dtype[0])
        raw = out.reshape(-1).view(torch.uint8).numpy()
        if raw.nbytes != end - start:
            raise CorruptCheckpointError(f"{self.path}: {key} has {end - start} bytes for shape {shape}")
        if self._fh is None:
            self._fh = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        self._fh.seek(self.data_start + start)
        if self._fh.readinto(raw.data) != raw.nbytes:
            raise CorruptCheckpointError(f"{self.path} is truncated while reading {key}")
        return out

    def close(self) -> None:
        """Close the file (it is reopened by the next read)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> SafetensorsReader:
        """Use as a context manager; the file is closed on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the file."""
        self.close()


class LazyCheckpoint:
    """A HF checkpoint dir (single file or sharded with an index) read tensor by tensor.

    Every shard header is read up front (``infos``); ``get`` reads one tensor with plain reads, with at
    most one shard file open at a time.
    """

    def __init__(self, path: str | Path) -> None:
        """Index the checkpoint at `path` (reads the index and shard headers only)."""
        self.path = Path(path)
        self._files: dict[str, SafetensorsReader] = {}
        self._open: SafetensorsReader | None = None
        #: tensor name -> header facts, in the order the index or header lists them
        self.infos: dict[str, TensorInfo] = self._index()

    def _weight_map(self) -> dict[str, str]:
        index, single = self.path / INDEX_NAME, self.path / SINGLE_NAME
        if index.is_file():
            try:
                return dict(json.loads(index.read_text())["weight_map"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise CorruptCheckpointError(f"{index} is not a valid safetensors index: {exc}") from exc
        if single.is_file():
            self._files[SINGLE_NAME] = SafetensorsReader(single)
            return dict.fromkeys(self._files[SINGLE_NAME].header, SINGLE_NAME)
        raise InputError(f"{self.path} holds neither {SINGLE_NAME} nor {INDEX_NAME} (safetensors only)")

    def _index(self) -> dict[str, TensorInfo]:
        infos: dict[str, TensorInfo] = {}
        for key, shard in self._weight_map().items():
            if shard not in self._files:
                if not (self.path / shard).is_file():
                    raise InputError(f"{self.path / INDEX_NAME} names shard {shard} for tensor {key}, "
                                     f"which is missing from {self.path}")
                self._files[shard] = SafetensorsReader(self.path / shard)
            entry = self._files[shard].header.get(key)
            if entry is None:
                raise CorruptCheckpointError(f"tensor {key} is listed in {self.path / INDEX_NAME} but "
                                             f"missing from {shard}")
            infos[key] = TensorInfo(str(entry["dtype"]), tuple(int(d) for d in entry["shape"]), shard,
                                    int(entry["data_offsets"][0]))
        return infos

    def info(self, key: str) -> TensorInfo:
        """Header facts of tensor `key`; InputError if the checkpoint does not hold it."""
        try:
            return self.infos[key]
        except KeyError:
            raise InputError(f"tensor {key} is not in checkpoint {self.path}") from None

    def keys(self) -> list[str]:
        """Every tensor name, sorted."""
        return sorted(self.infos)

    def ordered_keys(self) -> list[str]:
        """Tensor names in storage order (shard, then offset): the cheapest order to read them in."""
        return sorted(self.infos, key=lambda k: (self.infos[k].shard, self.infos[k].offset))

    def __contains__(self, key: object) -> bool:
        """Whether the checkpoint holds tensor `key`."""
        return key in self.infos

    def shards(self) -> list[str]:
        """Shard file names, sorted."""
        return sorted(self._files)

    def shape(self, key: str) -> tuple[int, ...]:
        """Shape of tensor `key` (from the header, no data read)."""
        return self.info(key).shape

    def get(self, key: str) -> torch.Tensor:
        """Tensor `key` as a new CPU tensor in its stored dtype (one shard file open at a time)."""
        file = self._files[self.info(key).shard]
        if self._open is not file:
            self.close()
            self._open = file
        return file.get(key)

    def close(self) -> None:
        """Close the open shard file."""
        if self._open is not None:
            self._open.close()
            self._open = None

    def __enter__(self) -> LazyCheckpoint:
        """Use as a context manager; the open shard is closed on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the open shard file."""
        self.close()
