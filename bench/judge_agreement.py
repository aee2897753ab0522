"""How well each judge agrees with a person reading the answers: writes bench/results/judge_agreement.md.

The labelled set is ``mlflow_nlsr/gates/judge_data/labelled_responses.jsonl`` (responses of the demo's
seven models to safety and over-refusal prompts, labelled by reading them; its README says how). For each
judge (``keyword``, ``decline``, ``semantic``) the script prints accuracy, Cohen's kappa and the confusion
matrix against the reader's three-way class, on all items and on the held-out test split (prompts the
semantic head never saw), plus per model the ASR (compliance share of safety answers) and over-refusal
(refusal share of benign answers) each judge reports next to the reader's, with 95 % Wilson intervals.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python bench/judge_agreement.py            # measure, write the .md
    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python bench/judge_agreement.py --train    # refit the semantic head
    python bench/judge_agreement.py --collect .nlsr-demo/gates --per-task 22 --out FILE  # to label

``hf-classifier`` is not measured: it needs a judge model, and none ships offline.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

from mlflow_nlsr.gates import agreement as ag
from mlflow_nlsr.gates.judges import COMPLIANCE, LABELS, REFUSAL, load_judge
from mlflow_nlsr.gates.stats import wilson_interval

JUDGES = ("keyword", "decline", "semantic")
RESULTS = Path(__file__).resolve().parent / "results" / "judge_agreement.md"
#: which gate-output directory holds which demo model
ROLE_DIRS = {"base": "base", "aligned": "aligned", "finetuned": "finetuned", "realigned": "realigned",
             "official": "official", "safelora": "safelora", "random": "random_control"}  # fmt: skip


def _suite_prompts() -> dict[str, str]:
    """Return ``{item id: plain prompt}`` of the safety and over-refusal suites."""
    from mlflow_nlsr.gates.suites import data_dir

    prompts = {}
    for name in ("harmful.jsonl", "overrefusal.jsonl"):
        for line in (data_dir() / name).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            prompts[row["id"]] = row["prompt"]
    return prompts


def collect(root: Path, per_task: int, out: Path) -> None:
    """Write unlabelled candidates: per model, the first `per_task` items of each task in gate order.

    The gate's order is stratified (round-robin over categories), so the first items cover every
    category, and every model's gate ran the same items in the same order.
    """
    prompts = _suite_prompts()
    with out.open("w", encoding="utf-8") as f:
        for model, folder in ROLE_DIRS.items():
            path = root / folder / "samples.jsonl"
            if not path.is_file():
                continue
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
            for task in ag.TASKS:
                chosen = [r for r in rows if r["task"] == f"nlsr_{task}"][:per_task]
                for k, row in enumerate(chosen):
                    item = {"id": f"{model}-{task}-{k:03d}", "model": model, "task": task,
                            "prompt": prompts[row["id"]], "response": row["response"], "label": "",
                            "note": ""}  # fmt: skip
                    f.write(json.dumps(item, ensure_ascii=False) + "\n")


def train(rows: list[dict[str, Any]]) -> None:
    """Fit the semantic judge's head on the train split and write its safetensors file."""
    import torch
    from safetensors.torch import save_file

    from mlflow_nlsr.gates import semantic_judge as sj

    rows = [r for r in rows if ag.split_of(r["prompt"]) == "train"]
    embed = sj.Embedder(sj.default_model_dir())
    x = sj.features(embed, [r["prompt"] for r in rows], [r["response"] for r in rows])
    y = torch.tensor([LABELS.index(ag.judge_label(r)) for r in rows])
    head = sj.train_head(x, y)
    meta = {"features": sj.FEATURE_VERSION, "labels": json.dumps(list(LABELS)), "train_items": str(len(rows)),
            "source": "judge_data/labelled_responses.jsonl, split_of(prompt) == 'train'"}  # fmt: skip
    sj.WEIGHTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in head.items()}, str(sj.WEIGHTS_FILE), metadata=meta)
    print(f"wrote {sj.WEIGHTS_FILE} ({len(rows)} training items)")


def confusion_table(result: ag.Agreement) -> list[str]:
    lines = ["| reader \\ judge | " + " | ".join(LABELS) + " |", "|---|" + "---|" * len(LABELS)]
    lines += [f"| {t} | " + " | ".join(str(result.confusion[t][p]) for p in LABELS) + " |" for t in LABELS]
    return lines


def rate(values: list[bool]) -> str:
    iv = wilson_interval(sum(values), len(values))
    return f"{100 * sum(values) / len(values):.0f} % [{100 * iv.low:.0f}, {100 * iv.high:.0f}]"


def per_model_rates(rows: list[dict[str, Any]], predicted: dict[str, list[str]]) -> list[str]:
    """Rows: model, then reader vs each judge for ASR (safety) and over-refusal (benign)."""
    head = "| model | task | n | reader | " + " | ".join(JUDGES) + " |"
    lines = [head, "|---|---|---|---|" + "---|" * len(JUDGES)]
    for model in ag.MODELS:
        for task, cls in (("safety", COMPLIANCE), ("overrefusal", REFUSAL)):
            idx = [i for i, r in enumerate(rows) if r["model"] == model and r["task"] == task]
            if not idx:
                continue
            truth = rate([ag.judge_label(rows[i]) == cls for i in idx])
            cells = [rate([predicted[j][i] == cls for i in idx]) for j in JUDGES]
            name = "ASR" if task == "safety" else "over-refusal"
            lines.append(f"| {model} | {name} | {len(idx)} | {truth} | " + " | ".join(cells) + " |")
    return lines


def measure(rows: list[dict[str, Any]]) -> str:
    prompts, responses = [r["prompt"] for r in rows], [r["response"] for r in rows]
    truth = [ag.judge_label(r) for r in rows]
    test = [i for i, r in enumerate(rows) if ag.split_of(r["prompt"]) == "test"]
    predicted, seconds = {}, {}
    for name in JUDGES:
        start = time.perf_counter()
        predicted[name] = load_judge(name).classify_batch(prompts, responses)
        seconds[name] = time.perf_counter() - start
    counts = {lab: sum(r["label"] == lab for r in rows) for lab in ag.READER_LABELS}
    out = [
        "# Judge agreement with a human reader", "",
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()} {platform.processor() or ''} CPU, "
        f"`python bench/judge_agreement.py`. {len(rows)} labelled responses ({len(test)} in the test split); "
        f"reader labels: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + ".", "",
        "| judge | accuracy (all) | kappa (all) | accuracy (test) | kappa (test) | seconds (load + all) |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    results = {}
    for name in JUDGES:
        every = ag.agreement(truth, predicted[name])
        held = ag.agreement([truth[i] for i in test], [predicted[name][i] for i in test])
        results[name] = (every, held)
        out.append(f"| {name} | {every.accuracy:.3f} | {every.kappa:.3f} | {held.accuracy:.3f} | "
                   f"{held.kappa:.3f} | {seconds[name]:.1f} |")  # fmt: skip
    for name in JUDGES:
        out += ["", f"## `{name}`: confusion on all {len(rows)} items (rows: reader, columns: judge)", ""]
        out += confusion_table(results[name][0])
    out += ["", "## Per model: reader vs judges (95 % Wilson intervals)", ""]
    out += per_model_rates(rows, predicted)
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", action="store_true", help="refit the semantic head on the train split")
    parser.add_argument("--collect", type=Path, help="folder of gate outputs, one per model")
    parser.add_argument("--per-task", type=int, default=22)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.collect:
        collect(args.collect, args.per_task, args.out)
        return
    rows = ag.load_labelled()
    if args.train:
        train(rows)
        return
    text = measure(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
