"""Job states, triggers and the one table of allowed state transitions (pure, no I/O).

A job moves ``queued → running → realigned → gated → promoted | rejected``; any non-terminal step may
end in ``failed`` and an unprocessable version in ``skipped``. Under manual promotion a passing job
parks in ``awaiting-approval`` (no worker claims it) until a person approves (``promoted``) or rejects
it; an operator may ``cancel`` any unfinished job. ``requeue`` (``JobStore.requeue``) is the one
administrative edge out of ``failed``/``skipped``/``cancelled`` and is not in the table: workers can
never take it. ``running → queued`` is the retry edge
(an explicit failure with retries left starts the job over). A job reclaimed after its lease expired
keeps ``realigned``/``gated`` so the service resumes from the last recorded step.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import TypeVar

from mlflow_nlsr.errors import JobStoreError


class JobState(str, Enum):
    """The state of one (model, version) job."""

    QUEUED = "queued"
    RUNNING = "running"
    REALIGNED = "realigned"
    GATED = "gated"
    PROMOTED = "promoted"
    REGISTERED = "registered"  # gates passed and the version is registered, but promotion was disabled
    REJECTED = "rejected"
    FAILED = "failed"
    SKIPPED = "skipped"
    AWAITING_APPROVAL = "awaiting-approval"  # gates passed; waits for `mlflow nlsr approve | reject`
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


class Trigger(str, Enum):
    """What enqueued a job."""

    WEBHOOK = "webhook"
    POLLER = "poller"
    APP = "app"
    CLI = "cli"

    def __str__(self) -> str:
        return self.value


TERMINAL_STATES: frozenset[JobState] = frozenset(
    {
        JobState.PROMOTED,
        JobState.REGISTERED,
        JobState.REJECTED,
        JobState.FAILED,
        JobState.SKIPPED,
        JobState.CANCELLED,
    }
)
#: states no worker claims but a person may move on (approve, reject, cancel)
PARKED_STATES: frozenset[JobState] = frozenset({JobState.AWAITING_APPROVAL})
ACTIVE_STATES: frozenset[JobState] = frozenset(set(JobState) - TERMINAL_STATES - PARKED_STATES)
#: the states ``JobStore.requeue`` may reopen
REQUEUEABLE_STATES: frozenset[JobState] = frozenset({JobState.FAILED, JobState.SKIPPED, JobState.CANCELLED})
_C = JobState.CANCELLED

TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.SKIPPED, JobState.FAILED, _C}),
    JobState.RUNNING: frozenset(
        {JobState.REALIGNED, JobState.REJECTED, JobState.FAILED, JobState.SKIPPED, JobState.QUEUED, _C}
    ),
    JobState.REALIGNED: frozenset({JobState.GATED, JobState.REJECTED, JobState.FAILED, _C}),
    JobState.GATED: frozenset(
        {
            JobState.PROMOTED,
            JobState.REGISTERED,
            JobState.REJECTED,
            JobState.FAILED,
            JobState.AWAITING_APPROVAL,
            _C,
        }
    ),
    JobState.AWAITING_APPROVAL: frozenset({JobState.PROMOTED, JobState.REJECTED, _C}),
    JobState.PROMOTED: frozenset(),
    JobState.REGISTERED: frozenset(),
    JobState.REJECTED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.SKIPPED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


_E = TypeVar("_E", bound=Enum)


def _parse(kind: type[_E], value: str | _E, what: str) -> _E:
    """Return the member of `kind` named by ``value`` or raise JobStoreError listing the valid names."""
    try:
        return kind(value)
    except ValueError:
        names = ", ".join(m.value for m in kind)
        raise JobStoreError(f"unknown {what} {value!r}; expected one of: {names}") from None


def parse_state(value: str | JobState) -> JobState:
    """Return the JobState named by ``value`` or raise JobStoreError listing the valid names."""
    return _parse(JobState, value, "job state")


def parse_trigger(value: str | Trigger) -> Trigger:
    """Return the Trigger named by ``value`` or raise JobStoreError listing the valid names."""
    return _parse(Trigger, value, "trigger")


def is_allowed(current: JobState, new: JobState) -> bool:
    """Return True when the transition ``current → new`` is in the table."""
    return new in TRANSITIONS[current]


def check_transition(current: str | JobState, new: str | JobState) -> JobState:
    """Return ``new`` as a JobState, or raise JobStoreError naming from/to when the move is illegal."""
    src, dst = parse_state(current), parse_state(new)
    if not is_allowed(src, dst):
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[src])) or "none (terminal state)"
        raise JobStoreError(
            f"illegal job transition from {src.value!r} to {dst.value!r}; "
            f"allowed from {src.value!r}: {allowed}"
        )
    return dst
