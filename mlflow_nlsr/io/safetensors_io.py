"""Lazy reading and sharded writing of Hugging Face safetensors checkpoints (one shard at a time)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from mlflow_nlsr.errors import CorruptCheckpointError, InputError

SINGLE_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
DEFAULT_MAX_SHARD_SIZE = 5 * 1024**3


class LazyCheckpoint:
    """A HF checkpoint dir (single file or sharded with an index) read tensor by tensor.

    At most one shard is open at a time; ``get`` returns a CPU tensor.
    """

    def __init__(self, path: str | Path) -> None:
        """Index the checkpoint at `path` (reads headers only)."""
        self.path = Path(path)
        self._open_name: str | None = None
        self._handle: Any = None
        self._weight_map = self._index()

    def _index(self) -> dict[str, str]:
        index, single = self.path / INDEX_NAME, self.path / SINGLE_NAME
        if index.is_file():
            try:
                data = json.loads(index.read_text())
                weight_map = dict(data["weight_map"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise CorruptCheckpointError(f"{index} is not a valid safetensors index: {exc}") from exc
            for shard in sorted(set(weight_map.values())):
                if not (self.path / shard).is_file():
                    raise InputError(f"{index} names shard {shard}, which is missing from {self.path}")
            return weight_map
        if single.is_file():
            names = self._open(SINGLE_NAME).keys()
            return dict.fromkeys(names, SINGLE_NAME)
        raise InputError(f"{self.path} holds neither {SINGLE_NAME} nor {INDEX_NAME}")

    def _open(self, name: str) -> Any:
        if self._open_name != name:
            from safetensors import SafetensorError, safe_open

            self._handle = None
            try:
                self._handle = safe_open(str(self.path / name), framework="pt", device="cpu")
            except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
                raise CorruptCheckpointError(f"{self.path / name} is truncated or corrupt: {exc}") from exc
            self._open_name = name
        return self._handle

    def _shard_of(self, key: str) -> str:
        try:
            return self._weight_map[key]
        except KeyError:
            raise InputError(f"tensor {key} is not in checkpoint {self.path}") from None

    def keys(self) -> list[str]:
        """Every tensor name, sorted."""
        return sorted(self._weight_map)

    def __contains__(self, key: object) -> bool:
        """Whether the checkpoint holds tensor `key`."""
        return key in self._weight_map

    def shards(self) -> list[str]:
        """Shard file names, sorted."""
        return sorted(set(self._weight_map.values()))

    def shape(self, key: str) -> tuple[int, ...]:
        """Shape of tensor `key` (from the header, no data read)."""
        handle = self._open(self._shard_of(key))
        return tuple(handle.get_slice(key).get_shape())

    def get(self, key: str) -> torch.Tensor:
        """Tensor `key` as a CPU tensor."""
        from safetensors import SafetensorError

        shard = self._shard_of(key)
        try:
            return self._open(shard).get_tensor(key)  # type: ignore[no-any-return]
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise CorruptCheckpointError(f"{self.path / shard}: cannot read {key}: {exc}") from exc

    def close(self) -> None:
        """Release the open shard."""
        self._handle, self._open_name = None, None

    def __enter__(self) -> LazyCheckpoint:
        """Use as a context manager; the shard is released on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Release the open shard."""
        self.close()


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


class ShardedWriter:
    """Write tensors into shards of at most `max_shard_size` bytes, HF layout, in directory `path`.

    One shard gives ``model.safetensors``; several give ``model-0000i-of-0000n.safetensors`` plus
    ``model.safetensors.index.json``. Files are only named on a clean exit; on error they are removed.
    Write into a temporary directory and rename it into place (see ``atomic_output_dir``).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_shard_size: int = DEFAULT_MAX_SHARD_SIZE,
        metadata: dict[str, str] | None = None,
    ) -> None:
        """Prepare a writer into `path` (created if missing)."""
        if max_shard_size < 1:
            raise ValueError(f"max_shard_size must be >= 1 byte; got {max_shard_size}")
        self.path = Path(path)
        self.max_shard_size = max_shard_size
        self.metadata = {"format": "pt", **(metadata or {})}
        self._pending: dict[str, torch.Tensor] = {}
        self._pending_bytes = 0
        self._parts: list[tuple[str, list[str]]] = []
        self._seen: set[str] = set()
        self._total = 0
        self.files: list[str] = []

    def __enter__(self) -> ShardedWriter:
        """Start writing."""
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    def add(self, key: str, tensor: torch.Tensor) -> None:
        """Queue `tensor` under `key`; flush a shard when the size limit would be passed."""
        if key in self._seen:
            raise ValueError(f"tensor {key} was already written")
        tensor = tensor.detach().to("cpu").contiguous()
        size = _nbytes(tensor)
        if self._pending and self._pending_bytes + size > self.max_shard_size:
            self._flush()
        self._seen.add(key)
        self._pending[key] = tensor
        self._pending_bytes += size
        self._total += size

    def _flush(self) -> None:
        from safetensors.torch import save_file

        name = f".part-{len(self._parts):05d}.safetensors"
        ordered = {k: self._pending[k] for k in sorted(self._pending)}
        save_file(ordered, str(self.path / name), metadata=self.metadata)
        self._parts.append((name, sorted(self._pending)))
        self._pending, self._pending_bytes = {}, 0

    def _finish(self) -> None:
        if self._pending or not self._parts:
            self._flush()
        n = len(self._parts)
        if n == 1:
            os.replace(self.path / self._parts[0][0], self.path / SINGLE_NAME)
            self.files = [SINGLE_NAME]
            return
        weight_map: dict[str, str] = {}
        for i, (part, keys) in enumerate(self._parts, start=1):
            final = f"model-{i:05d}-of-{n:05d}.safetensors"
            os.replace(self.path / part, self.path / final)
            self.files.append(final)
            weight_map.update({k: final for k in keys})
        index = {"metadata": {"total_size": self._total}, "weight_map": dict(sorted(weight_map.items()))}
        (self.path / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
        self.files.append(INDEX_NAME)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Name the shards and write the index, or remove the partial shards on error."""
        if exc_type is None:
            self._finish()
            return
        for part, _ in self._parts:
            (self.path / part).unlink(missing_ok=True)
        self._pending = {}
