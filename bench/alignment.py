"""Alignment variants of the demo: train each with the demo's own stage, gate it, read its answers.

Each variant is a set of :class:`~mlflow_nlsr.demo.recipe.DemoSettings` overrides (data sizes, epochs,
learning rate). The script trains it with ``stage_align`` into ``<work>/variants/<name>`` (cached like
the demo's stages), runs ``mlflow nlsr gate --suite safety,overrefusal --task nlsr_sentiment --limit N``
on it and prints one JSON line per variant: ASR, over-refusal, sentiment accuracy, training seconds
and steps, and how many sentiment answers were not a label. Read ``gate/samples.jsonl`` yourself
too: the numbers come from the default judge.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python bench/alignment.py --base .nlsr-demo/base v1 v2

Results and the variants tried are in docs/demo.md ("Choosing the alignment").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mlflow_nlsr.demo import data
from mlflow_nlsr.demo.recipe import DemoSettings
from mlflow_nlsr.demo.stages import build_models, stage_align, stage_info

EXTRA = data.ALIGN_EDGY_EXTRA
OLD = {"align_harmful": 84, "align_benign": 84, "align_edgy": 0, "align_instructions": 0}
NEW = {"align_harmful": 84, "align_benign": 84, "align_edgy": None, "align_instructions": None}
#: name -> DemoSettings overrides; "full" and "fast" are the presets as shipped
VARIANTS: dict[str, dict[str, Any]] = {
    "old": {**OLD, "align_epochs": 5, "align_lr": 5e-4},
    "v1": {**NEW, "align_epochs": 3, "align_lr": 5e-4},
    "v2": {**NEW, "align_harmful": 56, "align_epochs": 2, "align_lr": 5e-4},
    # v1's recipe on 36 more edgy-benign answers (figurative, games and sports, homonyms: 119 in all);
    # v1 and v2 were measured on the 83-row align_edgy.jsonl of commit 9767abe
    "v3": {**NEW, "align_epochs": 3, "align_lr": 5e-4},
    # v3's data, a fourth epoch (the next lever docs/demo.md named after v1)
    "v4": {**NEW, "align_epochs": 4, "align_lr": 5e-4},
    # v4's recipe on 48 more edgy-benign answers (mlflow_nlsr/data/align_edgy_extra.jsonl: fiction 14,
    # figurative 8, safe_contexts 8, homonyms 6, 4 each safe_targets / privacy_public / safety_info),
    # aimed at the categories the v3 reference refuses on all 113 over-refusal prompts
    "v5": {**NEW, "align_epochs": 4, "align_lr": 5e-4, "extra_edgy": str(data.data_file(EXTRA))},
    "full": dataclasses.asdict(DemoSettings.full()),
    "fast": dataclasses.asdict(DemoSettings.fast()),
}
# sentiment only from the utility suite: arithmetic and knowledge sit at chance at this scale (issue 14)
SUITES = ("--suite", "safety,overrefusal", "--task", "nlsr_sentiment")


def data_dir_with(extra: Path, work: Path) -> Path:
    """A copy of the shipped demo data whose ``align_edgy.jsonl`` has the rows of `extra` appended."""
    out = work / "data"
    out.mkdir(parents=True, exist_ok=True)
    for file in data.data_file(data.ALIGN_EDGY).parent.glob("*.jsonl"):
        text = file.read_text()
        if file.name == EXTRA:
            continue  # appended to align_edgy.jsonl below, not read on its own
        if file.name == data.ALIGN_EDGY:
            text = text.rstrip("\n") + "\n" + extra.read_text()
        (out / file.name).write_text(text)
    return out


def settings_of(name: str, work: Path) -> DemoSettings:
    overrides = {k: v for k, v in VARIANTS[name].items() if k not in ("model", "progress", "extra_edgy")}
    extra = VARIANTS[name].get("extra_edgy")
    if extra:
        overrides["data_dir"] = str(data_dir_with(Path(extra), work / "variants" / name))
    return dataclasses.replace(DemoSettings(progress=False), **overrides)


def gate(base: Path, adapter: Path, out: Path, limit: int) -> dict[str, Any]:
    if not (out / "metrics.json").is_file():
        mlflow = Path(sys.executable).with_name("mlflow")
        cmd = [str(mlflow), "nlsr", "gate", "--model", str(base), "--adapter", str(adapter),
               *SUITES, *(["--limit", str(limit)] if limit else []), "--batch-size", "16",
               "--output", str(out)]
        subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL)
    return dict(json.loads((out / "metrics.json").read_text())["metrics"])


def sentiment_refusals(samples: Path) -> int:
    rows = [json.loads(line) for line in samples.read_text().splitlines() if line.strip()]
    answers = [str(r.get("response", "")) for r in rows if r.get("task") == "nlsr_sentiment"]
    return sum(1 for a in answers if a.strip().lower().split()[:1] not in (["positive"], ["negative"]))


def run(name: str, base: Path, work: Path, limit: int) -> dict[str, Any]:
    settings = settings_of(name, work)
    start = time.perf_counter()
    adapter = stage_align(work / "variants" / name, base, settings)
    info = stage_info(adapter)
    gate_dir = work / "variants" / name / (f"gate{limit}" if limit else "gate-all")
    metrics = gate(base, adapter, gate_dir, limit)
    samples = gate_dir / "samples.jsonl"
    return {
        "variant": name,
        "settings": {k: v for k, v in VARIANTS[name].items() if k.startswith(("align", "extra"))},
        "examples": info.get("examples"), "steps": info.get("steps"), "train_s": info.get("seconds"),
        "asr": metrics.get("asr"), "refusal_rate": metrics.get("refusal_rate"),
        "sentiment_acc": metrics.get("sentiment_acc"),
        "sentiment_not_a_label": sentiment_refusals(samples) if samples.is_file() else None,
        "gate_items": limit or "all",
        "wall_s": round(time.perf_counter() - start, 1),
        "machine": f"{platform.node()} {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d"),
    }


def copy_stages(name: str, base: Path, work: Path) -> Path:
    """``<work>/variants/<name>/demo-work`` holding copies of the base and the variant's reference."""
    out = work / "variants" / name / "demo-work"
    for stage, source in (("base", base), ("align", work / "variants" / name / "align")):
        if not (out / stage).exists():
            shutil.copytree(source, out / stage)
    return out


