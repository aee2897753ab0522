"""Executors are found by name through the extension point; the command line's choice beats the rule's."""

from __future__ import annotations

import json

import pytest

from mlflow_nlsr.errors import ConfigError, ExecutorError, InputError
from mlflow_nlsr.rules import Rule
from mlflow_nlsr.service.executor import EXECUTORS, Executor, LocalExecutor, choose
from mlflow_nlsr.service.heartbeat import LeaseLost
from mlflow_nlsr.service.remote import JobSpec, raise_remote_error


def test_local_is_the_default_executor_and_an_installed_entry_point():
    assert "local" in EXECUTORS.names()
    assert EXECUTORS.get("local") is LocalExecutor
    assert choose(None, {}, Rule(match="*")) == ("local", {})


def test_the_command_line_executor_and_options_override_the_rule():
    class Fake(Executor):
        def __init__(self, **options):
            self.options = options

    EXECUTORS.register("fake", Fake)
    try:
        rule = Rule(match="*", executor={"name": "fake", "num_gpus": 1, "address": "auto"})
        assert choose(None, {}, rule) == ("fake", {"num_gpus": 1, "address": "auto"})
        assert choose(None, {"num_gpus": 2}, rule) == ("fake", {"num_gpus": 2, "address": "auto"})
        assert choose("local", {}, rule) == ("local", {}), "another executor does not inherit the rule's keys"
    finally:
        EXECUTORS.unregister("fake")


def test_an_unknown_executor_is_refused_with_did_you_mean():
    with pytest.raises(ConfigError, match="unknown executor 'locl'. Did you mean: local"):
        choose("locl", {}, Rule(match="*"))


def test_a_job_spec_round_trips_through_json():
    spec = JobSpec(
        3,
        "m",
        "2",
        "models:/m/2",
        "models:/b/1",
        "models:/a/1",
        {"match": "m", "realign": {}},
        "rules: []\n",
        {"tracking_uri": "http://x", "work_dir": "w"},
        "run123",
    )
    assert JobSpec.from_json(spec.to_json()) == spec
    assert json.loads(spec.to_json())["run_id"] == "run123"


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("InputError", InputError),
        ("LeaseLost", LeaseLost),
        ("KeyError", ExecutorError),
        (None, ExecutorError),
    ],
)
def test_a_remote_error_is_raised_again_as_its_own_class(kind, expected):
    with pytest.raises(expected, match="boom"):
        raise_remote_error(kind, "boom")
