"""Service settings and job outcomes (plain values)."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlflow_nlsr.lineage import slug
from mlflow_nlsr.store.tables import Job


@dataclass(frozen=True)
class Settings:
    """Where the service keeps its state and how it gates (CLI flags and env vars map onto this)."""

    tracking_uri: str | None = None
    store_url: str | None = None
    work_dir: Path = Path(".nlsr-work")
    config: Path | None = None
    gate_limit: int | None = None
    gate_batch_size: int | str = 8
    #: the job's device and dtype (None: the nlsr.yaml rule's, else auto); see mlflow_nlsr.placement
    device: str | None = None
    dtype: str | None = None
    promote: bool = True
    lease_seconds: float = 900.0
    max_attempts: int = 3
    base_uri: str | None = None
    aligned_uri: str | None = None
    realign_overrides: Mapping[str, Any] = field(default_factory=dict)
    #: gate-driven calibration of the realign step (docs/calibration.md)
    calibrate: bool = True
    calibration_max_attempts: int = 8
    calibration_time_budget_s: float | None = 3600.0
    calibration_quick_limit: int | None = 24
    calibration_screen_z: float = 1.0
    #: where a job's realign + gates run: an executor name (None: the rule's ``executor:``, else local)
    executor: str | None = None
    executor_options: Mapping[str, Any] = field(default_factory=dict)
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    def placement_overrides(self) -> dict[str, str]:
        """The realign-option overrides that put the whole job on `device` / `dtype` (when set)."""
        return {k: v for k, v in (("device", self.device), ("dtype", self.dtype)) if v is not None}

    def resolved_store_url(self) -> str:
        """The job-store URL (default: a SQLite file in the work dir)."""
        return self.store_url or f"sqlite:///{(Path(self.work_dir) / 'jobs.db').resolve()}"


@dataclass(frozen=True)
class Outcome:
    """Where a job ended (or stands) and why."""

    model_name: str
    version: str
    state: str
    job_id: int
    realigned_version: str | None = None
    verdict: Mapping[str, Any] | None = None
    reasons: tuple[str, ...] = ()

    @classmethod
    def of(cls, job: Job, reasons: tuple[str, ...] = ()) -> Outcome:
        """Summarise a job row."""
        result = job.result if isinstance(job.result, dict) else {}
        return cls(
            job.model_name,
            job.version,
            str(job.state),
            job.id,
            job.realigned_version,
            result.get("verdict"),
            reasons or tuple(result.get("reasons", ())),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON view: the fields by name, the reasons as a list."""
        return {**asdict(self), "reasons": list(self.reasons)}


def job_work_dir(work_dir: Path, name: str, version: str | int) -> Path:
    """The work dir of one job (inputs, realigned output, gate results)."""
    return Path(work_dir) / "jobs" / slug(name) / str(version)
