"""Datasets shipped with mlflow-nlsr: hand-written JSONL files (see docs/data.md for each file's schema)."""

from __future__ import annotations

from pathlib import Path

from mlflow_nlsr.errors import InputError

DATA_DIR = Path(__file__).resolve().parent


def available() -> list[str]:
    """File names (``calibration_safety.jsonl`` …) of every dataset shipped in this package, sorted."""
    return sorted(path.name for path in DATA_DIR.glob("*.jsonl"))


def data_path(name: str) -> Path:
    """Path of shipped dataset ``name`` (``"align_benign"`` or ``"align_benign.jsonl"``)."""
    file_name = name if name.endswith(".jsonl") else f"{name}.jsonl"
    if Path(file_name).name != file_name or file_name not in available():
        raise InputError(
            f"no shipped dataset named {name!r}: expected one of {', '.join(available())} in {DATA_DIR}"
        )
    return DATA_DIR / file_name
