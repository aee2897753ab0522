"""The ``mlflow nlsr`` / ``mlflow-nlsr`` command line: one lazy click group, one module per command.

Commands are imported only when invoked (``--help`` stays fast and torch is not imported for it).
"""

from __future__ import annotations

import importlib
import importlib.util

import click

from mlflow_nlsr import __version__

#: command name -> "module:attribute" of its click command
COMMANDS: dict[str, str] = {
    "realign": "mlflow_nlsr.cli.realign:realign",
    "gate": "mlflow_nlsr.cli.gate:gate",
    "run": "mlflow_nlsr.cli.jobs:run",
    "status": "mlflow_nlsr.cli.jobs:status",
    "audit": "mlflow_nlsr.cli.jobs:audit",
    "worker": "mlflow_nlsr.cli.jobs:worker",
    "approve": "mlflow_nlsr.cli.governance:approve",
    "reject": "mlflow_nlsr.cli.governance:reject",
    "rollback": "mlflow_nlsr.cli.governance:rollback",
    "requeue": "mlflow_nlsr.cli.governance:requeue",
    "cancel": "mlflow_nlsr.cli.governance:cancel",
    "verify": "mlflow_nlsr.cli.verify:verify",
    "gc": "mlflow_nlsr.cli.governance:gc",
    "watch": "mlflow_nlsr.cli.triggers:watch",
    "serve": "mlflow_nlsr.cli.triggers:serve",
    "webhook": "mlflow_nlsr.cli.triggers:webhook",
    "log-model": "mlflow_nlsr.cli.log_model:log_model",
    "demo": "mlflow_nlsr.cli.demo:demo",
}


class LazyGroup(click.Group):
    """A click group that imports each sub-command's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """List the commands whose modules are installed."""
        names = []
        for name, target in COMMANDS.items():
            module = target.split(":")[0]
            if importlib.util.find_spec(module) is not None:
                names.append(name)
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import and return one command, or None when it is unknown."""
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        if importlib.util.find_spec(module_name) is None:
            return None
        return getattr(importlib.import_module(module_name), attr)  # type: ignore[no-any-return]


@click.group(
    name="nlsr",
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="mlflow-nlsr")
def cli() -> None:
    """Neuron-Level Safety Realignment (NLSR) for fine-tuned LLMs in the MLflow Model Registry.

    Repair a fine-tuned model whose safety was broken by its fine-tuning data, without training,
    gate it with lm-eval safety and utility suites, and promote it only if it passes.
    """


def main() -> None:
    """Console-script entry point (``mlflow-nlsr``)."""
    cli(prog_name="mlflow-nlsr")
