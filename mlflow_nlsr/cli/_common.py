"""Shared CLI plumbing: error translation to exit codes, JSON output, thread settings."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import click

from mlflow_nlsr.errors import ConfigError, NLSRError

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(func: F) -> F:
    """Turn NLSRError (its exit code) and OSError (exit 1: disk full…) into one ``Error: …`` line."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NLSRError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except OSError as exc:  # e.g. [Errno 28] No space left on device: the OS message names the problem
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def key_values(values: Iterable[str], option: str, example: str = "") -> Iterator[tuple[str, str]]:
    """Yield (stripped key, raw value) of each ``KEY=VALUE`` given to `option`; ConfigError without '='."""
    for item in values:
        if "=" not in item:
            raise ConfigError(f"{option} expects key=value{example}, got {item!r}")
        key, value = item.split("=", 1)
        yield key.strip(), value


def echo_json(data: Any) -> None:
    """Print `data` as indented JSON on stdout."""
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def limit_threads() -> None:
    """Use one BLAS thread unless the user chose otherwise (two threads on two shared cores are slower)."""
    if "OMP_NUM_THREADS" not in os.environ:
        import torch

        torch.set_num_threads(1)


json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
