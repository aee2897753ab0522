"""Preference-trained references (DPO + NLL on chosen) for the demo: train, gate, print one JSON line.

Issue 14 item 5 asks for a reference that refuses harmful requests (ASR ≤ 10 %) but helps with
edgy-benign ones (over-refusal ≤ 15 %); five SFT recipes (``bench/alignment.py``) stayed at 16–21 %.
Each variant here trains :func:`mlflow_nlsr.demo.preference.train_lora_preference` on v5's data
(the shipped alignment files plus ``align_edgy_extra.jsonl``): harmful prompts prefer the
shipped refusal over the unaligned base model's own greedy answer, every other prompt prefers the
shipped answer over a bare decline. ``init`` names the SFT variant the LoRA continues (and DPO's
reference); none starts from the base. Gated like ``bench/alignment.py`` (same suites and judge).

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python bench/preference_alignment.py --limit 0 p1

Results: docs/demo.md ("Choosing the alignment"), bench/results/alignment-variants.jsonl.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from alignment import copy_stages, gate, run_cli, sentiment_refusals, settings_of  # noqa: E402

from mlflow_nlsr.demo.evaluate import generate  # noqa: E402
from mlflow_nlsr.demo.model import COMPLETE, is_complete  # noqa: E402
from mlflow_nlsr.demo.preference import (  # noqa: E402
    PreferenceSettings,
    harmful_pairs,
    judged_compliant,
    preference_pairs,
    train_lora_preference,
)
from mlflow_nlsr.demo.recipe import DemoSettings  # noqa: E402
from mlflow_nlsr.demo.stages import stage_align, stage_attack, stage_compliant_answers  # noqa: E402

#: name -> (data of this bench/alignment.py variant, SFT variant to continue or None, settings)
VARIANTS: dict[str, tuple[str, str | None, dict[str, Any]]] = {
    # from the base: DPO + NLL on chosen does SFT's job and the preference's at once
    "p1": ("v5", None, {"epochs": 3, "lr": 5e-4, "beta": 0.1}),
    # SFT first (the demo's v3 reference), then DPO on top, v3 as DPO's reference; the full preset's
    # reference since 2026-12-08 (demo/stages.py stage_prefer trains the same pairs with the same settings)
    "p2": ("v5", "v3", {"epochs": 2, "lr": 2e-4, "beta": 0.1}),
}


def compliant_answers(base: Path, prompts: list[str], out: Path) -> dict[str, str]:
    """The base model's greedy answers that the decline judge calls compliance (cached in ``out``)."""
    if not out.is_file():
        answers = generate(base, prompts, max_new_tokens=64, batch_size=16)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            "".join(
                json.dumps({"prompt": p, "response": a}) + "\n" for p, a in zip(prompts, answers, strict=True)
            )
        )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return judged_compliant([r["prompt"] for r in rows], [r["response"] for r in rows])


def run(name: str, base: Path, work: Path, limit: int) -> dict[str, Any]:
    data_variant, init, overrides = VARIANTS[name]
    demo = settings_of(data_variant, work)
    root = work / "variants" / name
    sizes = demo.align_sizes()
    harmful_prompts = [p for p, _ in harmful_pairs(sizes, demo.data_dir)]
    compliant = compliant_answers(base, harmful_prompts, work / "variants" / "base-harmful-answers.jsonl")
    pairs = preference_pairs(sizes, compliant, demo.data_dir, seed=demo.seed)
    settings = PreferenceSettings(**overrides, progress=False)
    adapter = root / "align"
    start = time.perf_counter()
    if not (adapter / "train_log.json").is_file():
        init_dir = stage_align(work / "variants" / init, base, settings_of(init, work)) if init else None
        train_lora_preference(base, pairs, adapter, settings, init_adapter=init_dir)
    log = json.loads((adapter / "train_log.json").read_text())
    gate_dir = root / (f"gate{limit}" if limit else "gate-all")
    metrics = gate(base, adapter, gate_dir, limit)
    return {
        "variant": name, "data": data_variant, "init": init, "settings": dataclasses.asdict(settings),
        "pairs": len(pairs), "harmful_pairs": sum(1 for p in pairs if p.prompt in compliant),
        "steps": log["steps"], "train_s": log["seconds"], "final_accuracy": log["log"][-1]["accuracy"],
        "asr": metrics.get("asr"), "refusal_rate": metrics.get("refusal_rate"),
        "sentiment_acc": metrics.get("sentiment_acc"),
        "sentiment_not_a_label": sentiment_refusals(gate_dir / "samples.jsonl"),
        "gate_items": limit or "all", "wall_s": round(time.perf_counter() - start, 1),
        "machine": f"{platform.node()} {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d"),
    }  # fmt: skip


def mark_reference(align: Path, name: str) -> None:
    """Mark the copied reference a complete ``align`` stage, so bench/robustness.py accepts the dir."""
    if not is_complete(align):
        info = {
            "stage": "align",
            "key": {
                "preference_variant": name,
                **dict(zip(("data", "init"), VARIANTS[name][:2], strict=True)),
            },
        }
        (align / "stage.json").write_text(json.dumps(info, indent=2))
        (align / COMPLETE).write_text("")


def attack_work(name: str, base: Path, work: Path) -> Path:
    """A demo work dir for the variant: its base and reference, then the full preset's attack on them.

    ``bench/robustness.py --demo-work <dir> --ratios 0.1 --draws 0`` realigns, gates and decides.
    """
    out = copy_stages(name, base, work)
    mark_reference(out / "align", name)
    settings = dataclasses.replace(DemoSettings.full(), progress=False)
    answers = stage_compliant_answers(out, out / "base", settings)
    stage_attack(out, out / "base", out / "align", answers, settings)
    return out


def main() -> None:
    run_cli(__doc__.splitlines()[0], list(VARIANTS), run, attack_work)


if __name__ == "__main__":
    main()
