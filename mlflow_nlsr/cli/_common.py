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


def key_value_option(flag: str, dest: str, help: str, metavar: str = "KEY=VALUE") -> Callable[[F], F]:
    """A repeatable ``FLAG KEY=VALUE`` option gathered as a tuple in `dest` (parse it with key_values)."""
    return click.option(flag, dest, multiple=True, metavar=metavar, help=help)


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


def _checked(check: Callable[[str], str]) -> Callable[[Any, Any, str | None], str | None]:
    def callback(_ctx: Any, _param: Any, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return check(value)
        except ConfigError as exc:
            raise click.BadParameter(str(exc)) from exc

    return callback


def placement_options(func: F) -> F:
    """Add ``--device`` and ``--dtype`` (None when not given: the config's or rule's value, else auto)."""
    from mlflow_nlsr.options import DEVICE_HELP, DTYPE_HELP, check_device, check_dtype

    func = click.option("--dtype", default=None, callback=_checked(check_dtype),
                        help=f"Precision of the models: {DTYPE_HELP}")(func)
    return click.option("--device", default=None, callback=_checked(check_device),
                        help=f"Where realignment, ActSVD and gates run: {DEVICE_HELP}")(func)


class BatchSize(click.ParamType):
    """``--batch-size`` / ``--gate-batch-size``: a positive int or ``auto``."""

    name = "INTEGER|auto"

    def convert(self, value: Any, param: Any, ctx: Any) -> int | str:
        """Return the int, or "auto"; anything else fails with a usage error."""
        if isinstance(value, int) or value == "auto":
            return value
        if not str(value).isdigit() or int(value) < 1:
            self.fail(f"expected a positive integer or 'auto', got {value!r}", param, ctx)
        return int(value)


batch_size_type = BatchSize()


json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
