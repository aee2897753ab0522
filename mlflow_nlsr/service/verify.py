"""``mlflow nlsr verify``: re-check a realigned version against what its lineage says.

Downloads the version and recomputes the weights' SHA-256 (``nlsr.output_sha256`` and the report's
``output_sha256``), downloads the recorded references (``nlsr.base_uri``, ``nlsr.aligned_uri``) and the
source version and recomputes their content hashes against the report's ``inputs``. With ``rerun`` it
realigns again from those inputs with the recorded options and compares the new weights' bytes.
Every check is reported, passing or not; :class:`~mlflow_nlsr.errors.VerificationFailed` is the
caller's to raise (the CLI exits 10 with the JSON report).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mlflow_nlsr import lineage
from mlflow_nlsr.errors import GovernanceError
from mlflow_nlsr.io.hashing import sha256_dir, sha256_file
from mlflow_nlsr.registry import RegistryClient, is_realigned, resolve_to_local

REPORT_NAME = "nlsr_report.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def weights_hash(model_dir: Path) -> str:
    """The output hash as the pipeline records it (LoRA: the adapter file; full: shards and index)."""
    adapter = model_dir / ADAPTER_WEIGHTS
    if adapter.is_file():
        return sha256_file(adapter)
    from mlflow_nlsr.pipeline.full.report import weights_sha256

    names = sorted(
        p.name for p in model_dir.iterdir() if p.name.endswith((".safetensors", ".safetensors.index.json"))
    )
    return weights_sha256({n: sha256_file(model_dir / n) for n in names if n != "masks.safetensors"})


def _check(name: str, expected: Any, actual: Any) -> dict[str, Any]:
    return {"check": name, "expected": expected, "actual": actual, "ok": expected == actual}


def verify_version(
    client: RegistryClient, name: str, version: str, work_dir: Path, *, rerun: bool = False
) -> dict[str, Any]:
    """Return ``{"model_uri", "ok", "checks": [...]}`` for one realigned version."""
    info = client.get_version(name, version)
    if not is_realigned(info):
        raise GovernanceError(f"{info.uri} was not registered by NLSR (no nlsr.realigned=true tag)")
    root = Path(work_dir) / "verify"
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="verify-", dir=root))
    try:
        model_dir = resolve_to_local(info.uri, scratch / "output", client)
        report = json.loads((model_dir / REPORT_NAME).read_text())
        actual = weights_hash(model_dir)
        checks = [
            _check("output_sha256 (tag)", info.tags.get("nlsr.output_sha256"), actual),
            _check("output_sha256 (report)", report.get("output_sha256"), actual),
        ]  # fmt: skip
        source_uri = f"models:/{info.tags.get(lineage.SOURCE_MODEL)}/{info.tags.get(lineage.SOURCE_VERSION)}"
        uris = {"base": info.tags.get("nlsr.base_uri"), "aligned": info.tags.get("nlsr.aligned_uri"),
                "finetuned": source_uri}  # fmt: skip
        local: dict[str, Path] = {}
        for role, uri in uris.items():
            if not uri:
                checks.append(_check(f"input {role}", "a recorded URI", None))
                continue
            local[role] = resolve_to_local(uri, scratch / "inputs", client)
            recorded = (report.get("inputs") or {}).get(role)
            actual_digest = sha256_dir(local[role], reuse=False)
            checks.append({**_check(f"input {role} sha256", recorded, actual_digest), "uri": uri})
        if rerun and len(local) == 3:
            checks.append(_rerun(local, report, scratch / "rerun", actual))
        ok = all(c["ok"] for c in checks)
        return {"model_uri": info.uri, "ok": ok, "rerun": rerun, "checks": checks}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _rerun(local: dict[str, Path], report: dict[str, Any], out: Path, recorded: str) -> dict[str, Any]:
    """Realign again with the recorded options; compare the new weights' hash with the registered one."""
    from mlflow_nlsr.options import RealignOptions
    from mlflow_nlsr.pipeline import realign

    options = RealignOptions.from_mapping(dict(report.get("options") or {}))
    realign(local["base"], local["aligned"], local["finetuned"], out, options, overwrite=True)
    return _check("rerun output bytes (sha256)", recorded, weights_hash(out))
