"""Executors: where one job's work (:mod:`mlflow_nlsr.service.work`) runs while the worker holds the job.

The worker claims the job, keeps its lease and heartbeats, and drives the executor: ``submit(spec)``,
``poll(handle)`` until it is no longer running, ``cancel(handle)`` when the lease is lost or the job was
cancelled, ``logs(handle)``. The store stays the one source of truth for exactly-once, retries and the
audit. ``local`` (the default) runs the work in the worker's process, as before executors existed;
plugins add theirs to the entry-point group ``mlflow_nlsr.executors`` (``plugins/mlflow-nlsr-ray``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar

from mlflow_nlsr.errors import ConfigError
from mlflow_nlsr.extensions import ExtensionPoint
from mlflow_nlsr.service.heartbeat import Heartbeat, LeaseLost
from mlflow_nlsr.service.remote import JobSpec, fetch_outputs, raise_remote_error
from mlflow_nlsr.service.work import WorkInput, realign_and_gate
from mlflow_nlsr.store.states import JobState
from mlflow_nlsr.store.tables import Job

if TYPE_CHECKING:
    from mlflow_nlsr.rules import Rule
    from mlflow_nlsr.service.orchestrator import NLSRService

log = logging.getLogger(__name__)
DEFAULT = "local"
#: seconds between polls of a remote executor (and checks of the job's lease in the store)
POLL_S = 1.0


class Status(str, Enum):
    """Where a submitted piece of work stands."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Poll:
    """A poll's answer: the status, and for a failure the error class name and message."""

    status: Status
    error: str = ""
    error_type: str | None = None


class Executor:
    """Runs one job's work described by a :class:`JobSpec`; subclasses take the rule's options."""

    #: True: ``submit`` runs the work in the worker's process, with the worker's own objects
    in_process: ClassVar[bool] = False

    def submit(self, spec: JobSpec) -> Any:
        """Start the work of `spec`; return a handle for the other methods."""
        raise NotImplementedError

    def poll(self, handle: Any) -> Poll:
        """Report the status of `handle` without blocking."""
        raise NotImplementedError

    def cancel(self, handle: Any) -> None:
        """Stop the work of `handle` (idempotent)."""
        raise NotImplementedError

    def logs(self, handle: Any) -> str:
        """What the work printed, as far as the executor keeps it."""
        return ""

    def close(self) -> None:
        """Release connections (the worker is exiting)."""


EXECUTORS: ExtensionPoint[Executor] = ExtensionPoint("mlflow_nlsr.executors", "executor", Executor)


class LocalExecutor(Executor):
    """Today's in-process run: the work runs in the worker, synchronously, inside ``submit``."""

    in_process = True

    def __init__(self) -> None:
        self._context: tuple[NLSRService, Job, WorkInput, Heartbeat] | None = None

    def bind(self, svc: NLSRService, job: Job, work: WorkInput, beat: Heartbeat) -> None:
        """Give the next ``submit`` the worker's service, job and heartbeat."""
        self._context = (svc, job, work, beat)

    def submit(self, spec: JobSpec | None) -> Job:
        if self._context is None:
            raise ConfigError("the local executor runs a job inside its worker; bind() it first")
        svc, job, work, beat = self._context
        self._context = None
        return realign_and_gate(svc, job, work, beat)

    def poll(self, handle: Any) -> Poll:
        return Poll(Status.SUCCEEDED)

    def cancel(self, handle: Any) -> None:
        """Nothing to stop: the heartbeat check ends in-process work at its next step."""


def choose(settings_name: str | None, settings_options: Mapping[str, Any], rule: Rule) -> tuple[str, dict]:
    """The executor name and options of a job: the command line's over the rule's ``executor:``."""
    from_rule = dict(getattr(rule, "executor", None) or {})
    rule_name = from_rule.pop("name", None)
    name = settings_name or rule_name or DEFAULT
    options = {**(from_rule if rule_name in (None, name) else {}), **dict(settings_options)}
    EXECUTORS.check(name)
    return name, options


_OPEN: dict[str, Executor] = {}


def executor_for(name: str, options: Mapping[str, Any]) -> Executor:
    """One executor per (name, options) in this process, created on first use."""
    key = json.dumps([name, dict(options)], sort_keys=True, default=str)
    if key not in _OPEN:
        _OPEN[key] = EXECUTORS.create(name, **dict(options))
    return _OPEN[key]


def close_all() -> None:
    """Close every executor this process opened."""
    while _OPEN:
        _OPEN.popitem()[1].close()


def execute(svc: NLSRService, job: Job, work: WorkInput, beat: Heartbeat) -> Job:
    """Run the job's realign + gates on its executor; return the job once it is ``gated``."""
    settings = svc.settings
    name, options = choose(settings.executor, settings.executor_options, work.resolved.rule)
    executor = executor_for(name, options)
    if isinstance(executor, LocalExecutor):
        executor.bind(svc, job, work, beat)
        return executor.submit(None)
    if job.state in (JobState.RUNNING, JobState.REALIGNED):
        job = _run_remote(svc, executor, name, job, work, beat)
    fetch_outputs(svc.client, job, work.job_dir)
    return job


def _run_remote(
    svc: NLSRService, executor: Executor, name: str, job: Job, work: WorkInput, beat: Heartbeat
) -> Job:
    tags = {"nlsr.job_id": str(job.id), "nlsr.attempt": str(job.attempts), "nlsr.executor": name}
    run_id = svc.client.start_run(f"nlsr-work-{job.model_name}-v{job.version}", tags)
    handle = executor.submit(JobSpec.build(svc, job, work, run_id))
    poll = Poll(Status.FAILED, "the worker stopped waiting")
    try:
        poll = _wait(svc, executor, handle, job, beat)
    finally:
        ended = {Status.SUCCEEDED: "FINISHED", Status.CANCELLED: "KILLED"}.get(poll.status, "FAILED")
        svc.client.end_run(run_id, ended)
    current = svc.store.get_by_id(job.id) or job
    if current.terminal or current.lease_owner != svc.settings.worker_id:
        raise LeaseLost(f"job {job.id} is {current.state.value} and no longer ours; {name} work stopped")
    if poll.status is not Status.SUCCEEDED:
        tail = executor.logs(handle)[-2000:]
        if tail:
            log.warning("%s/%s: %s work failed; its log ends:\n%s", job.model_name, job.version, name, tail)
        raise_remote_error(poll.error_type, poll.error or f"{name} executor: work {poll.status.value}")
    return current


def _wait(svc: NLSRService, executor: Executor, handle: Any, job: Job, beat: Heartbeat) -> Poll:
    """Poll until the work ends; cancel it once the lease is lost or the job left our hands."""
    while True:
        poll = executor.poll(handle)
        if poll.status is not Status.RUNNING:
            return poll
        current = svc.store.get_by_id(job.id)
        if (
            beat.lost.is_set()
            or current is None
            or current.terminal
            or (current.lease_owner != svc.settings.worker_id)
        ):
            executor.cancel(handle)
            return Poll(Status.CANCELLED, "the job's lease was lost or the job was cancelled")
        time.sleep(POLL_S)
