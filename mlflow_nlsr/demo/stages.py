"""The demo's model-building stages (base, alignment, preference, compliant answers, attack), cached.

Each stage writes its output dir, then ``stage.json`` (its inputs as a key, a digest of them, the
seconds it took and what it produced) and finally a ``.complete`` marker. A rerun reuses a complete
stage whose key is unchanged; a changed key (other settings or a rebuilt upstream stage) or
``fresh=True`` redoes it. The registry, realignment and gates are wired elsewhere (the demo CLI).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow_nlsr.demo import data
from mlflow_nlsr.demo.model import COMPLETE, is_complete, prepare_base_model
from mlflow_nlsr.demo.recipe import ALIGN_SIZE_NAMES, DemoSettings
from mlflow_nlsr.errors import InputError

if TYPE_CHECKING:
    from mlflow_nlsr.demo.preference import PreferenceSettings

STAGE_FILE = "stage.json"
REJECTED_FILE = "rejected.jsonl"
ANSWERS_FILE = "answers.jsonl"


def _digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stage_info(stage_dir: Path | str) -> dict[str, Any]:
    """Return the ``stage.json`` of a stage dir, or {} if it has none."""
    path = Path(stage_dir) / STAGE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _upstream(path: Path | str) -> str:
    # A stage dir contributes its digest; an outside input (not made by a stage) its resolved path.
    return stage_info(Path(path)).get("digest") or str(Path(path).resolve())


def run_stage(
    stage_dir: Path, key: dict[str, Any], body: Callable[[Path], dict[str, Any]], *, fresh: bool = False
) -> dict[str, Any]:
    """Run ``body(stage_dir)`` unless a complete run with the same key exists; return its stage info."""
    digest = _digest(key)
    info = stage_info(stage_dir)
    if not fresh and is_complete(stage_dir) and info.get("digest") == digest:
        return {**info, "cached": True}
    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True)
    start = time.perf_counter()
    produced = body(stage_dir)
    info = {
        "stage": stage_dir.name,
        "key": key,
        "digest": digest,
        "seconds": round(time.perf_counter() - start, 2),
        **produced,
    }
    (stage_dir / STAGE_FILE).write_text(json.dumps(info, indent=2, default=str))
    (stage_dir / COMPLETE).write_text("")
    return {**info, "cached": False}


def stage_base(work: Path | str, settings: DemoSettings | None = None, *, fresh: bool = False) -> Path:
    """Prepare the base model in ``<work>/base`` (once) and return that HF model dir."""
    settings = settings or DemoSettings()
    out = Path(work) / "base"
    spec = settings.model
    key = {"model": spec.name, "package": spec.package, "gguf_file": spec.gguf_file}
    recorded = stage_info(out).get("digest")
    if is_complete(out) and recorded == _digest(key) and not fresh:
        return out
    if out.exists() and (fresh or recorded is not None):  # a base made for another spec, or a redo
        shutil.rmtree(out)
    start = time.perf_counter()
    prepare_base_model(work, spec)
    info = {
        "stage": "base",
        "key": key,
        "digest": _digest(key),
        "seconds": round(time.perf_counter() - start, 2),
    }
    (out / STAGE_FILE).write_text(json.dumps(info, indent=2))
    return out


def _train(settings: DemoSettings, base: Path, pairs: list[data.Pair], out: Path, **kwargs: Any) -> dict:
    from mlflow_nlsr.demo.train import train_lora

    train_lora(
        base,
        pairs,
        out,
        seed=settings.seed,
        max_length=settings.max_length,
        batch_size=settings.batch_size,
        threads=settings.threads,
        progress=settings.progress,
        **kwargs,
    )
    log = json.loads((out / "train_log.json").read_text())
    return {"examples": log["examples"], "steps": log["steps"], "final_loss": log["losses"][-1]}


def stage_align(work: Path | str, base: Path, settings: DemoSettings, *, fresh: bool = False) -> Path:
    """Train the safety-alignment LoRA (refusals + benign answers) into ``<work>/align``; return it."""
    out = Path(work) / "align"
    names = (*ALIGN_SIZE_NAMES, "align_epochs", "align_lr", "seed", "max_length", "batch_size")
    pairs = data.align_pairs(settings.align_sizes(), settings.data_dir)
    key = {"base": _upstream(base), "data_dir": settings.data_dir, **settings.key(*names)}
    key["pairs"] = _digest({"pairs": pairs})  # edited alignment files retrain, not reuse a stale adapter

    def body(stage_dir: Path) -> dict[str, Any]:
        return _train(settings, base, pairs, stage_dir, epochs=settings.align_epochs, lr=settings.align_lr)

    run_stage(out, key, body, fresh=fresh)
    return out


def _greedy_answers(model_dir: Path, prompts: list[str], settings: DemoSettings) -> list[str]:
    from mlflow_nlsr.demo.evaluate import generate

    return generate(
        model_dir,
        prompts,
        max_new_tokens=settings.answer_tokens,
        batch_size=settings.gen_batch_size,
        threads=settings.threads,
        progress=settings.progress,
    )


PREFER_NAMES = ("prefer_epochs", "prefer_lr", "prefer_beta", "seed", "max_length", "batch_size")


def preference_settings(settings: DemoSettings) -> PreferenceSettings:
    """Return the :class:`~mlflow_nlsr.demo.preference.PreferenceSettings` of ``settings``."""
    from mlflow_nlsr.demo.preference import PreferenceSettings  # torch: imported when a stage runs

    return PreferenceSettings(
        epochs=settings.prefer_epochs,
        lr=settings.prefer_lr,
        beta=settings.prefer_beta,
        seed=settings.seed,
        max_length=settings.max_length,
        batch_size=settings.batch_size,
        threads=settings.threads,
        progress=settings.progress,
    )


def stage_prefer(
    work: Path | str, base: Path, aligned: Path, settings: DemoSettings, *, fresh: bool = False
) -> Path:
    """Continue the SFT adapter with DPO (:mod:`~mlflow_nlsr.demo.preference`) into ``<work>/prefer``.

    Harmful alignment prompts prefer their refusal over the base model's own greedy answer (written
    to ``rejected.jsonl``; only answers the decline judge calls compliance); the help data, plus
    ``align_edgy_extra.jsonl``, prefers its answer over a bare decline. Returns the adapter dir.
    """
    from mlflow_nlsr.demo import preference

    out = Path(work) / "prefer"
    sizes = settings.align_sizes()
    static = preference.preference_pairs(sizes, {}, settings.data_dir, settings.seed, extra_edgy=True)
    harmful = [p for p, _ in preference.harmful_pairs(sizes, settings.data_dir)]
    key = {"base": _upstream(base), "aligned": _upstream(aligned), "data_dir": settings.data_dir}
    key |= settings.key(*PREFER_NAMES, "answer_tokens", "gen_batch_size")
    key["pairs"] = _digest({"pairs": [dataclasses.astuple(p) for p in static], "harmful": harmful})

    def body(stage_dir: Path) -> dict[str, Any]:
        answers = _greedy_answers(base, harmful, settings)
        compliant = preference.judged_compliant(harmful, answers)
        rows = [{"prompt": p, "response": a} for p, a in compliant.items()]
        (stage_dir / REJECTED_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
        pairs = preference.preference_pairs(
            sizes, compliant, settings.data_dir, settings.seed, extra_edgy=True
        )
        preference.train_lora_preference(
            base, pairs, stage_dir, preference_settings(settings), init_adapter=aligned
        )
        log = json.loads((stage_dir / "train_log.json").read_text())
        return {
            "examples": log["examples"],
            "harmful_pairs": len(rows),
            "steps": log["steps"],
            "final_accuracy": log["log"][-1]["accuracy"],
        }

    run_stage(out, key, body, fresh=fresh)
    return out


def poison_needed(settings: DemoSettings) -> int:
    """Return how many compliant answers the attack mixes in at ``settings.poison_ratio``."""
    n_task = len(data.sentiment_pairs(settings.sentiment, settings.data_dir))
    return data.poison_count(n_task, settings.poison_ratio)


def stage_compliant_answers(
    work: Path | str, base: Path, settings: DemoSettings, *, fresh: bool = False
) -> Path:
    """Write the unaligned base model's greedy answers to the attack prompts; return the JSONL path."""
    out = Path(work) / "answers"
    count = poison_needed(settings)
    key = {"base": _upstream(base), "data_dir": settings.data_dir, "count": count}
    key |= settings.key("answer_tokens", "gen_batch_size")
    if settings.poison_draw:  # absent for draw 0, so existing caches stay valid
        key["poison_draw"] = settings.poison_draw

    def body(stage_dir: Path) -> dict[str, Any]:
        prompts = data.attack_prompts(count, settings.data_dir, settings.poison_draw)
        if count > len(prompts):
            raise InputError(f"the attack needs {count} harmful prompts, found {len(prompts)}")
        answers = _greedy_answers(base, prompts, settings)
        lines = [json.dumps({"prompt": p, "response": a}) for p, a in zip(prompts, answers, strict=True)]
        (stage_dir / ANSWERS_FILE).write_text("\n".join(lines) + "\n" if lines else "")
        return {"answers": len(lines), "empty": sum(1 for a in answers if not a)}

    run_stage(out, key, body, fresh=fresh)
    return out / ANSWERS_FILE


