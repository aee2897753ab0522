"""The transition table is the single source of truth: the happy path is allowed, terminal states are
final, and every illegal move raises JobStoreError naming both states."""

from __future__ import annotations

import itertools

import pytest

from mlflow_nlsr.errors import JobStoreError
from mlflow_nlsr.store.states import (
    ACTIVE_STATES,
    PARKED_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    JobState,
    check_transition,
    is_allowed,
    parse_trigger,
)

HAPPY_PATH = [JobState.QUEUED, JobState.RUNNING, JobState.REALIGNED, JobState.GATED, JobState.PROMOTED]


def test_happy_path_is_allowed_step_by_step():
    for src, dst in itertools.pairwise(HAPPY_PATH):
        assert check_transition(src, dst) is dst


def test_terminal_states_are_exactly_promoted_registered_rejected_failed_skipped_cancelled():
    assert {s.value for s in TERMINAL_STATES} == {
        "promoted", "registered", "rejected", "failed", "skipped", "cancelled",
    }  # fmt: skip
    assert {s.value for s in PARKED_STATES} == {"awaiting-approval"}
    assert set(JobState) == ACTIVE_STATES | TERMINAL_STATES | PARKED_STATES
    assert not ACTIVE_STATES & TERMINAL_STATES and not PARKED_STATES & (ACTIVE_STATES | TERMINAL_STATES)


def test_every_state_has_a_row_and_terminal_rows_are_empty():
    assert set(TRANSITIONS) == set(JobState)
    for state in TERMINAL_STATES:
        assert TRANSITIONS[state] == frozenset()


def test_every_active_state_can_fail():
    for state in ACTIVE_STATES:
        assert is_allowed(state, JobState.FAILED)


def test_promotion_only_follows_gating_or_an_approval():
    sources = {src for src, targets in TRANSITIONS.items() if JobState.PROMOTED in targets}
    assert sources == {JobState.GATED, JobState.AWAITING_APPROVAL}
    assert {s for s, t in TRANSITIONS.items() if JobState.AWAITING_APPROVAL in t} == {JobState.GATED}


def test_no_state_transitions_to_itself():
    for state in JobState:
        assert not is_allowed(state, state)


@pytest.mark.parametrize(
    ("src", "dst"),
    [(s, d) for s in JobState for d in JobState if d not in TRANSITIONS[s]],
)
def test_illegal_transition_raises_naming_from_and_to(src, dst):
    with pytest.raises(JobStoreError) as info:
        check_transition(src, dst)
    assert f"from '{src.value}' to '{dst.value}'" in str(info.value)


def test_unknown_state_and_trigger_names_are_rejected_with_the_valid_names():
    with pytest.raises(JobStoreError, match="unknown job state 'done'.*queued"):
        check_transition("queued", "done")
    with pytest.raises(JobStoreError, match="unknown trigger 'email'.*webhook"):
        parse_trigger("email")


def test_states_accept_their_string_values():
    assert check_transition("gated", "rejected") is JobState.REJECTED
