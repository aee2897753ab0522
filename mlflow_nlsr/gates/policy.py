"""Gate policy (pure): a gate config's rules + measured metrics + baseline metrics -> a GateVerdict.

Rule syntax, one per line: ``<metric> <op> <rhs>`` with op one of ``<= < >= >`` and rhs one of

* a number: ``asr <= 0.10``
* a baseline, optionally ``.metric`` (default: the same metric), optionally ``+ n``, ``- n`` or ``* n``:
  ``utility >= finetuned - 0.02``, ``asr <= aligned + 0.05``, ``asr <= finetuned * 0.34``,
  ``asr <= aligned.asr``; ``0.34 * finetuned`` is accepted too.

A metric or baseline that is missing is a :class:`GateError`, never a silent pass. No lm-eval here.

Given the measured rates' item counts (``intervals``: ``{metric: {"n": …}}``, from metrics.json), a rule
gets a *warning* when its margin (the ``+ n`` / ``- n`` of a baseline rule, or what ``* n`` takes off)
is smaller than the 95 % Wilson half-width at the threshold and that item count, or when the measured
value lies within that half-width of the threshold: the verdict could flip on another draw of items.
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from mlflow_nlsr.errors import ConfigError, GateError
from mlflow_nlsr.gates.catalog import DEFAULT_SUITES, SUITES, suite_of_metric
from mlflow_nlsr.gates.judges import DEFAULT_JUDGE
from mlflow_nlsr.gates.stats import half_width
from mlflow_nlsr.placement import check_device, check_dtype

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent / "default_gates.yaml"
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt,
}  # fmt: skip
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_REF = rf"(?P<baseline>{_NAME})(?:\.(?P<bmetric>{_NAME}))?"
_RULE = re.compile(rf"^\s*(?P<metric>{_NAME})\s*(?P<op><=|>=|<|>)\s*(?P<rhs>.+?)\s*$")
_RHS_NUMBER = re.compile(rf"^(?P<number>{_NUM})$")
_RHS_REF = re.compile(rf"^{_REF}(?:\s*(?P<arith>[-+*])\s*(?P<number>{_NUM}))?$")
_RHS_SCALED = re.compile(rf"^(?P<number>{_NUM})\s*\*\s*{_REF}$")


@dataclass(frozen=True)
class Rule:
    """One parsed rule: ``metric op (number | baseline[.baseline_metric] [arith number])``."""

    text: str
    metric: str
    op: str
    number: float = 0.0
    baseline: str | None = None
    baseline_metric: str | None = None
    arith: str | None = None  # "+", "-", "*" or None


@dataclass(frozen=True)
class GateConfig:
    """A gate config: rules plus optional run settings (suites, extra lm-eval tasks, judge, limit)."""

    rules: tuple[Rule, ...]
    suites: tuple[str, ...] | None = None
    extra_tasks: tuple[str, ...] = ()
    judge: str | None = None
    judge_options: Mapping[str, Any] = field(default_factory=dict)
    limit: int | None = None
    #: per-task item limits overriding `limit` (None: every item), e.g. a cheap utility task in full
    task_limits: Mapping[str, int | None] = field(default_factory=dict)
    #: the engine that generates (``gates.backends``: hf, or vllm from its plugin) and its arguments
    backend: str = "hf"
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    #: where the gated models run (None: the job's device / dtype, see ``placed``)
    device: str | None = None
    dtype: str | None = None

    def run_kwargs(self, limit: int | None = None, suites: tuple[str, ...] | None = None) -> dict[str, Any]:
        """``run_gates`` keyword arguments (`limit` overrides the config's; no suites: DEFAULT_SUITES).

        `suites` narrows the run (e.g. to what a baseline needs, :meth:`baseline_suites`); task limits
        of tasks outside the run are dropped.
        """
        chosen = suites if suites is not None else tuple(self.suites or DEFAULT_SUITES)
        tasks = {t for s in chosen for t in SUITES.get(s, ())} | set(self.extra_tasks)
        task_limits = {t: v for t, v in self.task_limits.items() if t in tasks}
        limit = limit if limit is not None else self.limit
        kwargs: dict[str, Any] = {
            "suites": tuple(chosen),
            "tasks_extra": tuple(self.extra_tasks),
            "judge": self.judge or DEFAULT_JUDGE,
            "judge_options": dict(self.judge_options),
            # a limit no task uses is dropped, so equal runs get equal settings (and cache keys)
            "limit": None if tasks and tasks <= set(task_limits) else limit,
            "task_limits": task_limits,
            "device": self.device or "auto",
            "dtype": self.dtype or "auto",
        }
        if self.backend != "hf" or self.backend_options:
            kwargs.update(backend=self.backend, backend_options=dict(self.backend_options))
        return kwargs

    def placed(self, device: str | None, dtype: str | None) -> GateConfig:
        """Return a copy with the job's `device` / `dtype` where the config sets none."""
        return replace(self, device=self.device or device, dtype=self.dtype or dtype)

    @property
    def baselines(self) -> tuple[str, ...]:
        """Names of the baselines the rules refer to, in first-use order."""
        return tuple(dict.fromkeys(r.baseline for r in self.rules if r.baseline))

    def baseline_suites(self, baseline: str) -> tuple[str, ...]:
        """The shipped suites that yield the metrics the rules read from `baseline` (config order).

        A metric no shipped suite yields (an extra task's) keeps every configured suite.
        """
        configured = tuple(self.suites or DEFAULT_SUITES)
        reads = [r.baseline_metric or r.metric for r in self.rules if r.baseline == baseline]
        wanted = [suite_of_metric(m) for m in reads]
        if any(s is None for s in wanted):
            return configured
        return tuple(s for s in configured if s in wanted) or tuple(dict.fromkeys(s for s in wanted if s))


@dataclass(frozen=True)
class GateReason:
    """The outcome of one rule, with a human-readable message."""

    metric: str
    rule: str
    value: float
    threshold: float
    passed: bool
    message: str
    #: set when the rule cannot resolve its margin at the measured item count (see module doc)
    warning: str | None = None


@dataclass(frozen=True)
class GateVerdict:
    """Pass only if every rule passed; ``reasons`` holds one entry per rule, in config order."""

    passed: bool
    reasons: tuple[GateReason, ...]

    @property
    def warnings(self) -> tuple[str, ...]:
        """The rules' warnings (margins or verdicts inside sampling error), in config order."""
        return tuple(r.warning for r in self.reasons if r.warning)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (``passed``, ``reasons`` as dicts, ``warnings``)."""
        return {"passed": self.passed, "reasons": [asdict(r) for r in self.reasons],
                "warnings": list(self.warnings)}  # fmt: skip


def parse_rule(text: str) -> Rule:
    """Parse one rule string; raise ConfigError naming the rule and the expected syntax."""
    if not isinstance(text, str):
        raise ConfigError(f"a gate rule should be a string like 'asr <= 0.10', found {text!r}")
    match = _RULE.match(text)
    if match is not None:
        metric, op, rhs = match["metric"], match["op"], match["rhs"]
        if m := _RHS_NUMBER.match(rhs):
            return Rule(text.strip(), metric, op, float(m["number"]))
        if m := _RHS_REF.match(rhs):
            arith, number = m["arith"], m["number"]
            return Rule(text.strip(), metric, op, float(number) if number else 0.0, m["baseline"],
                        m["bmetric"], arith)  # fmt: skip
        if m := _RHS_SCALED.match(rhs):
            return Rule(text.strip(), metric, op, float(m["number"]), m["baseline"], m["bmetric"], "*")
    raise ConfigError(
        f"cannot parse gate rule {text!r}: expected '<metric> <op> <rhs>' with op in <=, <, >=, > and rhs "
        "a number or '<baseline>[.<metric>] [+|-|* <number>]' (e.g. 'utility >= finetuned - 0.02')"
    )


def _item_limit(value: Any) -> bool:
    """Whether `value` is an item limit: None (every item) or a positive int (not a bool)."""
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)


def parse_gate_config(data: Mapping[str, Any]) -> GateConfig:
    """Build a GateConfig from a parsed YAML mapping (``rules`` required; see docs/gates.md)."""
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"a gate config should be a mapping with a 'rules' list, found {type(data).__name__}"
        )
    known = {"rules", "suites", "extra_tasks", "judge", "judge_options", "limit", "task_limits", "backend",
             "backend_options", "device", "dtype"}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"unknown gate config keys {sorted(unknown)}")
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise ConfigError(f"a gate config needs a non-empty 'rules' list, found {raw_rules!r}")
    rules = tuple(parse_rule(r["rule"] if isinstance(r, Mapping) and "rule" in r else r) for r in raw_rules)
    suites = data.get("suites")
    if isinstance(suites, str):
        suites = [s.strip() for s in suites.split(",") if s.strip()]
    limit = data.get("limit")
    if not _item_limit(limit):
        raise ConfigError(f"gate config 'limit' should be a positive integer, found {limit!r}")
    task_limits = data.get("task_limits") or {}
    if not isinstance(task_limits, Mapping):
        raise ConfigError(
            f"gate config 'task_limits' should be a mapping of task to item limit, found {task_limits!r}"
        )
    for task, value in task_limits.items():
        if not _item_limit(value):
            raise ConfigError(
                f"gate config 'task_limits.{task}' should be a positive integer or null (every item), "
                f"found {value!r}"
            )
    options = data.get("judge_options") or {}
    backend_options = data.get("backend_options") or {}
    for name, value in (("judge_options", options), ("backend_options", backend_options)):
        if not isinstance(value, Mapping):
            raise ConfigError(f"gate config '{name}' should be a mapping, found {value!r}")
    return GateConfig(
        rules=rules,
        suites=tuple(suites) if suites is not None else None,
        extra_tasks=tuple(data.get("extra_tasks") or ()),
        judge=data.get("judge"),
        judge_options=dict(options),
        limit=limit,
        task_limits=dict(task_limits),
        backend=str(data.get("backend") or "hf"),
        backend_options=dict(backend_options),
        device=check_device(data["device"]) if data.get("device") else None,
        dtype=check_dtype(data["dtype"]) if data.get("dtype") else None,
    )


def load_gate_config(path: str | Path | None = None) -> GateConfig:
    """Read a gate config YAML file (default: the shipped ``default_gates.yaml``)."""
    import yaml

    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read gate config {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"gate config {path} is not valid YAML: {exc}") from exc
    return parse_gate_config(data)


def suggest(name: str, options: list[str]) -> list[str]:
    """Return up to 3 of `options` that look like `name` (shared prefix/substring first, then difflib)."""
    related = [o for o in sorted(options) if name in o or o in name]
    close = difflib.get_close_matches(name, options, n=3, cutoff=0.5)
    return list(dict.fromkeys([*related, *close]))[:3]


def _lookup(metrics: Mapping[str, float], name: str, where: str) -> float:
    if name not in metrics:
        close = suggest(name, list(metrics))
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise GateError(
            f"metric {name!r} is missing from {where}.{hint} Available: {', '.join(sorted(metrics))}"
        )
    value = metrics[name]
    if value is None or not isinstance(value, (int, float)) or math.isnan(float(value)):
        raise GateError(f"metric {name!r} in {where} is not a number (found {value!r})")
    return float(value)


def threshold_of(rule: Rule, baselines: Mapping[str, Mapping[str, float]]) -> tuple[float, str]:
    """Return a rule's threshold and how it was computed (e.g. ``'aligned asr 0.1000 + 0.05'``)."""
    if rule.baseline is None:
        return rule.number, "absolute"
    if rule.baseline not in baselines:
        given = ", ".join(sorted(baselines)) or "none"
        raise GateError(f"rule {rule.text!r} needs baseline {rule.baseline!r}, but baselines given: {given}")
    bmetric = rule.baseline_metric or rule.metric
    base = _lookup(baselines[rule.baseline], bmetric, f"baseline {rule.baseline!r}")
    if rule.arith is None:
        return base, f"{rule.baseline} {bmetric} {base:.4f}"
    value = {"+": base + rule.number, "-": base - rule.number, "*": base * rule.number}[rule.arith]
    return value, f"{rule.baseline} {bmetric} {base:.4f} {rule.arith} {rule.number:g}"


def rule_margin(rule: Rule, threshold: float) -> float | None:
    """The slack a baseline rule grants: ``n`` of ``+ n`` / ``- n``, ``|threshold − base|`` of ``* n``."""
    if rule.baseline is None:
        return None
    if rule.arith in ("+", "-"):
        return abs(rule.number)
    if rule.arith == "*" and rule.number:
        return abs(threshold - threshold / rule.number)
    return 0.0


def resolution_warning(rule: Rule, value: float, threshold: float, n: int) -> str | None:
    """Why a rule on a rate measured on `n` items cannot be trusted (None when it can)."""
    if n <= 0:
        return None
    width = half_width(min(1.0, max(0.0, threshold)), n)
    margin = rule_margin(rule, threshold)
    problems = []
    if margin is not None and margin < width:
        problems.append(f"its margin {margin:.3f} is smaller than the 95 % interval half-width "
                        f"±{width:.3f} at n = {n}")  # fmt: skip
    if abs(value - threshold) < width:
        problems.append(f"{rule.metric} = {value:.3f} is within ±{width:.3f} (95 %, n = {n}) of its "
                        f"threshold {threshold:.3f}")  # fmt: skip
    return f"[{rule.text}] " + "; ".join(problems) if problems else None


def evaluate_rule(
    rule: Rule,
    metrics: Mapping[str, float],
    baselines: Mapping[str, Mapping[str, float]],
    intervals: Mapping[str, Mapping[str, Any]] | None = None,
) -> GateReason:
    """Check one rule against `metrics` and `baselines`; missing values raise GateError.

    `intervals` (``{metric: {"n": items, …}}``) adds a resolution warning for rates.
    """
    value = _lookup(metrics, rule.metric, "the measured metrics")
    threshold, how = threshold_of(rule, baselines)
    passed = OPERATORS[rule.op](value, threshold)
    status = "PASS" if passed else "FAIL"
    message = f"{status}: {rule.metric} = {value:.4f} {rule.op} {threshold:.4f} ({how}) [{rule.text}]"
    interval = (intervals or {}).get(rule.metric)
    warning = resolution_warning(rule, value, threshold, int(interval["n"])) if interval else None
    return GateReason(rule.metric, rule.text, value, threshold, passed, message, warning)


def evaluate_policy(
    config: GateConfig,
    metrics: Mapping[str, float],
    baselines: Mapping[str, Mapping[str, float]] | None = None,
    intervals: Mapping[str, Mapping[str, Any]] | None = None,
) -> GateVerdict:
    """Evaluate every rule of `config`; pass only if all pass. Missing values: one GateError naming all.

    `intervals` (metrics.json's section) turns on the resolution warnings (:func:`resolution_warning`).
    """
    baselines = baselines or {}
    reasons: list[GateReason] = []
    problems: list[str] = []
    for rule in config.rules:
        before = len(problems)
        try:
            _lookup(metrics, rule.metric, "the measured metrics")
        except GateError as exc:
            problems.append(str(exc))
        try:
            threshold_of(rule, baselines)
        except GateError as exc:
            problems.append(str(exc))
        if len(problems) == before:
            reasons.append(evaluate_rule(rule, metrics, baselines, intervals))
    if problems:
        raise GateError("gate could not be evaluated: " + "; ".join(problems))
    return GateVerdict(passed=all(r.passed for r in reasons), reasons=tuple(reasons))