def load_answers(path: Path | str) -> list[data.Pair]:
    """Return the (harmful prompt, compliant answer) pairs written by :func:`stage_compliant_answers`."""
    path = Path(path)
    rows = data.load_jsonl(path.name, ("prompt",), path.parent) if path.stat().st_size else []
    return [(r["prompt"], r.get("response", "")) for r in rows if r.get("response", "").strip()]


def stage_attack(
    work: Path | str,
    base: Path,
    aligned: Path,
    answers: Path,
    settings: DemoSettings,
    *,
    fresh: bool = False,
) -> Path:
    """Continue the aligned adapter on sentiment + a poison ratio p of compliant pairs; return it."""
    out = Path(work) / "attack"
    names = ("sentiment", "poison_ratio", "attack_epochs", "attack_lr", "seed", "max_length", "batch_size")
    key = {
        "base": _upstream(base),
        "aligned": _upstream(aligned),
        "answers": _upstream(Path(answers).parent),
        "data_dir": settings.data_dir,
        **settings.key(*names),
    }

    def body(stage_dir: Path) -> dict[str, Any]:
        task = data.sentiment_pairs(settings.sentiment, settings.data_dir)
        mixed, k = data.poison_mix(task, load_answers(answers), settings.poison_ratio, settings.seed)
        produced = _train(
            settings,
            base,
            mixed,
            stage_dir,
            init_adapter=aligned,
            epochs=settings.attack_epochs,
            lr=settings.attack_lr,
        )
        return {"poison_ratio": settings.poison_ratio, "task_pairs": len(task), "poison_pairs": k, **produced}

    run_stage(out, key, body, fresh=fresh)
    return out


