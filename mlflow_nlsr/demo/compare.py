"""The demo's comparison rows (base, official NLSR, SafeLoRA, random control): realigned and gated.

They need nothing from the registry job, so on a machine with two or more cores they run in a second
process (one torch thread each, no oversubscription) while the job runs in the first: on the 2-core
development machine that takes the job's ~6 minutes off the demo's wall time. Outputs are cached
exactly as in the sequential path (:mod:`.variants`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from mlflow_nlsr.demo import variants
from mlflow_nlsr.options import RealignOptions


@dataclass(frozen=True)
class CompareInputs:
    """What the comparisons need: the model dirs, the product default, shared sizes and gate settings."""

    work: Path
    base: Path
    aligned: Path
    finetuned: Path
    realign_block: Mapping[str, Any]
    shared: Mapping[str, Any]
    gate_kwargs: Mapping[str, Any]
    batch_size: int
    threads: int = 1


@dataclass(frozen=True)
class Comparisons:
    """The comparison variants (cached outputs), the gate metrics and gate dirs of base and variants."""

    built: dict[str, variants.Built]
    metrics: dict[str, dict[str, float]]
    gate_dirs: dict[str, Path]
    lines: list[str] = field(default_factory=list)
    cpu_seconds: float = 0.0


def run_comparisons(inputs: CompareInputs, *, progress: bool = False) -> Comparisons:
    """Realign the comparison variants and gate them and the base model (each step cached)."""
    from mlflow_nlsr.demo.train import torch_threads

    lines: list[str] = []
    cpu = time.process_time()
    with torch_threads(inputs.threads):
        built = variants.run_variants(
            inputs.work, inputs.base, inputs.aligned, inputs.finetuned,
            RealignOptions.from_mapping(dict(inputs.realign_block)), shared=inputs.shared,
            progress=progress, echo=lines.append,
        )  # fmt: skip
        base_id = variants.model_identity(inputs.base)
        metrics: dict[str, dict[str, float]] = {}
        gate_dirs: dict[str, Path] = {}
        for role in ("base", *variants.VARIANTS):
            adapter = built[role].path if role in built else None
            key = variants.model_identity(adapter) if adapter is not None else base_id
            out = inputs.work / "gates" / role
            metrics[role], gated = variants.gate_model(
                out, inputs.base, adapter, inputs.gate_kwargs, f"{base_id}+{key}",
                batch_size=inputs.batch_size,
            )  # fmt: skip
            gate_dirs[role] = out
            took = "cached" if gated.cached else f"{gated.seconds:.0f} s"
            lines.append(f"  gates {role}: asr {metrics[role]['asr']:.2f} ({took})")
    return Comparisons(built, metrics, gate_dirs, lines, round(time.process_time() - cpu, 2))


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class Background:
    """Run the comparisons in a second process (``parallel``), else in this one when collected."""

    def __init__(self, inputs: CompareInputs, *, parallel: bool) -> None:
        self.inputs = inputs
        self._pool: Any = None
        self._pending: Any = None
        #: whether a second process computes the comparisons
        self.parallel = parallel
        if parallel:
            self._pool = get_context("spawn").Pool(processes=1)
            self._pending = self._pool.apply_async(run_comparisons, (inputs,))

    def result(self, echo: Callable[[str], None], *, progress: bool) -> Comparisons:
        """Wait for the background result (or compute it here); echo its lines."""
        if self._pending is not None:
            done: Comparisons = self._pending.get()
            self._pool.close()
            self._pool.join()
            self._pool = self._pending = None
        else:
            done = run_comparisons(self.inputs, progress=progress)
        for line in done.lines:
            echo(line)
        return done

    def close(self) -> None:
        """Stop the second process if it still runs (after a failure elsewhere)."""
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = self._pending = None
