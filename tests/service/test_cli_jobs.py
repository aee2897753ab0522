"""`mlflow nlsr run` does the whole job synchronously; `status` and `audit` report it for governance."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mlflow_nlsr.cli import cli
from mlflow_nlsr.registry.client import RegistryClient
from mlflow_nlsr.registry.models import log_local_model
from tests.service.conftest import PERMISSIVE, write_config

pytestmark = pytest.mark.slow


def test_run_status_and_audit_tell_the_same_story(server, models, references, model_name, tmp_path):
    config = write_config(tmp_path / "nlsr.yaml", model_name, *references, PERMISSIVE)
    client = RegistryClient(server.url)
    log_local_model(models[2], name=model_name, registered_model_name=model_name, client=client)
    common = ["--tracking-uri", server.url, "--work-dir", str(tmp_path / "w"), "--config", str(config)]
    runner = CliRunner()

    result = runner.invoke(cli, ["run", "--model-uri", f"models:/{model_name}/1", *common, "--json"])
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.output[result.output.index("{") :])
    assert outcome["state"] == "promoted" and outcome["realigned_version"] == "2"
    assert client.get_alias_version(model_name, "safe").version == "2"

    status = runner.invoke(cli, ["status", *common, "--json"])
    rows = json.loads(status.output[status.output.index("[") :])
    assert [(r["model"], r["version"], r["state"]) for r in rows] == [(model_name, "1", "promoted")]

    audit = runner.invoke(cli, ["audit", "--model", model_name, "--format", "md", *common])
    assert audit.exit_code == 0, audit.output
    assert f"| {model_name} | 1 | promoted | 2 | pass |" in audit.output
    for event in ("enqueued", "claimed", "realigned", "gated", "promoted"):
        assert f"| {event} |" in audit.output
    audit_json = runner.invoke(cli, ["audit", "--model", model_name, "--format", "json", *common])
    data = json.loads(audit_json.output)
    assert data[0]["metrics"]["realigned"]["asr"] == pytest.approx(
        float(client.get_version(model_name, "2").tags["nlsr.gate.asr"]), abs=1e-4
    )


def test_run_rejects_a_uri_that_is_not_a_registered_version(tmp_path):
    result = CliRunner().invoke(cli, ["run", "--model-uri", "runs:/abc/model", "--work-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "expects models:/NAME/VERSION" in result.output