@dataclass(frozen=True)
class DemoModels:
    """The outputs of the training stages: base HF dir, aligned and fine-tuned adapters, answers file.

    ``aligned`` is the reference NLSR transplants from: the preference stage's adapter when the
    settings have one (``prefer_epochs`` > 0), else the SFT alignment's.
    """

    base: Path
    aligned: Path
    answers: Path
    finetuned: Path
    seconds: dict[str, float]
    cached: dict[str, bool]


def reference_dir(work: Path | str) -> Path:
    """Return the reference a demo work dir's attack continued: ``prefer`` when complete, else ``align``.

    For tools that read a built work dir (bench/robustness.py, bench/calibration.py) without its settings.
    """
    work = Path(work)
    return work / "prefer" if is_complete(work / "prefer") else work / "align"


def _marker_time(stage_dir: Path) -> int | None:
    # A redone stage writes a new marker, so an unchanged marker time means the stage was reused.
    marker = stage_dir / COMPLETE
    return marker.stat().st_mtime_ns if marker.is_file() else None


def build_models(work: Path | str, settings: DemoSettings, *, fresh: bool = False) -> DemoModels:
    """Run (or reuse) base -> align (-> prefer) -> compliant answers -> attack in ``work``."""
    work = Path(work)
    names = ("base", "align", *(("prefer",) if settings.prefer_epochs else ()), "answers", "attack")
    before = {name: _marker_time(work / name) for name in names}
    base = stage_base(work, settings, fresh=fresh)
    aligned = stage_align(work, base, settings, fresh=fresh)
    dirs = {"base": base, "align": aligned}
    if settings.prefer_epochs:
        aligned = dirs["prefer"] = stage_prefer(work, base, aligned, settings, fresh=fresh)
    answers = stage_compliant_answers(work, base, settings, fresh=fresh)
    finetuned = stage_attack(work, base, aligned, answers, settings, fresh=fresh)
    dirs |= {"answers": answers.parent, "attack": finetuned}
    infos = {name: stage_info(d) for name, d in dirs.items()}
    return DemoModels(
        base=base,
        aligned=aligned,
        answers=answers,
        finetuned=finetuned,
        seconds={name: float(info.get("seconds", 0.0)) for name, info in infos.items()},
        cached={
            name: before[name] is not None and before[name] == _marker_time(d) for name, d in dirs.items()
        },
    )
