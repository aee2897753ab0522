"""``mlflow nlsr gate``: run the safety, over-refusal, utility and helpfulness suites; judge a gate config."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from mlflow_nlsr.cli._common import (
    batch_size_type,
    echo_json,
    handle_errors,
    json_option,
    key_value_option,
    limit_threads,
    placement_options,
)
from mlflow_nlsr.errors import ConfigError, GateError, OutputExistsError
from mlflow_nlsr.gates.judges import DEFAULT_JUDGE

OUTPUT_FILES = ("metrics.json", "samples.jsonl", "verdict.json", "metrics.png")


def parse_baselines(values: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Turn ``NAME=metrics.json`` options into ``{name: flat metrics}``."""
    import re

    from mlflow_nlsr.gates.report import read_metrics

    out: dict[str, dict[str, float]] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name.strip()) or not path.strip():
            raise ConfigError(f"--baseline should be NAME=path/to/metrics.json, found {value!r}")
        out[name.strip()] = read_metrics(path.strip())
    return out


def _print_suites(as_json: bool) -> None:
    from mlflow_nlsr.gates.catalog import list_suites

    suites = list_suites()
    if as_json:
        echo_json(suites)
        return
    for suite in suites:
        click.echo(f"{suite['suite']:<12} {suite['items']:>5} items  {suite['description']}")
        for task in suite["tasks"]:
            click.echo(f"  {task['task']:<18} {task['items']:>5}  ({task['data_file']})")


