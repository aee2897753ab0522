"""``nlsr.yaml``: which registered models are realigned, against which references, and how.

Example::

    defaults:
      alias: safe
      gate_config: null          # null = the shipped default gates (mlflow_nlsr/gates/default_gates.yaml)
      gate_limit: null           # items per task (null = all)
      device: auto               # auto | cpu | cuda | cuda:N: realign, ActSVD and gates of the job
      dtype: auto                # auto | bfloat16 | float16 | float32
      realign: {scorer: actsvd}
    models:
      - match: "support-bot-*"   # registered-model name or glob
        base_uri: models:/smollm2-base/1
        aligned_uri: models:/smollm2-aligned@safe
        target_name: null        # register realigned versions under another name (default: same name)
        alias: safe
        promotion: manual        # auto (default) | manual: a person approves (`mlflow nlsr approve`)
        candidate_alias: null    # manual: alias of the version awaiting approval (default <alias>-candidate)
        realign: {selection: all}
        executor: {name: ray, num_gpus: 1}   # run realign + gates on Ray (plugins/mlflow-nlsr-ray)
    notify:                      # outgoing JSON webhooks (service/notify.py)
      - url: https://hooks.example/nlsr
        secret_env: NLSR_NOTIFY_SECRET   # HMAC key read from this env var, never from the file
        events: [awaiting-approval, promoted, rejected, failed]
    retention:                   # disk (service/retention.py; `mlflow nlsr gc`)
      keep_work_dir: false       # true: a job that settles keeps its work dir until the next gc
      failed_days: 7             # failed/cancelled work dirs and unused references are kept this long

Version tags override the file so a version can describe itself: ``nlsr.base_uri``,
``nlsr.aligned_uri`` and ``nlsr.config`` (the name of a rule to use). Pure: no MLflow, no I/O
besides reading the YAML.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow_nlsr.errors import ConfigError
from mlflow_nlsr.options import RealignOptions

PROMOTION_MODES = ("auto", "manual")


@dataclass(frozen=True)
class Rule:
    """How one registered model (or glob) is realigned, gated and promoted."""

    match: str
    base_uri: str | None = None
    aligned_uri: str | None = None
    target_name: str | None = None
    alias: str = "safe"
    gate_config: str | None = None
    gate_limit: int | None = None
    promote: bool = True
    promotion: str = "auto"
    candidate_alias: str | None = None
    realign: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    #: one device and dtype for the whole job (realign, ActSVD, gates); the realign block may not differ
    device: str | None = None
    dtype: str | None = None

    #: where the job's work runs: ``{name: ray, address: auto, num_gpus: 1, …}`` (default: local)
    executor: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.promotion not in PROMOTION_MODES:
            raise ConfigError(
                f"rule {self.match!r}: promotion must be one of {list(PROMOTION_MODES)}, "
                f"got {self.promotion!r}"
            )

    @property
    def candidate(self) -> str:
        """The alias a version awaiting approval carries (``<alias>-candidate`` unless configured)."""
        return self.candidate_alias or f"{self.alias}-candidate"

    def options(self, **overrides: Any) -> RealignOptions:
        """The realignment options of this rule with `overrides` (None values ignored) applied."""
        given = {k: v for k, v in overrides.items() if v is not None}
        placement = {k: v for k, v in (("device", self.device), ("dtype", self.dtype)) if v is not None}
        return RealignOptions.from_mapping({**placement, **self.realign, **given})


NOTIFY_EVENTS = ("awaiting-approval", "promoted", "rejected", "failed")


@dataclass(frozen=True)
class NotifyTarget:
    """One outgoing webhook: where, which job events, and the env var holding its HMAC secret."""

    url: str
    events: tuple[str, ...] = NOTIFY_EVENTS
    secret_env: str | None = None

    @classmethod
    def from_mapping(cls, raw: Any, where: str) -> NotifyTarget:
        """Validate one ``notify:`` entry."""
        if not isinstance(raw, dict) or not str(raw.get("url", "")).startswith(("http://", "https://")):
            raise ConfigError(f"{where}: expected a mapping with an http(s) 'url', got {raw!r}")
        unknown = set(raw) - {"url", "events", "secret_env"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: events, secret_env, url")
        events = tuple(raw.get("events") or NOTIFY_EVENTS)
        bad = set(events) - set(NOTIFY_EVENTS)
        if bad:
            raise ConfigError(f"{where}: unknown event(s) {sorted(bad)}; known: {list(NOTIFY_EVENTS)}")
        return cls(str(raw["url"]), events, raw.get("secret_env"))


@dataclass(frozen=True)
class Retention:
    """What a worker keeps on disk: settled jobs' work dirs, failed ones for how long (``retention:``)."""

    keep_work_dir: bool = False
    failed_days: float = 7.0

    @classmethod
    def from_mapping(cls, raw: Any, where: str) -> Retention:
        """Validate the ``retention:`` block."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a mapping, got {raw!r}")
        unknown = set(raw) - {"keep_work_dir", "failed_days"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: failed_days, keep_work_dir")
        keep, days = raw.get("keep_work_dir", False), raw.get("failed_days", 7.0)
        if not isinstance(keep, bool):
            raise ConfigError(f"{where}: keep_work_dir must be true or false, got {keep!r}")
        if isinstance(days, bool) or not isinstance(days, (int, float)) or days < 0:
            raise ConfigError(f"{where}: failed_days must be a number of days >= 0, got {days!r}")
        return cls(keep, float(days))


@dataclass(frozen=True)
class Resolved:
    """A rule applied to one version: the references are known."""

    rule: Rule
    base_uri: str
    aligned_uri: str


@dataclass(frozen=True)
class Rules:
    """All rules of one ``nlsr.yaml`` (first match wins)."""

    rules: tuple[Rule, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)
    notify: tuple[NotifyTarget, ...] = ()
    retention: Retention = Retention()

    @classmethod
    def load(cls, path: str | Path | None) -> Rules:
        """Read ``nlsr.yaml``; ``None`` gives an empty rule set (tags must then describe each version)."""
        if path is None:
            return cls()
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read nlsr config {path}: {exc}") from exc
        return cls.from_mapping(data, source=str(path))

    @classmethod
    def from_mapping(cls, data: dict[str, Any], source: str = "<dict>") -> Rules:
        """Validate a parsed ``nlsr.yaml`` mapping."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping with 'models:', got {type(data).__name__}")
        unknown = set(data) - {"defaults", "models", "notify", "retention"}
        if unknown:
            raise ConfigError(
                f"{source}: unknown top-level key(s) {sorted(unknown)}; "
                "expected defaults, models, notify, retention"
            )
        notify = tuple(
            NotifyTarget.from_mapping(raw, f"{source}: notify[{i}]")
            for i, raw in enumerate(data.get("notify") or [])
        )
        defaults = data.get("defaults") or {}
        rules = []
        for i, raw in enumerate(data.get("models") or []):
            if not isinstance(raw, dict) or "match" not in raw:
                raise ConfigError(f"{source}: models[{i}] must be a mapping with a 'match' key; got {raw!r}")
            merged = {**defaults, **raw, "realign": {**defaults.get("realign", {}), **raw.get("realign", {})}}
            known = set(Rule.__dataclass_fields__)
            bad = set(merged) - known
            if bad:
                raise ConfigError(
                    f"{source}: models[{i}] has unknown key(s) {sorted(bad)}; known: {sorted(known)}"
                )
            rule = Rule(**merged)
            rule.options()  # validate the realign block now, not at job time
            rules.append(rule)
        retention = Retention.from_mapping(data.get("retention") or {}, f"{source}: retention")
        return cls(tuple(rules), defaults, notify, retention)

    def find(self, model_name: str, config_name: str | None = None) -> Rule | None:
        """The first rule whose glob matches `model_name` (or whose ``name`` equals `config_name`)."""
        if config_name:
            for rule in self.rules:
                if rule.name == config_name or rule.match == config_name:
                    return rule
            raise ConfigError(
                f"version tag nlsr.config={config_name!r} names no rule; rules: "
                f"{[r.name or r.match for r in self.rules]}"
            )
        for rule in self.rules:
            if fnmatch.fnmatchcase(model_name, rule.match):
                return rule
        return None

    def resolve(self, model_name: str, tags: dict[str, str]) -> Resolved | None:
        """Apply tags over the matching rule; None when nothing says how to realign this version."""
        rule = self.find(model_name, tags.get("nlsr.config"))
        if rule is None:
            if "nlsr.base_uri" not in tags or "nlsr.aligned_uri" not in tags:
                return None
            rule = Rule(
                match=model_name,
                **{k: v for k, v in self.defaults.items() if k != "realign"},
                realign=dict(self.defaults.get("realign", {})),
            )
        base = tags.get("nlsr.base_uri") or rule.base_uri
        aligned = tags.get("nlsr.aligned_uri") or rule.aligned_uri
        if not base or not aligned:
            missing = [n for n, v in (("base_uri", base), ("aligned_uri", aligned)) if not v]
            raise ConfigError(
                f"rule {rule.match!r} for {model_name!r} lacks {missing}; set them in nlsr.yaml "
                "or as version tags nlsr.base_uri / nlsr.aligned_uri"
            )
        return Resolved(rule, base, aligned)
