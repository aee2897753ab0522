"""Disk retention: what a worker removes when a job settles, and what ``mlflow nlsr gc`` removes later.

A job's work dir (downloaded fine-tuned input, realigned output, gate results) is kept while the job
can still resume. Once the job settles successfully (promoted, registered, awaiting approval,
rejected, skipped) it is only a copy of what the registry holds: the worker removes it at once
(:func:`release_work_dir`), unless ``retention.keep_work_dir`` in ``nlsr.yaml`` keeps it until the next
``gc``. Failed and cancelled jobs keep it ``failed_days`` days for diagnosis (or until requeued,
which starts over). ``gc`` also prunes the reference cache (``references/``, registry/cache.py):
entries no active job uses and no job used for ``failed_days``, and downloads a dead worker left
half done; and, while no job is active, the reference gate results (``gate-cache/``) no job read for
``failed_days`` (a job touches an entry's ``metrics.json`` when it reuses it). Kept free of torch.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from mlflow_nlsr.registry.cache import REFERENCES, ReferenceCache
from mlflow_nlsr.rules import Retention
from mlflow_nlsr.service.settings import job_work_dir
from mlflow_nlsr.store.repository import JobStore
from mlflow_nlsr.store.states import ACTIVE_STATES, JobState
from mlflow_nlsr.store.tables import Job

SUCCEEDED = frozenset(
    {JobState.PROMOTED, JobState.REGISTERED, JobState.AWAITING_APPROVAL, JobState.REJECTED, JobState.SKIPPED}
)
KEPT_FOR_DAYS = frozenset({JobState.FAILED, JobState.CANCELLED})
#: in a job's work dir: the reference-cache entries the job resolved (gc keeps them while it is active)
REFERENCES_NOTE = "references.json"
#: a download left in ``references/.partial`` this long by a worker that died is removed by gc
PARTIAL_MAX_AGE_S = 3600.0
#: in the work dir: gate results of reference models, by content hash (service/orchestrator.py)
GATE_CACHE = "gate-cache"
#: in a gate-cache entry: written when the run finished, touched when a job reuses it
GATE_METRICS = "metrics.json"


@dataclass
class GcReport:
    """What gc removed (or would remove with ``dry_run``) and how many bytes that frees."""

    removed: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    dry_run: bool = False
    #: cached references whose content no longer matches their hash (``verify_references``)
    damaged: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON view."""
        return {"removed": self.removed, "freed_bytes": self.freed_bytes, "dry_run": self.dry_run,
                "damaged": self.damaged}  # fmt: skip


def note_references(job_dir: Path, paths: Iterable[Path]) -> None:
    """Record in the job's dir which reference dirs it uses."""
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / REFERENCES_NOTE).write_text(json.dumps([str(p) for p in paths]))


def release_work_dir(work_dir: Path, job: Job, retention: Retention) -> bool:
    """Remove a successfully settled job's work dir unless `retention` keeps it; True when removed."""
    path = job_work_dir(Path(work_dir), job.model_name, job.version)
    if job.state not in SUCCEEDED or retention.keep_work_dir or not path.exists():
        return False
    shutil.rmtree(path, ignore_errors=True)
    return True


def collect(
    store: JobStore, work_dir: Path, *, failed_days: float = 7.0, dry_run: bool = False,
    verify_references: bool = False,
) -> GcReport:  # fmt: skip
    """Remove settled jobs' work dirs (failed ones after ``failed_days``), stale references and scratch.

    `verify_references` also rehashes every cached reference and removes those whose content changed.
    """
    report, now = GcReport(dry_run=dry_run), datetime.now(timezone.utc)
    cutoff = now - timedelta(days=failed_days)
    jobs = store.list_jobs()
    for job in jobs:
        path = job_work_dir(Path(work_dir), job.model_name, job.version)
        old_failure = job.state in KEPT_FOR_DAYS and job.updated_at < cutoff
        if path.exists() and (job.state in SUCCEEDED or old_failure):
            _remove(path, report)
    active = [j for j in jobs if j.state in ACTIVE_STATES]
    _prune_references(Path(work_dir), active, failed_days * 86400, report, verify_references)
    if not active:  # no job can be reading these now
        for scratch in ("inputs", "verify"):  # inputs/: where references went before the cache
            for path in sorted((Path(work_dir) / scratch).glob("*")):
                if path.stat().st_mtime < time.time() - failed_days * 86400:
                    _remove(path, report)
        _prune_gate_cache(Path(work_dir) / GATE_CACHE, failed_days * 86400, report)
    return report


def mark_gate_result_used(entry: Path) -> None:
    """Record that a job reused the gate-cache `entry` (gc keeps it ``failed_days`` from now)."""
    (entry / GATE_METRICS).touch()


def _prune_gate_cache(root: Path, max_age_s: float, report: GcReport) -> None:
    """Drop gate results not used for `max_age_s`, and runs that never finished as long ago."""
    for entry in sorted(root.glob("*")):
        stamp = entry / GATE_METRICS
        if (stamp if stamp.exists() else entry).stat().st_mtime < time.time() - max_age_s:
            _remove(entry, report)


def _prune_references(
    work_dir: Path, active: list[Job], max_age_s: float, report: GcReport, verify: bool
) -> None:
    """Drop cache entries no active job uses and none used for `max_age_s`; old partial downloads.

    With `verify` every entry is rehashed and damaged ones go too.
    """
    cache = ReferenceCache(work_dir / REFERENCES)
    in_use = {Path(p).name for job in active for p in _noted(work_dir, job)}
    report.damaged = [str(e.path) for e in cache.damaged()] if verify else []
    for entry in cache.entries():
        unused = entry.digest not in in_use and entry.last_used < time.time() - max_age_s
        if unused or str(entry.path) in report.damaged:
            _remove(entry.path, report, dry=True)
            if not report.dry_run:
                cache.remove(entry.digest)
    for path in cache.partial_downloads():
        if path.stat().st_mtime < time.time() - PARTIAL_MAX_AGE_S:
            _remove(path, report)


def _noted(work_dir: Path, job: Job) -> list[str]:
    note = job_work_dir(work_dir, job.model_name, job.version) / REFERENCES_NOTE
    try:
        return list(json.loads(note.read_text()))
    except (OSError, ValueError, TypeError):
        return []


def _remove(path: Path, report: GcReport, *, dry: bool = False) -> None:
    """Count `path` in the report and delete it (unless the report, or `dry`, says only count)."""
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    report.freed_bytes += sum(p.stat().st_size for p in files)
    report.removed.append(str(path))
    if not (report.dry_run or dry):
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