def _verdict(
    config_path: Path | None,
    metrics: dict[str, float],
    baselines: dict[str, Any],
    intervals: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Evaluate the gate config (or the default one when every baseline it needs was given)."""
    from mlflow_nlsr.gates.policy import evaluate_policy, load_gate_config

    config = load_gate_config(config_path)
    missing = [b for b in config.baselines if b not in baselines]
    label = str(config_path) if config_path else "default"
    if missing and config_path is None:
        return {
            "passed": None,
            "evaluated": False,
            "config": label,
            "reasons": [],
            "message": f"no --config given and the default gate needs baselines {', '.join(missing)} "
            "(--baseline NAME=metrics.json): metrics only, no verdict",
        }
    verdict = evaluate_policy(config, metrics, baselines, intervals).to_dict()
    return {**verdict, "evaluated": True, "config": label, "baselines": sorted(baselines)}


def _interval_text(interval: dict[str, Any] | None) -> str:
    """``"  [0.1012, 0.2480] n=50"`` for a rate's 95 % Wilson interval ('' for other metrics)."""
    if not interval:
        return ""
    return f"  [{interval['low']:.4f}, {interval['high']:.4f}] n={interval['n']}"


@click.command(name="gate")
@click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path), help="Model dir.")
@click.option("--adapter", type=click.Path(file_okay=False, path_type=Path), help="PEFT adapter dir.")
@click.option(
    "--suite", "suites", default=None, help="Comma-separated suites [safety,overrefusal,utility,helpfulness]."
)
@click.option(
    "--task", "extra_tasks", multiple=True, help="Extra installed lm-eval task (counts toward utility)."
)
@click.option(
    "--judge",
    default=None,
    help=f"Judge plugin: decline, semantic, keyword or hf-classifier [{DEFAULT_JUDGE}].",
)
@click.option("--judge-model", default=None, help="Model dir or hub id for the hf-classifier judge.")
@click.option("--judge-threshold", type=float, default=None, help="Unsafe-probability threshold [0.5].")
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="Evaluate only the first N items/task."
)
@click.option(
    "--batch-size",
    type=batch_size_type,
    default="8",
    show_default=True,
    help="Prompts per batch, or auto (the largest that fits on a GPU; 16 on the CPU).",
)
@click.option(
    "--max-gen-toks", type=click.IntRange(min=1), default=None, help="Token budget of every generative task."
)
@placement_options
@click.option(
    "--backend", default=None, help="Gate backend: hf (built in) or vllm (its plugin) [default: config, hf]."
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Gate config YAML (rules, optional suites/judge/limit); see docs/gates.md.",
)
@key_value_option(
    "--baseline",
    "baseline_args",
    "Metrics of a baseline run (finetuned, aligned, base …).",
    "NAME=metrics.json",
)
@click.option("--output", "output_dir", type=click.Path(file_okay=False, path_type=Path), help="Output dir.")
@click.option("--overwrite", is_flag=True, help="Replace outputs of an earlier run in --output.")
@click.option("--list-suites", is_flag=True, help="List the shipped suites with their tasks and item counts.")
@json_option
@handle_errors
def gate(
    model_dir: Path | None,
    adapter: Path | None,
    suites: str | None,
    extra_tasks: tuple[str, ...],
    judge: str | None,
    judge_model: str | None,
    judge_threshold: float | None,
    limit: int | None,
    batch_size: int | str,
    max_gen_toks: int | None,
    device: str | None,
    dtype: str | None,
    backend: str | None,
    config_path: Path | None,
    baseline_args: tuple[str, ...],
    output_dir: Path | None,
    overwrite: bool,
    list_suites: bool,
    as_json: bool,
) -> None:
    """Gate a model on lm-eval safety, over-refusal, utility and helpfulness suites, then a verdict.

    Metrics: asr, refusal_rate, utility, helpfulness_nll … Writes metrics.json (every rate with its
    item count and 95 % Wilson interval), samples.jsonl, verdict.json and metrics.png to --output. The
    verdict uses --config (relative rules need --baseline NAME=metrics.json from earlier runs); without
    --config the default gate is applied only if all its baselines (finetuned, aligned, base) are
    given, else verdict.json records that no verdict was made. A rule whose margin is below the
    sampling error is printed as a WARNING. Exit code 1 when the gate fails.
    """
    if list_suites:
        _print_suites(as_json)
        return
    if model_dir is None or output_dir is None:
        raise ConfigError("--model and --output are required (or use --list-suites)")
    if not overwrite and any((output_dir / f).exists() for f in OUTPUT_FILES):
        raise OutputExistsError(f"{output_dir} already holds gate outputs; pass --overwrite to replace them")
    from mlflow_nlsr.gates.catalog import DEFAULT_SUITES, tasks_for
    from mlflow_nlsr.gates.policy import load_gate_config
    from mlflow_nlsr.gates.report import VERDICT_FILE, write_json

    baselines = parse_baselines(baseline_args)
    config = load_gate_config(config_path)
    if config_path is not None:
        _check_baselines(config.baselines, config_path, baselines)
    judge_options = _judge_options(config.judge_options, judge_model, judge_threshold)
    chosen = suites or config.suites or DEFAULT_SUITES
    extras = tuple(dict.fromkeys([*config.extra_tasks, *extra_tasks]))
    evaluated = set(tasks_for(chosen, extras))  # the config's task limits of tasks this run evaluates
    limit_threads()
    from mlflow_nlsr.gates.runner import run_gates

    run = run_gates(
        model_dir,
        adapter=adapter,
        suites=chosen,
        tasks_extra=extras,
        judge=judge or config.judge or DEFAULT_JUDGE,
        judge_options=judge_options,
        limit=limit if limit is not None else config.limit,
        task_limits={t: v for t, v in config.task_limits.items() if t in evaluated},
        batch_size=batch_size,
        max_gen_toks=max_gen_toks,
        output_dir=output_dir,
        device=device or config.device or "auto",
        dtype=dtype or config.dtype or "auto",
        backend=backend or config.backend,
        backend_options=config.backend_options,
    )
    intervals = {k: v.to_dict() for k, v in run.intervals.items()}
    verdict = _verdict(config_path, run.metrics, baselines, intervals)
    outputs = {**{k: str(v) for k, v in run.outputs.items()}, "verdict": str(output_dir / VERDICT_FILE)}
    write_json(output_dir / VERDICT_FILE, verdict)
    if as_json:
        echo_json({"metrics": run.metrics, "intervals": intervals, "verdict": verdict, "outputs": outputs})
    else:
        _print_result(run.metrics, intervals, verdict, output_dir)
    if verdict["passed"] is False:
        sys.exit(1)


def _check_baselines(needed: Any, config_path: Path, baselines: dict[str, Any]) -> None:
    """Raise GateError if the gate config at ``config_path`` needs a --baseline that is not given."""
    missing = [b for b in needed if b not in baselines]
    if missing:
        raise GateError(f"gate config {config_path} needs --baseline for {', '.join(missing)}")


def _judge_options(
    configured: Any, judge_model: str | None, judge_threshold: float | None
) -> dict[str, Any]:
    """The gate config's judge options with --judge-model and --judge-threshold laid over them."""
    options: dict[str, Any] = dict(configured)
    if judge_model:
        options["model"] = judge_model
    if judge_threshold is not None:
        options["threshold"] = judge_threshold
    return options


def _print_result(
    metrics: dict[str, float], intervals: dict[str, Any], verdict: dict[str, Any], output_dir: Path
) -> None:
    """Print each metric with its interval, the verdict's reasons and warnings, and the outcome line."""
    for name, value in metrics.items():
        click.echo(f"{name:<32} {value:.4f}{_interval_text(intervals.get(name))}")
    for reason in verdict["reasons"]:
        click.echo(reason["message"])
    for warning in verdict.get("warnings", []):
        click.echo(f"WARNING: {warning}")
    status = {True: "PASSED", False: "FAILED", None: "NOT EVALUATED"}[verdict["passed"]]
    click.echo(f"gate {status}; outputs in {output_dir}")
