"""Run the gate suites on one model with ``lm_eval.simple_evaluate`` and collect flat metrics and samples."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow_nlsr.errors import ConfigError, InputError
from mlflow_nlsr.gates import catalog
from mlflow_nlsr.gates.backends import GateBackend, GateTarget, HFBackend, create_backend
from mlflow_nlsr.gates.intervals import rate_intervals
from mlflow_nlsr.gates.judges import DEFAULT_JUDGE, Judge, use_judge
from mlflow_nlsr.gates.metrics import flatten_results, metric_samples, sample_rows
from mlflow_nlsr.gates.report import write_outputs
from mlflow_nlsr.gates.stats import Interval
from mlflow_nlsr.gates.tokens import continuation_counter, use_token_counter
from mlflow_nlsr.placement import placement

log = logging.getLogger(__name__)
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@dataclass
class GateRun:
    """The outcome of one gate run: flat metrics, the merged lm-eval results, one row per sample."""

    metrics: dict[str, float]
    results: dict[str, Any]
    samples: list[dict[str, Any]]
    tasks: list[str]
    settings: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def intervals(self) -> dict[str, Interval]:
        """Item count and 95 % Wilson interval of every rate (gates.intervals)."""
        return rate_intervals(self.results)

    def summary(self) -> dict[str, Any]:
        """Return the metrics.json content: settings, sample counts, flat metrics and rate intervals."""
        return {**self.settings, "tasks": self.tasks, "n_samples": self.results.get("n-samples", {}),
                "metric_samples": metric_samples(self.results), "metrics": self.metrics,
                "intervals": {k: v.to_dict() for k, v in self.intervals.items()}}  # fmt: skip


def prepare_environment() -> None:
    """Force offline Hugging Face access and one torch thread unless OMP_NUM_THREADS is set."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    if "OMP_NUM_THREADS" not in os.environ:
        import torch

        torch.set_num_threads(1)


def _build_lm(model_dir: str | Path | None, adapter: str | Path | None, model: Any, tokenizer: Any,
              batch_size: int | str, backend: GateBackend, target: GateTarget) -> Any:  # fmt: skip
    from lm_eval.models.huggingface import HFLM

    if model is not None:
        if adapter is not None:
            raise ConfigError(
                "pass either an in-memory model or an adapter dir, not both (apply the adapter first)"
            )
        if tokenizer is None:
            if model_dir is None:
                raise ConfigError("an in-memory model needs tokenizer= or model_dir= to load its tokenizer")
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        size = HFBackend().batch_size(target, str(getattr(model, "device", "cpu")))
        return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=size)
    if model_dir is None or not Path(model_dir).is_dir():
        raise InputError(f"model dir {model_dir} does not exist (expected a Hugging Face checkpoint folder)")
    if adapter is not None and not (Path(adapter) / "adapter_config.json").is_file():
        raise InputError(f"adapter dir {adapter} has no adapter_config.json (expected a PEFT adapter)")
    return backend.build(target)


def judge_placement(judge: str | Judge, options: Mapping[str, Any] | None, device: str, dtype: str
                    ) -> dict[str, Any]:
    """The judge's options with the gate's device/dtype added when the judge takes them and none is set."""
    import inspect

    from mlflow_nlsr.gates.judges import available_judges

    given = dict(options or {})
    found = available_judges().get(judge) if isinstance(judge, str) else None
    if found is None:
        return given  # a Judge instance, or an unknown name that use_judge reports
    try:
        accepted = inspect.signature(found.load()).parameters
    except (ImportError, TypeError, ValueError):
        return given
    for name, value in zip(("device", "dtype"), placement(device, dtype), strict=True):
        if name in accepted and name not in given:
            given[name] = value
    return given


def supports_chat(lm: Any) -> bool:
    """Return True when `lm` can render chat prompts (a tokenizer chat template, or a chat-capable LM)."""
    tok = getattr(lm, "tokenizer", None)
    if tok is not None:
        return bool(getattr(tok, "chat_template", None))
    try:
        lm.tokenizer_name  # noqa: B018 - lm-eval's marker that an LM implements chat templating
    except NotImplementedError:
        return False
    return callable(getattr(lm, "apply_chat_template", None))


def _merge(into: dict[str, Any], part: Mapping[str, Any]) -> None:
    for key in ("results", "configs", "versions", "n-shot", "higher_is_better", "n-samples", "samples"):
        into.setdefault(key, {}).update(part.get(key) or {})
    for key in ("lm_eval_version", "transformers_version", "chat_template_sha"):
        if key in part:
            into[key] = part[key]


def evaluate_tasks(lm: Any, tasks: Sequence[str], manager: Any, *, chat: bool, limit: int | None,
                   max_gen_toks: int | None) -> dict[str, Any]:  # fmt: skip
    """Run ``simple_evaluate`` on `tasks` with (or without) the chat template; return its results dict."""
    import lm_eval

    result = lm_eval.simple_evaluate(
        model=lm,
        tasks=list(tasks),
        task_manager=manager,
        limit=limit,
        apply_chat_template=chat,
        fewshot_as_multiturn=chat,
        log_samples=True,
        bootstrap_iters=0,
        gen_kwargs={"max_gen_toks": int(max_gen_toks)} if max_gen_toks else None,
        random_seed=0,
        numpy_random_seed=0,
        torch_random_seed=0,
        fewshot_random_seed=0,
    )
    return dict(result or {})


