"""Make ``mlflow nlsr …`` work: attach our click group to MLflow's CLI when ``mlflow.cli`` is imported.

MLflow's CLI loads no plugin commands (its ``add_command`` calls are hard-coded). It does load the
``mlflow.run_context_provider`` entry-point group while ``import mlflow`` runs, which is always before
``mlflow.cli`` executes. That entry point names :class:`NLSRCliHook`; importing this module installs a
one-shot import hook that, right after ``mlflow.cli`` has executed, adds a lazy ``nlsr`` command to
``mlflow.cli.cli``. The provider itself never adds run tags (``in_context`` is False). Nothing heavy is
imported: the real ``mlflow_nlsr.cli`` loads only when ``mlflow nlsr`` is invoked. See docs/cli.md.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Any

_TARGET = "mlflow.cli"


def attach(module: ModuleType) -> None:
    """Add the lazy ``nlsr`` group to the click group ``module.cli`` (idempotent)."""
    import click

    group = getattr(module, "cli", None)
    if not isinstance(group, click.Group) or "nlsr" in group.commands:
        return

    class _LazyNLSR(click.Group):
        def _real(self) -> click.Group:
            from mlflow_nlsr.cli import cli as real

            return real

        def list_commands(self, ctx: click.Context) -> list[str]:
            return self._real().list_commands(ctx)

        def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
            return self._real().get_command(ctx, name)

        def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
            self._real().format_help(ctx, formatter)

    group.add_command(
        _LazyNLSR(
            name="nlsr", help="Neuron-Level Safety Realignment (mlflow-nlsr): realign, gate, run, serve."
        ),
    )


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader) -> None:
        self._inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._inner.exec_module(module)
        with contextlib.suppress(Exception):  # never break MLflow's own CLI because of our plugin
            attach(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Any, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


def install() -> None:
    """Install the import hook, or attach at once if ``mlflow.cli`` is already imported."""
    if _TARGET in sys.modules:
        attach(sys.modules[_TARGET])
    elif not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


class NLSRCliHook:
    """A no-op MLflow run-context provider whose import installs the ``mlflow nlsr`` hook."""

    def in_context(self) -> bool:
        """Never contribute run tags."""
        return False

    def tags(self) -> dict[str, str]:
        """No tags."""
        return {}


install()
