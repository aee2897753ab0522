"""The poller's pass over the registry, with a watermark so a first start does not flood the queue.

A version is queued when it has no ``nlsr.status`` tag and was created at or after its model's
watermark (the newest creation time seen so far, less :data:`OVERLAP_MS` so a registration that
commits late is still seen). A model the poller has never seen uses the poller's own start mark
(``since``: ``now`` by default, ``all`` for the whole history, or an ISO date), recorded on the
first pass and kept in the job store, so a restart looks back exactly as far as the first start did.
Queuing is idempotent, so the overlap never queues a version twice. Kept free of torch.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from mlflow_nlsr import lineage
from mlflow_nlsr.errors import ConfigError
from mlflow_nlsr.registry.client import RegistryClient
from mlflow_nlsr.service.intake import enqueue_version
from mlflow_nlsr.store.repository import JobStore
from mlflow_nlsr.store.tables import Job

START_MARK = "*"
OVERLAP_MS = 60_000


def since_ms(since: str | None) -> int:
    """Parse ``--since``: ``now`` (default), ``all``, or an ISO-8601 date/time (naive = UTC)."""
    if since in (None, "", "now"):
        return int(time.time() * 1000)
    if since == "all":
        return 0
    try:
        when = datetime.fromisoformat(str(since))
    except ValueError:
        raise ConfigError(
            f"--since expects now, all or an ISO date (2026-01-31T12:00), got {since!r}"
        ) from None
    when = when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when
    return int(when.timestamp() * 1000)


def poll_registry(
    store: JobStore, client: RegistryClient, name_glob: str | None = None, *, since: str | None = None
) -> list[Job]:
    """Queue every new, untagged version (see the module docstring); return the jobs created."""
    start = store.watermark(START_MARK)
    if start is None:
        start = since_ms(since)
        store.raise_watermark(START_MARK, start)
    marks: dict[str, int] = {}
    jobs: list[Job] = []
    for info in client.search_versions_without_tag(lineage.STATUS, name_glob):
        if info.name not in marks:
            mark = store.watermark(info.name)
            marks[info.name] = start if mark is None else max(start, mark - OVERLAP_MS)
        created = info.created_ms or 0
        if created < marks[info.name]:
            continue
        job = enqueue_version(
            store, client, info.name, info.version, trigger="poller", actor="poller", tags=info.tags
        )
        if job is not None:
            jobs.append(job)
        store.raise_watermark(info.name, created)
    return jobs
