"""``nlsr.yaml``: which registered models are realigned, against which references, and how.

Example::

    defaults:
      alias: safe
      gate_config: null          # null = the shipped default gates (mlflow_nlsr/gates/default_gates.yaml)
      gate_limit: null           # items per task (null = all)
      realign: {scorer: actsvd}
    models:
      - match: "support-bot-*"   # registered-model name or glob
        base_uri: models:/smollm2-base/1
        aligned_uri: models:/smollm2-aligned@safe
        target_name: null        # register realigned versions under another name (default: same name)
        alias: safe
        realign: {selection: all}
        executor: {name: ray, num_gpus: 1}   # run realign + gates on Ray (plugins/mlflow-nlsr-ray)

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
    realign: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    #: where the job's work runs: ``{name: ray, address: auto, num_gpus: 1, …}`` (default: local)
    executor: dict[str, Any] | None = None

    def options(self, **overrides: Any) -> RealignOptions:
        """The realignment options of this rule with `overrides` (None values ignored) applied."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return RealignOptions.from_mapping({**self.realign, **given})


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
        unknown = set(data) - {"defaults", "models"}
        if unknown:
            raise ConfigError(
                f"{source}: unknown top-level key(s) {sorted(unknown)}; expected defaults, models"
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
        return cls(tuple(rules), defaults)

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
