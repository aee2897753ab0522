"""``mlflow nlsr verify models:/NAME/N``: recompute a realigned version's hashes (and optionally rerun)."""

from __future__ import annotations

import sys
from typing import Any

import click

from mlflow_nlsr.cli._common import echo_json, handle_errors, json_option, limit_threads
from mlflow_nlsr.cli._service import with_service
from mlflow_nlsr.cli.jobs import _parse_model_uri
from mlflow_nlsr.errors import VerificationFailed


@click.command()
@click.argument("model_uri")
@click.option("--rerun", is_flag=True, help="Also realign again from the recorded inputs and compare bytes.")
@with_service
@json_option
@handle_errors
def verify(model_uri: str, rerun: bool, svc_args: dict[str, Any], as_json: bool) -> None:
    """Check that models:/NAME/N (a realigned version) is what its lineage says.

    Recomputes the weights' SHA-256 against the nlsr.output_sha256 tag and the report, and the content
    hashes of the recorded base, aligned and source versions against the report's inputs. --rerun
    realigns again with the recorded options and compares the new weights. Exits 10 and prints the
    JSON report on any mismatch.
    """
    from mlflow_nlsr.registry.client import RegistryClient
    from mlflow_nlsr.service.verify import verify_version

    limit_threads()
    name, version = _parse_model_uri(model_uri)
    client = RegistryClient(svc_args["tracking_uri"])
    report = verify_version(client, name, version, svc_args["work_dir"], rerun=rerun)
    if as_json or not report["ok"]:
        echo_json(report)
    else:
        for c in report["checks"]:
            click.echo(f"ok  {c['check']}: {c['actual']}")
        click.echo(f"{model_uri}: verified")
    if not report["ok"]:
        sys.exit(VerificationFailed.exit_code)
