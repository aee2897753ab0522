"""MLflow records of a calibration: version tags and one nested-run description per attempt.

Pure functions of a report's ``calibration_search`` section (attempts.py builds it; read with
:func:`mlflow_nlsr.report_sections.calibration_search`, which also reads old reports); the service
logs them (service/orchestrator.py), so the search itself stays free of MLflow concerns.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mlflow_nlsr.report_sections import calibration_search


def calibration_reasons(report: Mapping[str, Any]) -> list[str]:
    """The calibration rejection of a report (empty when there was no search or it passed)."""
    section = calibration_search(report) or {}
    return [str(section["rejection"])] if section.get("rejection") else []


def calibration_tags(section: Mapping[str, Any]) -> dict[str, str]:
    """Version tags for a report's calibration section (attempt count, chosen option diffs, outcome).

    A section without ``attempts`` (ActSVD's calibration-data provenance alone) gives no tags.
    """
    if "attempts" not in section:
        return {}
    chosen: Mapping[str, Any] = next(
        (a for a in section["attempts"] if a["attempt"] == section["chosen"]), {}
    )
    tags = {
        "nlsr.calibration.attempts": str(len(section["attempts"])),
        "nlsr.calibration.chosen": json.dumps(section.get("chosen_options", {}), sort_keys=True),
        "nlsr.calibration.rung": str(section.get("chosen_rung")),
        "nlsr.calibration.passed": "true" if section.get("passed") else "false",
        "nlsr.calibration.stop_reason": str(section.get("stop_reason"))[:250],
    }
    rel = (chosen.get("strength") or {}).get("relative_change")
    if isinstance(rel, (int, float)):
        tags["nlsr.calibration.relative_change"] = f"{rel:.6f}"
    return tags


def calibration_runs(section: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One nested-run description per attempt: ``{"name", "params", "metrics", "tags"}`` (none without)."""
    runs = []
    for a in section.get("attempts", []):
        metrics: dict[str, float] = {
            "predicted_strength": float(a["predicted_strength"]),
            "seconds": float(a["seconds"]),
            "passed": float(bool(a["passed"])),
        }
        metrics.update({f"strength.{k}": float(v) for k, v in a["strength"].items() if v is not None})
        for kind in ("quick", "full"):
            if a.get(kind):
                metrics.update({f"{kind}.{k}": float(v) for k, v in a[kind]["metrics"].items()})
                metrics[f"{kind}.violation"] = float(a[kind]["score"])
        runs.append(
            {
                "name": f"calibration-{a['attempt']:02d}-{a['rung']}",
                "params": {"rung": a["rung"], **{k: str(v) for k, v in a["options"].items()}},
                "metrics": metrics,
                "tags": {
                    "nlsr.calibration.attempt": str(a["attempt"]),
                    "nlsr.calibration.passed": "true" if a["passed"] else "false",
                    "nlsr.calibration.chosen": "true" if a["attempt"] == section["chosen"] else "false",
                },
            }
        )
    return runs
