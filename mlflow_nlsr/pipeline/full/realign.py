"""Full-weight NLSR streamed from (sharded) safetensors: memory bounded by the largest tensor, not the model.

Inputs are three HF checkpoint dirs (base W_0, aligned W_a, fine-tuned W_t; a PEFT adapter on the base is
accepted for W_a or W_t and merged per tensor). Every realigned linear module (attention and MLP
projections) gets, on dense updates (spec §1.3–1.6):

    ΔW_a = W_a − W_0,  ΔW_t = W_t − W_0,  ΔW_e = extrapolate_delta(ΔW_a)
    M    = safety-critical entries (or rows) of ΔW_e (see scoring.py)
    S_j  = cosine(M⊙ΔW_t, M⊙ΔW_e);  select_modules(S) as in LoRA mode
    W'_t = where(M, W_0 + ΔW_e, W_t) for patched modules, W_t otherwise

Embeddings, norms and lm_head pass through from W_t bit for bit. The paper's D5 correction
W'' = W'_e + Ŵ'_t equals the code's entry replacement here: with no factorisation there are no cross
terms, W_0 + M⊙ΔW_e + (1−M)⊙ΔW_t = where(M, W_0 + ΔW_e, W_t), so both --correction values give one result.

Two passes. Pass 1 reads W_0, W_a, W_t of one module at a time, writes its mask straight into the
output's masks.safetensors (header written first) and the reference values of its masked entries into a
scratch file, and keeps only numbers in RAM. After selection, pass 2 reads W_t once more and streams the
output shards (headers planned up front). Nothing is written before every input check has passed.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import torch

from mlflow_nlsr.core import select_modules
from mlflow_nlsr.core.selection import ModuleSelection
from mlflow_nlsr.errors import ConfigError
from mlflow_nlsr.io.atomic import atomic_output_dir, check_output_free
from mlflow_nlsr.io.hashing import sha256_dir
from mlflow_nlsr.io.safetensors_io import LazyCheckpoint, SafetensorsReader
from mlflow_nlsr.io.sharded_writer import Entry, SafetensorsWriter, ShardedWriter, parse_size
from mlflow_nlsr.io.spill import ValueSpill
from mlflow_nlsr.options import METHODS, RealignOptions
from mlflow_nlsr.pipeline.full.inputs import (
    CheckpointSource,
    Source,
    is_linear_weight,
    natural_key,
    open_sources,
    validate_sources,
)
from mlflow_nlsr.pipeline.full.report import build_full_report, draw_plot, weights_sha256, write_report_files
from mlflow_nlsr.pipeline.full.scoring import RANK_CAP, cosine_at, reference_delta
from mlflow_nlsr.pipeline.full.stats import FullRun, ModuleStats
from mlflow_nlsr.pipeline.loading import dtype_name, resolve_device, resolve_dtype
from mlflow_nlsr.pipeline.result import RealignResult
from mlflow_nlsr.pipeline.scorers import FullScoring, ModuleContext, Scorer, scorer_for

MASKS_NAME = "masks.safetensors"
_WORK = ".nlsr-work"
T = TypeVar("T")
#: non-weight files copied from the fine-tuned input (or the base when it is an adapter)
AUX_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
             "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt", "tokenizer.model",
             "spiece.model", "chat_template.jinja", "chat_template.json")


def _progress(items: list[T], enabled: bool, desc: str) -> Iterable[T]:
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="tensor", leave=False)


def module_pass(key: str, base: Source, aligned: Source, finetuned: Source, options: RealignOptions,
                device: str, subspace: torch.Tensor | None = None, rank_cap: int = RANK_CAP,
                scorer: Scorer | None = None) -> tuple[ModuleStats, torch.Tensor, torch.Tensor]:
    """Pass 1 for one module: its stats, mask [d_out, d_in] and the new values of its masked entries.

    The float32 arithmetic is exactly ``core.extrapolate_delta`` and ``core.transplant_delta`` (same
    operations in the same order), done in place on private copies, so the tensors a source returns are
    never modified.
    """
    w_0, delta_e = reference_delta(key, base, aligned, options, device)
    w_t = finetuned.get(key).to(device)
    delta_t = w_t.to(torch.float32, copy=True).sub_(w_0)
    scorer = scorer or scorer_for(options)
    mask = scorer.full_mask(key, delta_e, ModuleContext(options, subspace, rank_cap))
    index = mask.reshape(-1).nonzero().squeeze(1)  # masked entries in row-major order, found once
    similarity = cosine_at(delta_t, delta_e, index)
    update_sq = float(torch.linalg.vector_norm(delta_t, dtype=torch.float64)) ** 2
    del delta_t
    # the reference W_0 + ΔW_e at the masked entries, cast to W_t's dtype as core.transplant_delta does
    new = w_0.add_(delta_e).reshape(-1).index_select(0, index).to(w_t.dtype)
    old = w_t.reshape(-1).index_select(0, index)
    changed = int(torch.count_nonzero(new != old))
    stats = ModuleStats(key, similarity, index.numel() / max(1, mask.numel()), changed, w_t.numel(),
                        float((new.double() - old.double()).pow_(2).sum()), update_sq)
    return stats, mask.cpu(), new.cpu()


def _aux_source(finetuned: Source, base: Source) -> Path:
    return finetuned.path if isinstance(finetuned, CheckpointSource) else base.path


def copy_aux_files(src: Path, dst: Path, extra: Path | None = None) -> list[str]:
    """Copy config, generation config and tokenizer files from `src` (then `extra` for missing ones)."""
    copied = []
    for name in AUX_FILES:
        for folder in (src, extra):
            if folder is not None and (folder / name).is_file():
                shutil.copy2(folder / name, dst / name)
                copied.append(name)
                break
    return copied


def _subspace_reader(path: Path | None) -> SafetensorsReader | LazyCheckpoint | None:
    if path is None:
        return None
    return LazyCheckpoint(path) if path.is_dir() else SafetensorsReader(path)


def _pass1(sources: tuple[Source, Source, Source], linear: list[str], options: RealignOptions, work: Path,
           masks_path: Path, device: str, progress: bool, subspaces: Path | None,
           scorer: Scorer) -> tuple[list[ModuleStats], ValueSpill]:
    base, aligned, finetuned = sources
    entries = [Entry(k, "BOOL", finetuned.infos[k].shape) for k in linear]
    masks = SafetensorsWriter(masks_path, entries, {"nlsr": "True = safety-critical (transplanted)"})
    spill = ValueSpill(work / "reference_values.bin")
    reader = _subspace_reader(subspaces)
    stats = []
    try:
        for key in _progress(linear, progress, "nlsr pass 1 (masks, similarity)"):
            subspace = reader.get(key) if reader is not None else None
            module, mask, values = module_pass(key, base, aligned, finetuned, options, device, subspace,
                                               scorer=scorer)
            masks.write(key, mask)
            spill.write(key, values)
            stats.append(module)
        masks.finish()
    except BaseException:
        masks.abort()
        spill.close()
        raise
    finally:
        if reader is not None:
            reader.close()
    return stats, spill


def _pass2(finetuned: Source, output: Path, shard_size: int, patched: set[str], masks_path: Path,
           spill: ValueSpill, progress: bool) -> dict[str, str]:
    entries = [Entry(k, finetuned.infos[k].dtype, finetuned.infos[k].shape) for k in finetuned.ordered_keys()]
    writer = ShardedWriter(output, entries, max_shard_size=shard_size)
    masks = SafetensorsReader(masks_path)
    try:
        for key in _progress(writer.order, progress, "nlsr pass 2 (write)"):
            tensor = finetuned.get(key)
            if key in patched:
                tensor = tensor.masked_scatter(masks.get(key), spill.read(key))
            writer.write(key, tensor)
        writer.finish()
        return writer.sha256
    except BaseException:
        writer.abort()
        raise
    finally:
        masks.close()


def _selection(stats: list[ModuleStats], options: RealignOptions
               ) -> tuple[list[ModuleStats], ModuleSelection]:
    ordered = sorted(stats, key=lambda s: natural_key(s.key))
    sims = torch.tensor([s.similarity for s in ordered], dtype=torch.float64)
    selection = select_modules(sims, mode=options.selection, layer_rate=options.layer_rate,
                               epsilon=options.epsilon, tau=options.tau, seed=options.draw_seed)
    return ordered, selection


def run_full(sources: tuple[Source, Source, Source], work_dir: Path, options: RealignOptions, *,
             progress: bool = False, max_shard_size: int | str = "2GB", rank_cap: int = RANK_CAP,
             on_selected: Callable[[list[ModuleStats], ModuleSelection], None] | None = None) -> FullRun:
    """Realign validated, open `sources` into `work_dir` (an empty dir): shards, index, masks, aux files.

    ``on_selected(modules, selection)`` is called between the passes (e.g. to draw the plot meanwhile).
    """
    shard_size = parse_size(max_shard_size)
    device = str(resolve_device(options.device))
    w0, wa, wt = sources
    linear = [k for k in wt.ordered_keys() if is_linear_weight(k, wt.infos[k].shape)]
    work = work_dir / _WORK
    work.mkdir()
    scorer = scorer_for(options)
    evidence = scorer.full_evidence(
        FullScoring(w0, wa, wt, set(linear), options, _aux_source(wt, w0), work, device))
    stats, spill = _pass1(sources, linear, options, work, work_dir / MASKS_NAME, device, progress,
                          evidence.subspaces, scorer)
    try:
        ordered, selection = _selection(stats, options)
        if on_selected is not None:
            on_selected(ordered, selection)
        patched = {s.key for s, p in zip(ordered, selection.patched.tolist(), strict=True) if p}
        hashes = _pass2(wt, work_dir, shard_size, patched, work_dir / MASKS_NAME, spill, progress)
    finally:
        spill.close()
    shutil.rmtree(work, ignore_errors=True)
    files = [*hashes, *copy_aux_files(_aux_source(wt, w0), work_dir, extra=w0.path), MASKS_NAME]
    kinds = {"base": w0.kind, "aligned": wa.kind, "finetuned": wt.kind}
    return FullRun(ordered, selection, files, kinds, evidence.data, hashes)


def realign_full(base: str | Path, aligned: str | Path, finetuned: str | Path, output: str | Path,
                 options: RealignOptions, *, progress: bool = True, overwrite: bool = False,
                 max_shard_size: int | str = "2GB") -> RealignResult:
    """Realign full checkpoints (or adapters on the base) into an HF checkpoint dir at `output`.

    Every input check runs before anything is written; the output is built in a temp dir renamed into
    place at the end (nothing is left on failure). Returns the output path and the report.
    """
    start = time.perf_counter()
    if not METHODS.get(options.method).full_weight:
        full = ", ".join(n for n in METHODS.names() if METHODS.get(n).full_weight)
        raise ConfigError(f"full-weight mode implements --method {full} only; got {options.method!r} "
                          "(the others need LoRA adapters: use --mode lora)")
    output = Path(output)
    check_output_free(output, overwrite)
    shard_size = parse_size(max_shard_size)
    device = str(resolve_device(options.device))
    sources = open_sources(base, aligned, finetuned)
    try:
        validate_sources(*sources)
        named = (("base", base), ("aligned", aligned), ("finetuned", finetuned))
        # the pool closes (waiting for its jobs) before the temp dir is renamed or removed
        with atomic_output_dir(output, overwrite=overwrite) as tmp, ThreadPoolExecutor(max_workers=1) as pool:
            # provenance hashes read every input file once: overlap them with the realignment
            hashing = pool.submit(lambda: {name: sha256_dir(path) for name, path in named})
            plotting: list[Future[Any]] = []

            def plot_meanwhile(modules: list[ModuleStats], selection: ModuleSelection) -> None:
                plotting.append(pool.submit(draw_plot, tmp, modules, selection, options))

            run = run_full(sources, tmp, options, progress=progress, max_shard_size=shard_size,
                           on_selected=plot_meanwhile)
            inputs = hashing.result()
            for job in plotting:
                job.result()
            extra: dict[str, Any] = {"max_shard_size": shard_size, "rank_cap": RANK_CAP, "device": device,
                                     "dtype": dtype_name(resolve_dtype(options.dtype, torch.device(device)))}
            if run.actsvd_data is not None:
                extra["actsvd_data"] = run.actsvd_data
                inputs["calibration"] = run.actsvd_data["sha256"]
            report = build_full_report(options, run, inputs=inputs, extra=extra)
            report["output_sha256"] = weights_sha256(run.weight_hashes)
            report["seconds"] = round(time.perf_counter() - start, 3)
            report = write_report_files(tmp, report, plot=not plotting)
    finally:
        for src in sources:
            src.close()
    return RealignResult(output=output.absolute(), report=report)