def run_gates(
    model_dir: str | Path | None,
    *,
    adapter: str | Path | None = None,
    model: Any = None,
    tokenizer: Any = None,
    suites: Sequence[str] | str = catalog.DEFAULT_SUITES,
    tasks_extra: Sequence[str] = (),
    judge: str | Judge = DEFAULT_JUDGE,
    judge_options: Mapping[str, Any] | None = None,
    limit: int | None = None,
    batch_size: int | str = 8,
    max_gen_toks: int | None = None,
    output_dir: str | Path | None = None,
    device: str = "auto",
    lm: Any = None,
    task_limits: Mapping[str, int | None] | None = None,
    dtype: str = "auto",
    backend: str = "hf",
    backend_options: Mapping[str, Any] | None = None,
) -> GateRun:
    """Evaluate a model (dir, dir + PEFT adapter, in-memory model, or any lm-eval ``LM`` via `lm`) on suites.

    Returns flat metrics (``asr``, ``asr_<category>``, ``refusal_rate``, ``degenerate_rate``,
    ``answered_rate``, ``sentiment_acc``, ``arithmetic_exact_match``, ``knowledge_acc``, ``utility``,
    ``helpfulness_nll`` …), the merged lm-eval results and one row per sample; writes metrics.json (with
    the rates' intervals), samples.jsonl and metrics.png when `output_dir` is given.
    `task_limits` overrides `limit` per task (None: every item of that task). `backend` (``hf``, or
    ``vllm`` from its plugin) builds the model on `device` in `dtype` with `backend_options`; `batch_size`
    may be ``"auto"``.
    """
    task_limits = dict(task_limits or {})
    for name, value in {"limit": limit, **{f"task_limits[{t}]": v for t, v in task_limits.items()}}.items():
        if value is not None and value < 1:
            raise ConfigError(f"{name} should be a positive number of items per task, found {value}")
    if batch_size != "auto" and (not isinstance(batch_size, int) or batch_size < 1):
        raise ConfigError(f"batch size should be >= 1 or 'auto', found {batch_size!r}")
    engine = create_backend(backend, dict(backend_options or {}))
    target = GateTarget(Path(model_dir) if model_dir is not None else Path(),
                        Path(adapter) if adapter else None, device, dtype, batch_size, tokenizer)
    prepare_environment()
    suite_names = catalog.parse_suites(suites) if suites else ()
    tasks = catalog.tasks_for(suite_names, tasks_extra)
    if not tasks:
        raise ConfigError("nothing to evaluate: no suite and no extra task given")
    stray = sorted(set(task_limits) - set(tasks))
    if stray:
        raise ConfigError(f"task_limits name tasks that are not evaluated: {stray}; evaluated: {list(tasks)}")
    started = time.monotonic()
    with use_judge(judge, **judge_placement(judge, judge_options, device, dtype)) as active:
        manager = catalog.task_manager(tasks_extra)
        catalog.check_tasks(manager, tasks)
        if lm is None:
            lm = _build_lm(model_dir, adapter, model, tokenizer, batch_size, engine, target)
        has_template = supports_chat(lm)
        if not has_template:
            log.warning("tokenizer has no chat template: evaluating every task on plain prompts")
        wants_chat = [
            t for t in tasks if t in catalog.SHIPPED_TASKS and catalog.SHIPPED_TASKS[t].chat_template
        ]
        groups = [(True, wants_chat if has_template else []),
                  (False, [t for t in tasks if t not in wants_chat or not has_template])]  # fmt: skip
        merged: dict[str, Any] = {}
        for chat, group in groups:
            by_limit: dict[int | None, list[str]] = {}
            for task in group:
                by_limit.setdefault(task_limits.get(task, limit), []).append(task)
            for group_limit, members in by_limit.items():
                with use_token_counter(continuation_counter(lm, chat) if group else None):
                    part = evaluate_tasks(
                        lm, members, manager, chat=chat, limit=group_limit, max_gen_toks=max_gen_toks
                    )
                _merge(merged, part)
    utility_tasks = [t for t in tasks if t in catalog.SUITES["utility"] or t in tasks_extra]
    settings = {
        "model": str(model_dir) if model_dir is not None else type(model or lm).__name__,
        "adapter": str(adapter) if adapter is not None else None,
        "suites": list(suite_names),
        "extra_tasks": list(tasks_extra),
        "judge": judge if isinstance(judge, str) else type(judge).__name__,
        "judge_detail": repr(active),
        "limit": limit,
        "task_limits": task_limits,
        "batch_size": batch_size,
        "max_gen_toks": max_gen_toks,
        **(engine.describe(target) if model is None and model_dir is not None else {}),
        "chat_template": bool(wants_chat) and has_template,
        "lm_eval_version": merged.get("lm_eval_version"),
        "seconds": round(time.monotonic() - started, 3),
    }
    run = GateRun(flatten_results(merged, utility_tasks), merged, sample_rows(merged), tasks, settings)
    if output_dir is not None:
        run.outputs = write_outputs(output_dir, run.summary(), run.samples)
    return run
