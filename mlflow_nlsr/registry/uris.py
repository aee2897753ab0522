"""Parse model URIs and resolve them to a local HF checkpoint or PEFT adapter directory.

Accepted forms: ``models:/NAME/VERSION[/sub/path]``, ``models:/NAME@ALIAS[/sub/path]``,
``models:/m-<id>`` (a LoggedModel), ``runs:/RUN_ID/path``, other artifact URIs understood by
``mlflow.artifacts.download_artifacts`` (``s3://``, ``mlflow-artifacts:/`` …), and local
directories (plain paths or ``file://``). Stage URIs (``models:/NAME/Production``) are refused:
stages are deprecated in MLflow 3, use an alias.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote, urlparse

from mlflow_nlsr.errors import ModelReferenceError
from mlflow_nlsr.registry import tags as T

if TYPE_CHECKING:
    from mlflow_nlsr.registry.client import RegistryClient, VersionInfo

UriKind = Literal["version", "alias", "logged_model", "run", "artifact", "local"]

_LOGGED_MODEL_RE = re.compile(r"m-[0-9a-f]{8,64}")
_HF_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_PEFT_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


@dataclass(frozen=True)
class ModelRef:
    """A parsed model URI; only the fields of its ``kind`` are set."""

    uri: str
    kind: UriKind
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    model_id: str | None = None
    run_id: str | None = None
    subpath: str = ""
    path: Path | None = None


def parse_model_uri(uri: str) -> ModelRef:
    """Classify ``uri`` (see module docstring); raise RegistryError for a malformed ``models:/`` URI."""
    if not isinstance(uri, str) or not uri.strip():
        raise ModelReferenceError(f"expected a model URI or a local directory, got {uri!r}")
    uri = uri.strip()
    if uri.startswith("models:/"):
        return _parse_models_uri(uri)
    if uri.startswith("runs:/"):
        parts = uri[len("runs:/") :].strip("/").split("/", 1)
        if not parts[0]:
            raise ModelReferenceError(f"expected runs:/<run_id>/<path>, got {uri!r}")
        return ModelRef(uri, "run", run_id=parts[0], subpath=parts[1] if len(parts) > 1 else "")
    if uri.startswith("file://"):
        return ModelRef(uri, "local", path=Path(unquote(urlparse(uri).path)))
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:/", uri) and not re.match(r"^[A-Za-z]:[\\/]", uri):
        return ModelRef(uri, "artifact")
    return ModelRef(uri, "local", path=Path(uri).expanduser())


def model_id_from_source(source: str | None) -> str | None:
    """Return the LoggedModel id of a version source ``models:/m-…`` (OSS leaves model_id None)."""
    if not source or not source.startswith("models:/"):
        return None
    head = source[len("models:/") :].strip("/").split("/", 1)[0]
    return head if _LOGGED_MODEL_RE.fullmatch(head) else None


def detect_format(directory: Path) -> str | None:
    """Return ``peft_adapter``/``hf_dir`` when ``directory`` holds one with weights, else None."""
    if (directory / "adapter_config.json").is_file() and any(
        (directory / w).is_file() for w in _PEFT_WEIGHTS
    ):
        return T.FORMAT_PEFT
    if (directory / "config.json").is_file() and (
        any((directory / w).is_file() for w in _HF_WEIGHTS) or any(directory.glob("*.safetensors"))
    ):
        return T.FORMAT_HF_DIR
    return None


def find_model_dir(root: Path, *, what: str | None = None) -> tuple[Path, str]:
    """Return ``(dir, format)`` for the model at ``root`` or exactly one level below it.

    Raises RegistryError saying what was expected and listing what was found when there is no
    model, or when several sub-directories hold one (ambiguous).
    """
    label = what or str(root)
    if not root.is_dir():
        raise ModelReferenceError(
            f"{label}: expected a model directory, found {'a file' if root.exists() else 'nothing'}"
        )
    fmt = detect_format(root)
    if fmt is not None:
        return root, fmt
    found = [(d, f) for d in sorted(p for p in root.iterdir() if p.is_dir()) if (f := detect_format(d))]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        names = ", ".join(f"{d.name}/ ({f})" for d, f in found)
        raise ModelReferenceError(f"{label}: ambiguous, several model directories found: {names}")
    listing = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
    shown = ", ".join(listing[:15]) + (f", … ({len(listing)} entries)" if len(listing) > 15 else "")
    raise ModelReferenceError(
        f"{label} is not a model: expected an HF checkpoint (config.json + weights) or a PEFT adapter "
        f"(adapter_config.json + adapter_model.*) at the root or one level down; found: {shown or 'nothing'}"
    )


def resolve_to_local(uri: str, dest_dir: Path | str, client: RegistryClient) -> Path:
    """Download ``uri`` under ``dest_dir`` (local dirs are used in place) and return the model dir.

    Registered versions and aliases are checked first, so an unknown or deleted version raises a
    RegistryError naming it; an alias is pinned to its version before downloading. A download that
    turns out not to be a model is removed again before the RegistryError is raised.
    """
    ref = parse_model_uri(uri)
    if ref.path is not None:
        if not ref.path.exists():
            raise ModelReferenceError(f"{uri}: local model directory does not exist")
        return find_model_dir(ref.path, what=uri)[0]
    return download_model(ref, pin(ref, client)[0], Path(dest_dir), client)


def pin(ref: ModelRef, client: RegistryClient) -> tuple[str, VersionInfo | None]:
    """The URI to download for `ref` (an alias pinned to its version) and the registered version, if any.

    An unknown or deleted version (or an unset alias) raises a RegistryError naming it.
    """
    if ref.name is not None and ref.version is not None:
        return ref.uri, client.get_version(ref.name, ref.version)
    if ref.name is not None and ref.alias is not None:
        pinned = client.get_alias_version(ref.name, ref.alias)
        return _join(f"models:/{ref.name}/{pinned.version}", ref.subpath), pinned
    return ref.uri, None


def download_model(ref: ModelRef, download_uri: str, dest: Path, client: RegistryClient) -> Path:
    """Download `download_uri` into a fresh dir under `dest`; return the model dir in it.

    A download that turns out not to be a model is removed again before the RegistryError is raised.
    """
    dest.mkdir(parents=True, exist_ok=True)
    target = Path(tempfile.mkdtemp(prefix=_slug(ref) + "-", dir=dest))
    try:
        local = Path(client.download_artifacts(download_uri, target))
        return find_model_dir(local, what=ref.uri)[0]
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def _parse_models_uri(uri: str) -> ModelRef:
    rest = uri[len("models:/") :].strip("/")
    head, _, subpath = rest.partition("/")
    if _LOGGED_MODEL_RE.fullmatch(head):
        return ModelRef(uri, "logged_model", model_id=head, subpath=subpath)
    if "@" in head:
        name, _, alias = head.partition("@")
        if name and alias:
            return ModelRef(uri, "alias", name=name, alias=alias, subpath=subpath)
    else:
        version, _, sub = subpath.partition("/")
        if head and version.isascii() and version.isdigit():
            return ModelRef(uri, "version", name=head, version=version, subpath=sub)
    raise ModelReferenceError(
        f"expected models:/NAME/VERSION, models:/NAME@ALIAS or models:/m-<id>, got {uri!r}"
        " (stage URIs are not supported: use an alias)"
    )


def _join(base: str, subpath: str) -> str:
    return f"{base}/{subpath}" if subpath else base


def _slug(ref: ModelRef) -> str:
    raw = "-".join(x for x in (ref.name, ref.version, ref.alias, ref.model_id, ref.run_id) if x) or ref.kind
    return re.sub(r"[^A-Za-z0-9._-]+", "_", raw)[:60]
