"""Downloaded references, kept once per content under ``<work>/references/`` and reused by every job.

A job's base and aligned models are downloaded the first time a job needs them; later jobs and every
resume find them here. Layout of the cache root:

- ``<sha256>/``: the model dir (an HF checkpoint or a PEFT adapter). Its name is its content hash,
  :func:`mlflow_nlsr.io.hashing.sha256_dir`, the hash the realign report records as ``inputs.base`` /
  ``inputs.aligned``.
- ``<sha256>.json``: the entry's manifest (every file's size); its mtime is the entry's last use.
- ``index/<id>.json``: which entry a pinned identity resolved to. The identity of a registered version
  is ``models:/NAME/VERSION`` (an alias is pinned to its version first) with the version's source, run
  id and creation time, so a version deleted and re-created under the same number never hits the old
  entry; for ``models:/m-…``, ``runs:/`` and other artifact URIs it is the URI.
- ``.partial/``: downloads in flight.

Two workers resolving the same reference at once each download into ``.partial/`` and rename into
place; the rename is atomic, and the one that finds the entry already there drops its copy. Reuse checks
the manifest's file sizes (cheap); :meth:`ReferenceCache.damaged` rehashes every entry
(``mlflow nlsr gc --verify-references``). A damaged entry
is downloaded again. Local directories are used in place, never copied.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow_nlsr.errors import RegistryError
from mlflow_nlsr.io.hashing import remember_dir_digest, sha256_dir
from mlflow_nlsr.registry.uris import ModelRef, download_model, parse_model_uri, pin, resolve_to_local

if TYPE_CHECKING:
    from mlflow_nlsr.registry.client import RegistryClient, VersionInfo

#: the cache's dir under a service work dir
REFERENCES = "references"
_PARTIAL = ".partial"
_INDEX = "index"


@dataclass(frozen=True)
class CacheEntry:
    """One cached reference: its content hash, its model dir and when a job last used it (epoch s)."""

    digest: str
    path: Path
    last_used: float


def identity(download_uri: str, info: VersionInfo | None) -> dict[str, Any]:
    """What a cached download stands for: the pinned URI, and for a registered version what it was made of."""
    if info is None:
        return {"uri": download_uri}
    return {"uri": download_uri, "source": info.source, "run_id": info.run_id, "created_ms": info.created_ms}


class ReferenceCache:
    """Content-addressed downloads of model references under `root` (see the module docstring)."""

    def __init__(self, root: Path | str, client: RegistryClient | None = None) -> None:
        """`client` downloads; without one the cache can only be inspected and pruned."""
        self.root = Path(root).absolute()  # MLflow returns absolute download paths
        self.client = client

    def resolve(self, uri: str) -> Path:
        """The local model dir of `uri`: a local directory in place, else the cached download of it."""
        ref, client = parse_model_uri(uri), self.client
        if client is None:
            raise RegistryError(f"{uri}: the reference cache was opened without a registry client")
        if ref.path is not None:
            return resolve_to_local(uri, self.root, client)
        download_uri, info = pin(ref, client)
        key = identity(download_uri, info)
        index_file = self.root / _INDEX / f"{_key_id(key)}.json"
        digest = _read_json(index_file).get("sha256")
        if digest and self.intact(digest):
            os.utime(self._manifest(digest))  # last use, for gc
            return self.root / digest
        digest = self._download(ref, download_uri, client)
        _write_json(index_file, {"key": key, "sha256": digest})
        return self.root / digest

    def intact(self, digest: str) -> bool:
        """Whether entry `digest` holds exactly the files and sizes its manifest lists."""
        path, files = self.root / digest, _read_json(self._manifest(digest)).get("files")
        return path.is_dir() and files is not None and _sizes(path) == files

    def entries(self) -> list[CacheEntry]:
        """Every complete entry, oldest use first."""
        found = []
        for manifest in self.root.glob("*.json"):
            path = self.root / manifest.stem
            if path.is_dir():
                found.append(CacheEntry(manifest.stem, path, manifest.stat().st_mtime))
        return sorted(found, key=lambda e: e.last_used)

    def damaged(self) -> list[CacheEntry]:
        """Rehash every entry: those whose content no longer matches their name (to :meth:`remove`)."""
        return [e for e in self.entries() if sha256_dir(e.path, reuse=False) != e.digest]

    def remove(self, digest: str) -> None:
        """Drop entry `digest`, its manifest and the index records that point at it."""
        for record in (self.root / _INDEX).glob("*.json"):
            if _read_json(record).get("sha256") == digest:
                record.unlink(missing_ok=True)
        self._manifest(digest).unlink(missing_ok=True)
        self._discard(self.root / digest)

    def partial_downloads(self) -> list[Path]:
        """Downloads in flight (or left behind by a worker that died)."""
        return sorted((self.root / _PARTIAL).glob("*"))

    def _download(self, ref: ModelRef, download_uri: str, client: RegistryClient) -> str:
        (self.root / _PARTIAL).mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=self.root / _PARTIAL))
        try:
            model = download_model(ref, download_uri, scratch, client)
            digest = sha256_dir(model)
            target = self.root / digest
            _write_json(self._manifest(digest), {"files": _sizes(model), "uri": download_uri})
            if target.exists() and not self.intact(digest):
                self._discard(target)
            try:
                model.rename(target)  # atomic; fails when another worker's copy is already there
                remember_dir_digest(target, digest)  # hashed a moment ago: the job's own hash reads nothing
            except OSError:
                if not self.intact(digest):
                    raise
            return digest
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _discard(self, path: Path) -> None:
        """Move `path` out of the way atomically, then delete it (a concurrent discard is no error)."""
        trash = self.root / _PARTIAL / f"discard-{uuid.uuid4().hex}"
        trash.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.rename(trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    def _manifest(self, digest: str) -> Path:
        return self.root / f"{digest}.json"


def _sizes(path: Path) -> dict[str, int]:
    return {p.relative_to(path).as_posix(): p.stat().st_size for p in sorted(path.rglob("*")) if p.is_file()}


def _key_id(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _write_json(path: Path, value: dict[str, Any]) -> None:
    """Write atomically (a reader sees the old file or the new one, never half of one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True))
    os.replace(tmp, path)
