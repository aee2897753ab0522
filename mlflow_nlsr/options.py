"""Realignment options: one frozen dataclass, the single source of defaults for library, CLI and jobs.

Defaults follow the measurements in docs/algorithm.md (why each differs from, or keeps, the paper's).
``RealignOptions.official()`` gives the exact official-code configuration (spec §1.7).
Scorers and methods are extension points (:data:`SCORERS`, :data:`METHODS`): their names, validation
and help text come from the registered classes (``pipeline/scorers/``, ``pipeline/methods/``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mlflow_nlsr.errors import ConfigError
from mlflow_nlsr.extensions import ExtensionPoint
from mlflow_nlsr.placement import DEVICE_HELP, DTYPE_HELP, check_device, check_dtype  # noqa: F401 - re-exported

if TYPE_CHECKING:
    from mlflow_nlsr.pipeline.methods.base import Method
    from mlflow_nlsr.pipeline.scorers.base import Scorer

Variant = Literal["official", "paper"]
Selection = Literal["official", "paper", "threshold", "fraction", "all"]
Mode = Literal["auto", "lora", "full"]
Neuron = Literal["entry", "row"]

#: how safety-critical neurons are found (one class per scorer, both modes; entry points in setup.cfg)
SCORERS: ExtensionPoint[Scorer] = ExtensionPoint(
    "mlflow_nlsr.scorers", "scorer", "mlflow_nlsr.pipeline.scorers.base:Scorer"
)
#: what is done with them (NLSR, the SafeLoRA baselines)
METHODS: ExtensionPoint[Method] = ExtensionPoint(
    "mlflow_nlsr.methods", "method", "mlflow_nlsr.pipeline.methods.base:Method"
)
#: the fixed choices (the algorithm's own switches, not extension points)
CHOICES: dict[str, tuple[str, ...]] = {
    "variant": ("official", "paper"),
    "selection": ("official", "paper", "threshold", "fraction", "all"),
    "mode": ("auto", "lora", "full"),
    "neuron": ("entry", "row"),
}
#: option name -> extension point whose names are its choices
EXTENSION_OPTIONS: dict[str, ExtensionPoint[Any]] = {"scorer": SCORERS, "method": METHODS}

HELP: dict[str, str] = {
    "variant": "official: the released code (each LoRA factor x 2*beta, kept rank int(r*sparsity), "
    "per-matrix top-k); paper: the paper's equations ((1+beta)*dW, kept rank r*(1-sparsity), per-row top-k).",
    "selection": "Which modules are patched: official (Bernoulli, P rises with similarity, spec D4), paper "
    "(Bernoulli, least similar most likely), threshold (similarity < tau), fraction (lowest-similarity "
    "fraction layer_rate), all (every module).",
    "sparsity": "P_SR: fraction of entries per factor that are NOT safety-critical (0.8 keeps the top 20%).",
    "beta": "Pre-amplification: paper dW_e=(1+beta)*dW_a; official code multiplies each factor by 2*beta.",
    "layer_rate": "P_L: expected fraction of modules patched (official/paper/fraction selection).",
    "epsilon": "Half-width of the Bernoulli probability range [P_L-eps, P_L+eps].",
    "tau": "Similarity threshold for --selection threshold and the SafeLoRA variants.",
    "seed": "Seed of every random draw (Bernoulli module draw, random scorer, calibration shuffle).",
    "selection_seed": "Seed of the Bernoulli module draw only (official/paper selection) [default: seed]; "
    "changing it re-draws the patched modules without changing the safety-critical neurons.",
    "safelora_layers": "SafeLoRA: project the N lowest-cosine modules (official default 10); 0 = use tau.",
    "calibration_samples": "Number of calibration (prompt, response) pairs used by actsvd.",
    "max_length": "Maximum tokens per calibration sample.",
    "neuron": "Full-weight mode: entry (each weight) or row (output neuron) granularity.",
    "correction": "D5: code (replace the masked entries of A and B, as the official code) or paper "
    "(W_e' + W_t-hat without cross terms; for LoRA a rank-2r adapter). In full-weight mode the two "
    "coincide: dense weights have no cross terms, so both give where(M, W_0 + dW_e, W_t).",
}


def option_help(name: str) -> str:
    """The --help text of option `name` (for scorer and method: built from the registered classes)."""
    if name == "scorer":
        return SCORERS.choices_help("How nlsr finds the safety-critical neurons:")
    if name == "method":
        return METHODS.choices_help("How the fine-tune is realigned:")
    return HELP.get(name, "")


@dataclass(frozen=True)
class RealignOptions:
    """Every knob of one realignment; frozen, hashable, serialisable to the report."""

    method: str = "nlsr"
    variant: Variant = "official"
    scorer: str = "actsvd"
    #: "all", not the official Bernoulli draw: measured on the demo fine-tune (docs/algorithm.md, Defaults)
    selection: Selection = "all"
    mode: Mode = "auto"
    sparsity: float = 0.8
    beta: float = 0.9
    layer_rate: float = 0.5
    epsilon: float = 0.2
    tau: float | None = None
    seed: int = 42
    #: the Bernoulli module draw's own seed (None: `seed`); calibration's seed variants change only this
    selection_seed: int | None = None
    safelora_layers: int = 10
    calibration: str | None = None
    calibration_prompts: str | None = None
    calibration_samples: int = 128
    max_length: int = 256
    neuron: Neuron = "entry"
    correction: Literal["code", "paper"] = "code"
    #: where realignment, ActSVD and gates run (DEVICE_HELP) and in which precision (DTYPE_HELP)
    device: str = "auto"
    dtype: str = "auto"
    force: bool = False
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        check_device(self.device)
        check_dtype(self.dtype)
        for name, point in EXTENSION_OPTIONS.items():
            point.check(getattr(self, name))
        for name in ("sparsity", "layer_rate", "epsilon"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1]; got {value}")
        if self.beta < 0:
            raise ConfigError(f"beta must be >= 0; got {self.beta}")
        if self.selection == "threshold" and self.tau is None:
            raise ConfigError("selection 'threshold' needs tau (e.g. --tau 0.9)")
        if self.selection_seed is not None and self.selection_seed < 0:
            raise ConfigError(
                f"selection_seed must be >= 0 (or unset to use seed); got {self.selection_seed}"
            )
        if self.calibration_samples < 1 or self.max_length < 8:
            raise ConfigError("calibration_samples must be >= 1 and max_length >= 8")

    @classmethod
    def official(cls, **overrides: Any) -> RealignOptions:
        """The official code's configuration (spec §1.7): x1.8 factors, actsvd, official selection."""
        base = {
            "variant": "official",
            "scorer": "actsvd",
            "selection": "official",
            "sparsity": 0.8,
            "beta": 0.9,
            "layer_rate": 0.5,
            "epsilon": 0.2,
            "seed": 42,
        }
        return cls(**{**base, **overrides})

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> RealignOptions:
        """Build from a dict (YAML config); unknown keys are an error that lists the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        clean = {k.replace("-", "_"): v for k, v in (data or {}).items()}
        unknown = sorted(set(clean) - known)
        if unknown:
            raise ConfigError(f"unknown realign option(s) {unknown}; known: {sorted(known - {'extra'})}")
        return cls(**clean)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> RealignOptions:
        """Load options from a YAML file (top level or under a ``realign:`` key), then apply overrides."""
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read realign config {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"realign config {path} must be a mapping; got {type(data).__name__}")
        data = data.get("realign", data)
        return cls.from_mapping({**data, **{k: v for k, v in overrides.items() if v is not None}})

    @property
    def draw_seed(self) -> int:
        """The seed of the Bernoulli module draw: `selection_seed`, else `seed`."""
        return self.seed if self.selection_seed is None else self.selection_seed

    def replace(self, **changes: Any) -> RealignOptions:
        """Return a copy with `changes` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON view, in field order."""
        return dataclasses.asdict(self)

    def sha256(self) -> str:
        """Stable hash of the options (recorded as nlsr.config_sha256)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()
