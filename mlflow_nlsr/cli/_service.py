"""Options shared by the commands that talk to the registry and the job store."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mlflow_nlsr.cli._common import key_values

_SERVICE_OPTIONS = [
    click.option(
        "--tracking-uri",
        envvar="MLFLOW_TRACKING_URI",
        default=None,
        help="MLflow tracking/registry server [env MLFLOW_TRACKING_URI].",
    ),
    click.option(
        "--store",
        "store_url",
        envvar="NLSR_STORE_URL",
        default=None,
        help="Job store URL: sqlite:///jobs.db (default, in the work dir) or "
        "postgresql+psycopg://user@host/db for several workers [env NLSR_STORE_URL].",
    ),
    click.option(
        "--work-dir",
        envvar="NLSR_WORK_DIR",
        default=".nlsr-work",
        show_default=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="Where inputs, realigned outputs and gate results are kept [env NLSR_WORK_DIR].",
    ),
    click.option(
        "--config",
        "config_path",
        envvar="NLSR_CONFIG",
        default=None,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="nlsr.yaml: which models are realigned against which references [env NLSR_CONFIG].",
    ),
]


def service_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --tracking-uri, --store, --work-dir and --config."""
    for option in reversed(_SERVICE_OPTIONS):
        func = option(func)
    return func


def parse_sets(values: tuple[str, ...], option: str = "--set") -> dict[str, Any]:
    """Parse ``--set key=value`` realign overrides (values read as YAML scalars)."""
    import yaml

    out: dict[str, Any] = {}
    for key, raw in key_values(values, option, f" (e.g. {option} sparsity=0.5)"):
        out[key.replace("-", "_")] = yaml.safe_load(raw)
    return out


def build_service(
    tracking_uri: str | None, store_url: str | None, work_dir: Path, config_path: Path | None, **settings: Any
) -> Any:
    """Create the NLSRService for a command (imported lazily: it loads torch and lm-eval)."""
    from mlflow_nlsr.service import NLSRService, Settings

    return NLSRService(
        Settings(
            tracking_uri=tracking_uri, store_url=store_url, work_dir=work_dir, config=config_path, **settings
        )
    )


def with_service(func: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: consume the service options and pass ``svc_args`` (a dict) instead."""

    @functools.wraps(func)
    def wrapper(
        *args: Any, tracking_uri: Any, store_url: Any, work_dir: Any, config_path: Any, **kwargs: Any
    ) -> Any:
        svc_args = {
            "tracking_uri": tracking_uri,
            "store_url": store_url,
            "work_dir": work_dir,
            "config_path": config_path,
        }
        return func(*args, svc_args=svc_args, **kwargs)

    return service_options(wrapper)
