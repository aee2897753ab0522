"""Content hashes of files and directories (recorded as provenance in reports).

A job hashes the same multi-GB model dirs several times (the realign report's inputs, the gate cache's
keys, a cached reference named by its hash): :func:`sha256_dir` remembers the last digests of this
process with each file's size and modification time, and reuses a digest only while none of them
changed (the quick check of rsync and make). ``reuse=False`` always reads every byte (``gc
--verify-references`` and ``verify``).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path

from mlflow_nlsr.errors import InputError

_CHUNK = 1 << 20
#: how many directory digests a process remembers (least recently used dropped first)
MEMO_SIZE = 64
_memo: OrderedDict[str, tuple[tuple[tuple[str, int, int], ...], str]] = OrderedDict()
_memo_lock = threading.Lock()


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


def sha256_dir(path: str | Path, *, reuse: bool = True) -> str:
    """Hex sha256 over every file of a directory: relative POSIX paths and bytes, in sorted order.

    With `reuse`, a digest this process computed for the same directory is returned without reading
    the files again while every file keeps its name, size and modification time.
    """
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    if not path.is_dir():
        raise InputError(f"cannot hash {path}: no such file or directory")
    files, stamp = _listing(path)
    key = os.path.realpath(path)
    with _memo_lock:
        known = _memo.get(key)
        if reuse and known is not None and known[0] == stamp:
            _memo.move_to_end(key)
            return known[1]
    h = hashlib.sha256()
    for file in files:
        h.update(file.relative_to(path).as_posix().encode() + b"\0")
        h.update(sha256_file(file).encode() + b"\n")
    digest = h.hexdigest()
    _remember(key, stamp, digest)
    return digest


def remember_dir_digest(path: str | Path, digest: str) -> None:
    """Record `digest` as the content hash of directory `path` as it is now.

    For a directory just hashed under another name and renamed atomically: the next :func:`sha256_dir`
    of it reads nothing while its files keep their names, sizes and modification times.
    """
    _remember(os.path.realpath(path), _listing(Path(path))[1], digest)


def _listing(path: Path) -> tuple[list[Path], tuple[tuple[str, int, int], ...]]:
    """The files under `path` in hashing order, and their (relative name, size, mtime) stamp."""
    files = sorted((p for p in path.rglob("*") if p.is_file()), key=lambda p: p.relative_to(path).as_posix())
    stamp = []
    for file in files:
        info = file.stat()
        stamp.append((file.relative_to(path).as_posix(), info.st_size, info.st_mtime_ns))
    return files, tuple(stamp)


def _remember(key: str, stamp: tuple[tuple[str, int, int], ...], digest: str) -> None:
    with _memo_lock:
        _memo[key] = (stamp, digest)
        _memo.move_to_end(key)
        while len(_memo) > MEMO_SIZE:
            _memo.popitem(last=False)
