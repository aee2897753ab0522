"""The demo's comparisons on the job's inputs: official NLSR, SafeLoRA and the random-neuron control.

Each variant is realigned with :func:`mlflow_nlsr.pipeline.realign` and gated with
:func:`mlflow_nlsr.gates.run_gates` under the same gate settings as the job; every output is cached
under ``<work>`` with the digest of its inputs, so a rerun on unchanged inputs reuses it. Also writes
each model as a merged Hugging Face dir (adapter folded into the base, ``merge_and_unload``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow_nlsr.io.hashing import sha256_dir
from mlflow_nlsr.options import RealignOptions

KEY_FILE = "demo_key.json"
ROLES = ("base", "aligned", "finetuned", "realigned", "official", "safelora", "random_control")
VARIANTS = ("official", "safelora", "random_control")


def variant_options(default: RealignOptions, **shared: Any) -> dict[str, RealignOptions]:
    """Return the comparison configurations for product default ``default`` (``shared``: e.g. sizes)."""
    return {
        "official": RealignOptions.official(**shared),
        "safelora": RealignOptions(method="safelora", **shared),
        # the control: random entries at the product default's budget (same selection and sparsity)
        "random_control": default.replace(scorer="random"),
    }


def digest(data: Mapping[str, Any]) -> str:
    """Return a short sha256 of ``data`` as canonical JSON."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _cached(out: Path, key: Mapping[str, Any]) -> bool:
    path = out / KEY_FILE
    return path.is_file() and json.loads(path.read_text()).get("digest") == digest(key)


def _mark(out: Path, key: Mapping[str, Any], seconds: float) -> None:
    info = {"digest": digest(key), "key": key, "seconds": round(seconds, 2)}
    (out / KEY_FILE).write_text(json.dumps(info, indent=2, default=str))


@dataclass(frozen=True)
class Built:
    """One cached output: its dir, the seconds it took when built, and whether this run reused it."""

    path: Path
    seconds: float
    cached: bool


def _recorded_seconds(out: Path) -> float:
    return float(json.loads((out / KEY_FILE).read_text()).get("seconds", 0.0))


def realign_variant(
    out: Path,
    base: Path,
    aligned: Path,
    finetuned: Path,
    options: RealignOptions,
    inputs_key: Mapping[str, Any],
    *,
    progress: bool = False,
    projection_cache: Any = None,
) -> Built:
    """Realign ``finetuned`` into ``out`` with ``options`` unless a run on the same inputs is there."""
    from mlflow_nlsr.pipeline import realign

    key = {"inputs": dict(inputs_key), "options": options.sha256()}
    if _cached(out, key) and (out / "nlsr_report.json").is_file():
        return Built(out, _recorded_seconds(out), True)
    start = time.perf_counter()
    realign(
        base, aligned, finetuned, out, options, overwrite=True, progress=progress,
        projection_cache=projection_cache,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    _mark(out, key, seconds)
    return Built(out, round(seconds, 2), False)


def gate_model(
    out: Path,
    model_dir: Path,
    adapter: Path | None,
    gate_kwargs: Mapping[str, Any],
    model_key: str,
    *,
    batch_size: int = 8,
) -> tuple[dict[str, float], Built]:
    """Run the gates on ``model_dir`` (+ ``adapter``) into ``out`` (cached by model and settings)."""
    from mlflow_nlsr.gates import run_gates

    key = {"model": model_key, "gates": dict(gate_kwargs), "batch_size": batch_size}
    metrics_file = out / "metrics.json"
    if _cached(out, key) and metrics_file.is_file():
        metrics = dict(json.loads(metrics_file.read_text())["metrics"])
        return metrics, Built(out, _recorded_seconds(out), True)
    if out.exists():
        shutil.rmtree(out)
    start = time.perf_counter()
    run = run_gates(model_dir, adapter=adapter, output_dir=out, batch_size=batch_size, **gate_kwargs)
    seconds = time.perf_counter() - start
    _mark(out, key, seconds)
    return dict(run.metrics), Built(out, round(seconds, 2), False)


def merge_adapter(base: Path, adapter: Path, out: Path) -> Built:
    """Write ``base`` with ``adapter`` merged in (``merge_and_unload``) as an HF dir at ``out``, cached."""
    key = {"base": _identity(base), "adapter": sha256_dir(adapter)}
    if _cached(out, key) and (out / "config.json").is_file():
        return Built(out, _recorded_seconds(out), True)
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.save_pretrained(str(tmp), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(tmp))
    seconds = time.perf_counter() - start
    _mark(tmp, key, seconds)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return Built(out, round(seconds, 2), False)


def _identity(path: Path) -> str:
    # A demo stage dir names its inputs by digest (cheap); any other dir is hashed.
    info = path / "stage.json"
    if info.is_file():
        recorded = json.loads(info.read_text()).get("digest")
        if recorded:
            return f"stage:{recorded}"
    return sha256_dir(path)


def model_identity(path: Path) -> str:
    """Return a cache identity for a model dir: its stage digest if a demo stage made it, else its hash."""
    return _identity(path)


def run_variants(
    work: Path,
    base: Path,
    aligned: Path,
    finetuned: Path,
    default: RealignOptions,
    *,
    shared: Mapping[str, Any] | None = None,
    progress: bool,
    echo: Callable[[str], None],
) -> dict[str, Built]:
    """Realign the comparison variants (cached) under ``<work>/variants``; return them by role."""
    inputs_key = {r: model_identity(p) for r, p in (("base", base), ("aligned", aligned), ("ft", finetuned))}
    built = {}
    for role, options in variant_options(default, **dict(shared or {})).items():
        built[role] = realign_variant(
            work / "variants" / role, base, aligned, finetuned, options, inputs_key, progress=progress
        )
        state = "cached" if built[role].cached else f"{built[role].seconds:.0f} s"
        echo(f"  {role}: {options.method} scorer={options.scorer} selection={options.selection} ({state})")
    return built