def attack_work(name: str, base: Path, work: Path) -> Path:
    """A demo work dir for the variant: its base and alignment, then the full preset's attack on them.

    ``bench/contrast_masks.py --demo-work`` reads it (docs/demo.md, "With the v5 reference").
    """
    out = copy_stages(name, base, work)
    variant = settings_of(name, work)
    names = ("align_epochs", "align_lr", "data_dir", *(n for n in VARIANTS[name] if n.startswith("align_")))
    settings = dataclasses.replace(DemoSettings.full(), **{n: getattr(variant, n) for n in names})
    build_models(out, settings)
    return out


def run_cli(description: str, variants: list[str], run_one: Any, attack_one: Any) -> None:
    """Parse the variant scripts' shared arguments; run (and with --attack, attack) each variant."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("variants", nargs="+", choices=sorted(variants))
    parser.add_argument("--base", type=Path, default=Path(".nlsr-demo/base"))
    parser.add_argument("--work", type=Path, default=Path(".nlsr-demo"))
    parser.add_argument("--limit", type=int, default=50, help="items per task; 0: every item")
    parser.add_argument("--attack", action="store_true",
                        help="also attack each variant (full preset) in <work>/variants/<name>/demo-work")
    args = parser.parse_args()
    for name in args.variants:
        print(json.dumps(run_one(name, args.base, args.work, args.limit)), flush=True)
        if args.attack:
            print(json.dumps({"variant": name, "demo_work": str(attack_one(name, args.base, args.work))}))


def main() -> None:
    run_cli(__doc__.splitlines()[0], list(VARIANTS), run, attack_work)


if __name__ == "__main__":
    main()
