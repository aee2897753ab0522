"""``mlflow nlsr realign``: repair a fine-tune's safety with NLSR (or SafeLoRA), no training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mlflow_nlsr.cli._common import echo_json, handle_errors, json_option, limit_threads, placement_options
from mlflow_nlsr.options import CHOICES, EXTENSION_OPTIONS, RealignOptions, option_help

_DIR = click.Path(file_okay=False, path_type=Path)
_FILE = click.Path(dir_okay=False, path_type=Path)
_DEFAULTS = RealignOptions()


def _help(name: str) -> str:
    default = getattr(_DEFAULTS, name)
    return f"{option_help(name)} [default: {default}]" if default is not None else option_help(name)


def _choice(name: str) -> click.Choice:
    """The fixed choices, or the names an extension point has now (plugins and in-process registrations)."""
    point = EXTENSION_OPTIONS.get(name)
    if point is None:
        return click.Choice(CHOICES[name])
    return _ExtensionChoice(point)


class _ExtensionChoice(click.Choice):  # type: ignore[type-arg]
    """A click.Choice read from an extension point each time it is shown or checked."""

    def __init__(self, point: Any) -> None:
        super().__init__(point.names())
        self.point = point

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        self.choices = self.point.names()
        return super().convert(value, param, ctx)


@click.command(name="realign", context_settings={"max_content_width": 100})
@click.option(
    "--base",
    required=True,
    type=_DIR,
    help="Hugging Face model dir the adapters sit on; in full-weight mode the base checkpoint W_0 "
    "(single or sharded safetensors).",
)
@click.option(
    "--aligned",
    required=True,
    type=_DIR,
    help="The safety-aligned model: a PEFT LoRA adapter dir on --base, or (full-weight mode) a HF "
    "checkpoint dir (single or sharded safetensors).",
)
@click.option(
    "--finetuned",
    required=True,
    type=_DIR,
    help="The model fine-tuned from --aligned: a PEFT LoRA adapter dir, or (full-weight mode) a HF "
    "checkpoint dir or an adapter on --base (merged lazily, one tensor at a time).",
)
@click.option("--output", required=True, type=_DIR, help="Output dir (must not exist unless --overwrite).")
@click.option(
    "--mode",
    type=_choice("mode"),
    default=None,
    help="auto: LoRA when both inputs are adapter dirs; lora; full (full-weight mode). [default: auto]",
)
@click.option("--method", type=_choice("method"), default=None, help=_help("method"))
@click.option("--variant", type=_choice("variant"), default=None, help=_help("variant"))
@click.option("--scorer", type=_choice("scorer"), default=None, help=_help("scorer"))
@click.option("--selection", type=_choice("selection"), default=None, help=_help("selection"))
@click.option("--sparsity", type=float, default=None, help=_help("sparsity"))
@click.option("--beta", type=float, default=None, help=_help("beta"))
@click.option("--layer-rate", type=float, default=None, help=_help("layer_rate"))
@click.option("--epsilon", type=float, default=None, help=_help("epsilon"))
@click.option("--tau", type=float, default=None, help=_help("tau"))
@click.option("--seed", type=int, default=None, help=_help("seed"))
@click.option("--selection-seed", type=int, default=None, help=_help("selection_seed"))
@click.option("--safelora-layers", type=int, default=None, help=_help("safelora_layers"))
@click.option(
    "--calibration",
    type=_FILE,
    default=None,
    help='JSONL of {"prompt", "response"} safe answers for actsvd [default: the shipped set].',
)
@click.option(
    "--calibration-prompts",
    type=_FILE,
    default=None,
    help='JSONL of {"prompt"}: the reference model generates the responses (official recipe).',
)
@click.option("--calibration-samples", type=int, default=None, help=_help("calibration_samples"))
@click.option("--max-length", type=int, default=None, help=_help("max_length"))
@click.option("--neuron", type=_choice("neuron"), default=None, help=_help("neuron"))
@click.option(
    "--correction",
    type=click.Choice(["code", "paper"]),
    default=None,
    help=_help("correction"),
)
@placement_options
@click.option(
    "--config",
    "config_file",
    type=_FILE,
    default=None,
    help="YAML file of options (top level or under 'realign:'); flags given here override it.",
)
@click.option(
    "--force",
    is_flag=True,
    default=False,
    help="Run even when the fine-tuned adapter does not continue the aligned one.",
)
@click.option("--overwrite", is_flag=True, default=False, help="Replace an existing output dir.")
@click.option(
    "--max-shard-size",
    default=None,
    help="Full-weight mode only (not with --calibrate): largest output shard, e.g. 2GB, 500MB or "
    "500MiB; a larger checkpoint is written as model-0000i-of-0000n.safetensors plus an index. "
    "[default: 2GB]",
)
@click.option("--no-progress", is_flag=True, default=False, help="Hide the progress bar.")
@click.option(
    "--calibrate/--no-calibrate",
    default=False,
    help="Search a ladder of repair strengths, least invasive first, for the first one whose gates pass "
    "(docs/calibration.md); every attempt is recorded in nlsr_report.json. [default: off]",
)
@click.option(
    "--max-attempts",
    type=int,
    default=8,
    show_default=True,
    help="Calibration: most realignments of the climb; before a rejection the configured options get "
    "one more, judged by the full gate, unless it already judged them.",
)
@click.option(
    "--time-budget", type=float, default=3600.0, show_default=True, help="Calibration: wall-time budget (s)."
)
@click.option(
    "--gate-config", type=_FILE, default=None, help="Calibration: gate config YAML [default: shipped]."
)
@click.option("--gate-limit", type=int, default=None, help="Calibration: items per task of the full gate.")
@click.option(
    "--quick-limit",
    type=int,
    default=24,
    show_default=True,
    help="Calibration: items per task of the quick gate.",
)
@click.option(
    "--screen-z",
    type=click.FloatRange(min=0.0),
    default=1.0,
    show_default=True,
    help="Calibration: a quick-gate miss within this many standard errors of the full gate's "
    "estimate is still confirmed with the full gate; 0 takes the quick verdict as final.",
)
@json_option
@handle_errors
def realign(
    base: Path,
    aligned: Path,
    finetuned: Path,
    output: Path,
    config_file: Path | None,
    overwrite: bool,
    max_shard_size: str | None,
    no_progress: bool,
    as_json: bool,
    calibrate: bool,
    max_attempts: int,
    time_budget: float,
    gate_config: Path | None,
    gate_limit: int | None,
    quick_limit: int,
    screen_z: float,
    **flags: Any,
) -> None:
    r"""Realign a fine-tune whose safety was broken by its fine-tuning data (NLSR, AAAI 2025).

    \b
    Inputs: --base (the HF model), --aligned (the safety-aligned model) and --finetuned (the model
    fine-tuned from --aligned). LoRA mode: both are PEFT LoRA adapter dirs on --base, --finetuned
    trained by continuing --aligned. Full-weight mode: they are HF checkpoint dirs (single or sharded
    safetensors) or PEFT adapters on --base, merged lazily per tensor; --mode auto picks LoRA mode
    only when both are adapters. NLSR amplifies the aligned update into a safety reference, finds
    its safety-critical entries, and copies them into the fine-tuned model in the modules chosen by
    similarity. No training. The default scorer, actsvd, loads the model (the safety reference, in
    either mode) and runs calibration prompts through it; --scorer magnitude or weight-lowrank are
    data-free. --method safelora / safelora-nlsr run the SafeLoRA baselines instead (LoRA mode).

    \b
    Writes into --output: LoRA mode, the realigned PEFT adapter (adapter_config.json,
    adapter_model.safetensors; load it with PeftModel.from_pretrained on --base); full-weight mode,
    a HF checkpoint dir (model.safetensors or shards of at most --max-shard-size with an index,
    config and tokenizer files); both with masks.safetensors, nlsr_report.json, similarity.png and
    README.md. Same inputs and seed give byte-identical weights.
    """
    limit_threads()
    from mlflow_nlsr.pipeline import realign as run_realign

    options = _options(config_file, flags)
    extra = _shard_size(max_shard_size, calibrate, aligned, finetuned, options)
    if calibrate:
        from mlflow_nlsr.cli._calibrate import run_calibration

        search: dict[str, Any] = {
            "gate_config": gate_config, "gate_limit": gate_limit, "quick_limit": quick_limit,
            "max_attempts": max_attempts, "time_budget": time_budget, "screen_z": screen_z,
        }  # fmt: skip
        run_calibration(
            base, aligned, finetuned, output, options, overwrite=overwrite, as_json=as_json, **search
        )
        return
    progress = not no_progress and not as_json
    result = run_realign(
        base, aligned, finetuned, output, options, progress=progress, overwrite=overwrite, **extra
    )
    if as_json:
        echo_json(result.report)
    else:
        _echo_summary(result.report, result.output)


def _options(config_file: Path | None, flags: dict[str, Any]) -> RealignOptions:
    """The options: only flags the user gave override the config file (0 and 0.0 are real values)."""
    given = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in flags.items()
        if v is not None and not (k == "force" and v is False)
    }
    if config_file is not None:
        return RealignOptions.from_yaml(config_file, **given)
    return RealignOptions.from_mapping(given)


def _shard_size(
    max_shard_size: str | None, calibrate: bool, aligned: Path, finetuned: Path, options: RealignOptions
) -> dict[str, Any]:
    """``{"max_shard_size": …}`` for a full-weight run; a note on stderr where the flag does nothing."""
    from mlflow_nlsr.pipeline import resolve_mode

    if max_shard_size is None:
        return {}
    if calibrate or resolve_mode(aligned, finetuned, options) != "full":
        why = "--calibrate uses the default 2GB" if calibrate else "LoRA mode writes one adapter file"
        click.echo(f"Note: --max-shard-size is ignored ({why}).", err=True)
        return {}
    return {"max_shard_size": max_shard_size}


def _echo_summary(report: dict[str, Any], output: Path) -> None:
    changed = report.get("strength", {}).get("changed_fraction")
    click.echo(
        f"{report['method']} ({report['variant']}, scorer {report['scorer']}, "
        f"selection {report['selection']}): patched {report.get('patched_modules', '?')} of "
        f"{report.get('total_modules', len(report.get('modules', [])))} modules"
        + (f", {changed:.1%} of entries changed" if isinstance(changed, float) else "")
        + f", {float(report.get('seconds', 0.0)):.1f}s"
    )
    kind = "checkpoint" if report.get("mode") == "full" else "adapter"
    click.echo(f"Realigned {kind} written to {output} (report: {output / 'nlsr_report.json'})")
