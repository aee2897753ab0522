"""The two calibration sections of nlsr_report.json, and a reader that also understands old reports.

* ``actsvd_data``: what the actsvd scorer ran through the reference model (source file, sha256, sample
  and response-token counts, device), written by every realignment that loads a model;
* ``calibration_search``: the strength search (``--calibrate`` / ``calibrate: true``): every attempt,
  the chosen one, the stop reason, the budget and the ladder (calibration/attempts.py).

Reports written before the split hold either, or both merged, under one ``calibration`` key; the
readers below split such a section by its keys, so old and new reports read the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ACTSVD_DATA = "actsvd_data"
CALIBRATION_SEARCH = "calibration_search"
#: the key both sections shared before the split
LEGACY_CALIBRATION = "calibration"
#: the keys of the ActSVD data section (what a legacy ``calibration`` section holds besides the search)
ACTSVD_DATA_KEYS = ("source", "generated", "sha256", "samples", "response_tokens", "device")


def _legacy(report: Mapping[str, Any]) -> Mapping[str, Any]:
    section = report.get(LEGACY_CALIBRATION)
    return section if isinstance(section, Mapping) else {}


def actsvd_data(report: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ActSVD calibration-data section of `report` (new or old layout), else None."""
    section = report.get(ACTSVD_DATA)
    if isinstance(section, Mapping):
        return dict(section)
    legacy = _legacy(report)
    data = {k: legacy[k] for k in ACTSVD_DATA_KEYS if k in legacy}
    return data if "sha256" in data else None


def calibration_search(report: Mapping[str, Any]) -> dict[str, Any] | None:
    """The strength-search section of `report` (new or old layout), else None."""
    section = report.get(CALIBRATION_SEARCH)
    if isinstance(section, Mapping):
        return dict(section)
    legacy = _legacy(report)
    if "attempts" not in legacy:
        return None
    return {k: v for k, v in legacy.items() if k not in ACTSVD_DATA_KEYS}
