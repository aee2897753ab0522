"""Content hashes of files and directories (recorded as provenance in reports)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from mlflow_nlsr.errors import InputError

_CHUNK = 1 << 20


def _update_from_file(h: hashlib._Hash, path: Path) -> None:
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of one file's bytes."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"cannot hash {path}: not a file")
    h = hashlib.sha256()
    _update_from_file(h, path)
    return h.hexdigest()


def sha256_dir(path: str | Path) -> str:
    """Hex sha256 over every file of a directory: relative POSIX paths and bytes, in sorted order."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    if not path.is_dir():
        raise InputError(f"cannot hash {path}: no such file or directory")
    files = sorted((p for p in path.rglob("*") if p.is_file()), key=lambda p: p.relative_to(path).as_posix())
    h = hashlib.sha256()
    for file in files:
        h.update(file.relative_to(path).as_posix().encode() + b"\0")
        h.update(sha256_file(file).encode() + b"\n")
    return h.hexdigest()
