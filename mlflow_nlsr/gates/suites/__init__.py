"""Shipped lm-eval task configs (``nlsr_*.yaml``), their task utilities and their JSONL data.

lm-eval indexes this folder through ``TaskManager(include_path=SUITES_DIR)``; the task utilities load
data relative to this folder (or from ``$NLSR_GATES_DATA_DIR``), so tasks work from any CWD and from an
installed wheel.
"""

from __future__ import annotations

import os
from pathlib import Path

#: the folder lm-eval indexes (``include_path``)
SUITES_DIR = Path(__file__).resolve().parent

#: environment variable that points the shipped tasks at another data folder (same file names)
DATA_DIR_ENV = "NLSR_GATES_DATA_DIR"


def data_dir() -> Path:
    """Return the folder holding the suites' JSONL files (``$NLSR_GATES_DATA_DIR`` or the shipped one)."""
    override = os.environ.get(DATA_DIR_ENV)
    return Path(override) if override else SUITES_DIR / "data"
