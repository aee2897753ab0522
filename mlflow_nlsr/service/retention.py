"""Disk retention: ``mlflow nlsr gc`` removes what finished jobs no longer need.

A job's work dir (downloaded fine-tuned input, realigned output, gate results) is kept while the job
can still resume. Once it is settled it is only a copy of what the registry holds: settled jobs that
succeeded (promoted, registered, awaiting approval, rejected, skipped) lose it at the next ``gc``;
failed and cancelled jobs keep it ``failed_days`` days for diagnosis (or until requeued, which starts
over). Downloaded references (``inputs/``) and ``verify/`` scratch dirs older than ``failed_days`` go
too when no job is running. Kept free of torch.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from mlflow_nlsr.service.settings import job_work_dir
from mlflow_nlsr.store.repository import JobStore
from mlflow_nlsr.store.states import ACTIVE_STATES, JobState

SUCCEEDED = frozenset(
    {JobState.PROMOTED, JobState.REGISTERED, JobState.AWAITING_APPROVAL, JobState.REJECTED, JobState.SKIPPED}
)
KEPT_FOR_DAYS = frozenset({JobState.FAILED, JobState.CANCELLED})


@dataclass
class GcReport:
    """What gc removed (or would remove with ``dry_run``) and how many bytes that frees."""

    removed: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON view."""
        return {"removed": self.removed, "freed_bytes": self.freed_bytes, "dry_run": self.dry_run}


def collect(store: JobStore, work_dir: Path, *, failed_days: float = 7.0, dry_run: bool = False) -> GcReport:
    """Remove settled jobs' work dirs (failed ones after ``failed_days``) and stale scratch dirs."""
    report, now = GcReport(dry_run=dry_run), datetime.now(timezone.utc)
    cutoff = now - timedelta(days=failed_days)
    jobs = store.list_jobs()
    for job in jobs:
        path = job_work_dir(Path(work_dir), job.model_name, job.version)
        old_failure = job.state in KEPT_FOR_DAYS and job.updated_at < cutoff
        if path.exists() and (job.state in SUCCEEDED or old_failure):
            _remove(path, report)
    if not any(j.state in ACTIVE_STATES for j in jobs):
        for scratch in ("inputs", "verify"):
            for path in sorted((Path(work_dir) / scratch).glob("*")):
                if path.stat().st_mtime < time.time() - failed_days * 86400:
                    _remove(path, report)
    return report


def _remove(path: Path, report: GcReport) -> None:
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    report.freed_bytes += sum(p.stat().st_size for p in files)
    report.removed.append(str(path))
    if not report.dry_run:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
