"""``mlflow nlsr log-model``: log a local HF or PEFT dir as a LoggedModel and register it."""

from __future__ import annotations

from pathlib import Path

import click

from mlflow_nlsr.cli._common import echo_json, handle_errors, json_option, key_value_option, key_values


def _tags(values: tuple[str, ...]) -> dict[str, str]:
    return dict(key_values(values, "--tag"))


@click.command("log-model")
@click.argument("local_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", required=True, help="Registered model name.")
@key_value_option(
    "--tag", "tags", "Version tag, sent in the create call (e.g. nlsr.base_uri=models:/base/1). Repeatable."
)
@click.option("--description", default=None, help="Version description.")
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", default=None, help="MLflow server.")
@json_option
@handle_errors
def log_model(
    local_dir: Path,
    name: str,
    tags: tuple[str, ...],
    description: str | None,
    tracking_uri: str | None,
    as_json: bool,
) -> None:
    """Log LOCAL_DIR (an HF checkpoint or a PEFT adapter) as raw artifacts and register a version.

    Raw artifacts of a LoggedModel, not the transformers flavour: that flavour fails on directory paths
    under transformers 5.x and reloads PEFT models logged without base_model_path with corrupted weights.
    """
    from mlflow_nlsr.registry.client import RegistryClient
    from mlflow_nlsr.registry.models import log_local_model

    client = RegistryClient(tracking_uri)
    model_id, version = log_local_model(
        local_dir,
        name=name,
        registered_model_name=name,
        version_tags=_tags(tags),
        description=description,
        client=client,
    )
    uri = f"models:/{name}/{version.version}" if version else None
    if as_json:
        echo_json({"model_id": model_id, "model_uri": uri, "version": version.version if version else None})
    else:
        click.echo(f"registered {uri} (LoggedModel {model_id})")
