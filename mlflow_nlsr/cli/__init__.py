"""The ``mlflow nlsr`` / ``mlflow-nlsr`` command line: one click group, one module per command group."""

from __future__ import annotations

import click

from mlflow_nlsr import __version__


@click.group(name="nlsr", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mlflow-nlsr")
def cli() -> None:
    """Neuron-Level Safety Realignment (NLSR) for fine-tuned LLMs in the MLflow Model Registry.

    Repair a fine-tuned model whose safety was broken by its fine-tuning data, without training,
    gate it with lm-eval safety and utility suites, and promote it only if it passes.
    """


def main() -> None:
    """Console-script entry point (``mlflow-nlsr``)."""
    cli(prog_name="mlflow-nlsr")
