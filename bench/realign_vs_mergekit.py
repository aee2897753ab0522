#!/usr/bin/env python
"""Full-weight NLSR realignment vs a mergekit linear merge of the same three checkpoints.

Creates synthetic sharded bf16 Llama checkpoints (base, aligned, fine-tuned) of a given size, runs
``mlflow nlsr realign --mode full --scorer magnitude`` (``--scorer`` repeatable: every scorer is measured
against the same memory bound; ``actsvd`` runs the shipped calibration set through the reference model,
so the sets carry a byte-level test tokenizer) and ``mergekit-yaml`` (linear merge of the three,
weights 1, 0.5, -0.5, no normalisation) as subprocesses, and measures wall time and peak RSS of each
process tree (psutil polling every 20 ms). A memory-vs-depth check realigns two checkpoints of the same
width and different depth: peak RSS must not grow with the number of layers.

mergekit is a bench-only extra: it is installed into bench/out/venv-mergekit (``--setup-mergekit``), a
venv that reuses the project venv's torch/transformers through a .pth file and adds mergekit with
``pip install --no-deps`` plus its two missing small dependencies (on first use; ``--no-setup-mergekit``
skips it; ``--skip-mergekit`` does not run it at all). Without it the script still runs ours and reports
mergekit as unavailable, with the reason.

    .venv/bin/python bench/realign_vs_mergekit.py --size 0.5GB
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out"
MK_VENV = OUT / "venv-mergekit"
MERGEKIT_PIP = ["mergekit==0.1.5", "immutables>=0.21,<1", "sentencepiece"]
WIDTH = {"hidden": 1024, "intermediate": 2816, "heads": 16, "kv_heads": 4, "vocab": 32000}
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
       "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
       "HF_HUB_DISABLE_TELEMETRY": "1"}


def shapes(layers: int, w: dict[str, int]) -> list[tuple[str, tuple[int, ...]]]:
    """Tensor names and shapes of a Llama checkpoint in HF storage order."""
    h, i, hd = w["hidden"], w["intermediate"], w["hidden"] // w["heads"]
    kv = w["kv_heads"] * hd
    out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (w["vocab"], h))]
    for n in range(layers):
        p = f"model.layers.{n}."
        out += [(p + "input_layernorm.weight", (h,)), (p + "self_attn.q_proj.weight", (h, h)),
                (p + "self_attn.k_proj.weight", (kv, h)), (p + "self_attn.v_proj.weight", (kv, h)),
                (p + "self_attn.o_proj.weight", (h, h)), (p + "post_attention_layernorm.weight", (h,)),
                (p + "mlp.gate_proj.weight", (i, h)), (p + "mlp.up_proj.weight", (i, h)),
                (p + "mlp.down_proj.weight", (h, i))]
    return out + [("model.norm.weight", (h,)), ("lm_head.weight", (w["vocab"], h))]


def layers_for(size_bytes: int, w: dict[str, int]) -> int:
    """Number of layers that makes one bf16 checkpoint about `size_bytes`."""
    fixed = sum(math.prod(s) for _, s in shapes(0, w))
    per_layer = sum(math.prod(s) for _, s in shapes(1, w)) - fixed
    return max(1, round((size_bytes / 2 - fixed) / per_layer))


def _config(layers: int, w: dict[str, int]) -> dict[str, object]:
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": w["hidden"],
            "intermediate_size": w["intermediate"], "num_hidden_layers": layers,
            "num_attention_heads": w["heads"], "num_key_value_heads": w["kv_heads"], "vocab_size": w["vocab"],
            "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
            "hidden_act": "silu",
            "tie_word_embeddings": False, "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2}


def make_set(root: Path, layers: int, shard_bytes: int, w: dict[str, int] = WIDTH) -> dict[str, Path]:
    """Write base/aligned/finetuned bf16 checkpoints (aligned = base + noise, finetuned = aligned + noise)."""
    import torch

    from mlflow_nlsr.io import Entry, ShardedWriter

    dirs = {name: root / name for name in ("base", "aligned", "finetuned")}
    stamp = root / "complete.json"
    spec = {"layers": layers, "shard_bytes": shard_bytes, **w}
    if stamp.is_file() and json.loads(stamp.read_text()) == spec:
        return dirs
    shutil.rmtree(root, ignore_errors=True)
    entries = [Entry(k, "BF16", s) for k, s in shapes(layers, w)]
    writers = {}
    for name, path in dirs.items():
        path.mkdir(parents=True)
        (path / "config.json").write_text(json.dumps(_config(layers, w), indent=2))
        writers[name] = ShardedWriter(path, entries, max_shard_size=shard_bytes)
    gen = torch.Generator().manual_seed(0)
    for key, shape in shapes(layers, w):
        base = torch.randn(shape, generator=gen) * 0.02 + (1.0 if key.endswith("norm.weight") else 0.0)
        aligned = base + torch.randn(shape, generator=gen) * 0.002
        finetuned = aligned + torch.randn(shape, generator=gen) * 0.002
        for name, tensor in (("base", base), ("aligned", aligned), ("finetuned", finetuned)):
            writers[name].write(key, tensor.to(torch.bfloat16))
    for writer in writers.values():
        writer.finish()
    from tests.factories import make_tokenizer

    for path in dirs.values():  # the actsvd scorer tokenizes its calibration set with the model's tokenizer
        make_tokenizer().save_pretrained(path)
    stamp.write_text(json.dumps(spec))
    return dirs


def measure(cmd: list[str], log: Path) -> dict[str, object]:
    """Run `cmd`; wall seconds and peak RSS (MB) summed over the process tree, polled every 20 ms."""
    import psutil

    env = {**os.environ, **ENV}
    start = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        root = psutil.Process(proc.pid)
        peak = 0
        while proc.poll() is None:
            try:
                procs = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.02)
    seconds = time.perf_counter() - start
    result: dict[str, object] = {"seconds": round(seconds, 2), "peak_rss_mb": round(peak / 2**20, 1),
                                 "returncode": proc.returncode}
    if proc.returncode != 0:
        result["log_tail"] = log.read_text()[-2000:]
    return result


def ensure_mergekit(setup: bool) -> tuple[Path | None, str]:
    """Path of mergekit-yaml in the bench venv (creating it when `setup`), or None and the reason."""
    exe = MK_VENV / "bin" / "mergekit-yaml"
    if exe.is_file():
        return exe, "ok"
    if not setup:
        return None, f"mergekit not installed in {MK_VENV}; rerun with --setup-mergekit"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(MK_VENV)], check=True, capture_output=True)
        site = next((MK_VENV / "lib").glob("python*/site-packages"))
        (site / "_project_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        subprocess.run([str(MK_VENV / "bin" / "pip"), "install", "-q", "--no-deps", *MERGEKIT_PIP],
                       check=True, capture_output=True, text=True, timeout=600)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, StopIteration, OSError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        shutil.rmtree(MK_VENV, ignore_errors=True)
        return None, f"cannot install mergekit into {MK_VENV}: {str(detail).strip()[-500:]}"
    return (exe, "ok") if exe.is_file() else (None, "mergekit-yaml missing after install")


def run_ours(models: dict[str, Path], out: Path, log: Path, scorer: str = "magnitude",
             selection: str | None = None) -> dict[str, object]:
    """Time `mlflow nlsr realign --mode full --scorer <scorer>` (the CLI, as a user runs it)."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "mlflow_nlsr.cli", "realign", "--base", str(models["base"]),
           "--aligned", str(models["aligned"]), "--finetuned", str(models["finetuned"]), "--output", str(out),
           "--mode", "full", "--scorer", scorer, "--no-progress"]
    if selection:
        cmd += ["--selection", selection]
    return measure(cmd, log)


def run_mergekit(exe: Path, models: dict[str, Path], out: Path, log: Path, shard_bytes: int
                 ) -> dict[str, object]:
    """Time ``mergekit-yaml`` doing a linear merge of the same three checkpoints (bf16, CPU)."""
    shutil.rmtree(out, ignore_errors=True)
    config = out.parent / f"{out.name}.yml"
    weights = {"finetuned": 1.0, "aligned": 0.5, "base": -0.5}
    lines = ["merge_method: linear", "dtype: bfloat16", "parameters:", "  normalize: false", "models:"]
    for name, weight in weights.items():
        lines += [f"  - model: {models[name]}", "    parameters:", f"      weight: {weight}"]
    config.write_text("\n".join(lines) + "\n")
    cmd = [str(exe), str(config), str(out), "--out-shard-size", str(shard_bytes // 2), "--no-copy-tokenizer"]
    return measure(cmd, log)


def baseline_rss(log: Path) -> dict[str, object]:
    """Peak RSS of a process that only imports what our realign imports (interpreter + torch baseline)."""
    code = ("import torch, safetensors, transformers, matplotlib.pyplot, mlflow_nlsr.pipeline.full, "
            "mlflow_nlsr.pipeline.full.report, mlflow_nlsr.cli.realign")
    return measure([sys.executable, "-c", code], log)


def compare(size: str, args: argparse.Namespace, mergekit: tuple[Path | None, str]) -> dict[str, object]:
    """One size: make the set, run ours and mergekit, and compute the ratios and our memory bound."""
    from mlflow_nlsr.io import parse_size

    size_bytes = parse_size(size)
    layers = layers_for(size_bytes, WIDTH)
    shard = parse_size(args.input_shard_size)
    root = OUT / f"set-{size}"
    t0 = time.perf_counter()
    models = make_set(root, layers, shard)
    made = time.perf_counter() - t0
    checkpoint_bytes = sum(p.stat().st_size for p in models["base"].glob("*.safetensors"))
    largest = max(math.prod(s) for _, s in shapes(layers, WIDTH)) * 2
    base = baseline_rss(OUT / "baseline.log")
    # the bound is baseline + 4x the largest tensor (+ one mmapped input shard per checkpoint);
    # inputs are read with plain reads, not mmap, so the strict bound without the shards is checked
    bound = float(base["peak_rss_mb"]) + 4 * largest / 2**20  # type: ignore[arg-type]
    by_scorer = {}
    for scorer in args.scorer or ["magnitude"]:
        run = run_ours(models, OUT / "runs" / f"ours-{size}-{scorer}", OUT / f"ours-{size}-{scorer}.log",
                       scorer, args.selection)
        over = float(run["peak_rss_mb"]) - bound  # type: ignore[arg-type]
        by_scorer[scorer] = {**run, "within_rss_bound": over <= 0, "over_bound_mb": round(max(0.0, over), 1)}
    ours = next(iter(by_scorer.values()))
    row: dict[str, object] = {
        "size": size, "layers": layers, "checkpoint_mb": round(checkpoint_bytes / 2**20, 1),
        "largest_tensor_mb": round(largest / 2**20, 1), "input_shard_mb": round(shard / 2**20, 1),
        "setup_seconds": round(made, 1), "ours": ours, "by_scorer": by_scorer, "import_baseline": base,
        "selection": args.selection or "default",
        "ours_rss_bound_mb": round(bound, 1), "ours_within_rss_bound": bool(ours["within_rss_bound"]),
        "rss_bound_with_input_shards_mb": round(bound + 3 * shard / 2**20, 1),
    }
    exe, reason = mergekit
    if exe is None:
        row["mergekit"] = {"available": False, "reason": reason}
    else:
        runs, log = OUT / "runs" / f"mergekit-{size}", OUT / f"mergekit-{size}.log"
        mk = run_mergekit(exe, models, runs, log, 2 * 10**9)
        row["mergekit"] = {"available": True, **mk}
        if mk["returncode"] == 0 and ours["returncode"] == 0:
            row["time_ratio_ours_over_mergekit"] = round(float(ours["seconds"]) / float(mk["seconds"]), 3)  # type: ignore[arg-type]
            row["rss_ratio_ours_over_mergekit"] = round(
                float(ours["peak_rss_mb"]) / float(mk["peak_rss_mb"]), 3)  # type: ignore[arg-type]
    if not args.keep_outputs:
        shutil.rmtree(OUT / "runs", ignore_errors=True)
    return row


def depth_check(args: argparse.Namespace) -> dict[str, object]:
    """Same width, two depths: our peak RSS must not grow with the number of layers."""
    from mlflow_nlsr.io import parse_size

    shard = parse_size(args.depth_shard_size)
    rows = []
    for layers in args.depths:
        models = make_set(OUT / f"depth-{layers}", layers, shard)
        run = run_ours(models, OUT / "runs" / f"depth-{layers}", OUT / f"depth-{layers}.log")
        size = sum(p.stat().st_size for p in models["base"].glob("*.safetensors"))
        rows.append({"layers": layers, "checkpoint_mb": round(size / 2**20, 1), **run})
    shutil.rmtree(OUT / "runs", ignore_errors=True)
    growth = float(rows[-1]["peak_rss_mb"]) - float(rows[0]["peak_rss_mb"])  # type: ignore[arg-type]
    model_growth = float(rows[-1]["checkpoint_mb"]) - float(rows[0]["checkpoint_mb"])  # type: ignore[arg-type]
    # pass: the extra layers add less than 10% of their own size (one checkpoint) to the peak RSS
    return {"runs": rows, "rss_growth_mb": round(growth, 1), "checkpoint_growth_mb": round(model_growth, 1),
            "rss_independent_of_depth": growth <= 0.1 * model_growth,
            "input_shard_mb": round(shard / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", action="append", help="checkpoint size, e.g. 0.5GB (repeatable) [0.5GB]")
    parser.add_argument("--input-shard-size", default="200MB", help="shard size of the synthetic inputs")
    parser.add_argument("--scorer", action="append",
                        help="scorer of our realign (repeatable; actsvd, magnitude, weight-lowrank, random) "
                             "[magnitude]")
    parser.add_argument("--selection", default=None, help="--selection of our realign [product default]")
    parser.add_argument("--depths", type=int, nargs=2, default=[4, 16], help="layers of the depth check")
    parser.add_argument("--depth-shard-size", default="100MB", help="input shard size in the depth check")
    parser.add_argument("--no-depth-check", action="store_true", help="skip the memory-vs-depth check")
    parser.add_argument("--setup-mergekit", action=argparse.BooleanOptionalAction, default=True,
                        help="install mergekit into bench/out/venv-mergekit when missing (needs the network)")
    parser.add_argument("--skip-mergekit", action="store_true",
                        help="run ours (and the depth check) only; mergekit is reported as skipped")
    parser.add_argument("--keep-outputs", action="store_true", help="keep the realigned/merged outputs")
    parser.add_argument("--json", type=Path, default=OUT / "realign_vs_mergekit.json", help="result file")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.skip_mergekit:
        mergekit: tuple[Path | None, str] = (None, "skipped (--skip-mergekit)")
    else:
        mergekit = ensure_mergekit(args.setup_mergekit)
    result: dict[str, object] = {"machine": {"cpus": os.cpu_count(), "env": ENV,
                                             "loadavg_before": os.getloadavg()}, "width": WIDTH,
                                 "mergekit": {"available": mergekit[0] is not None, "reason": mergekit[1]},
                                 "sizes": [compare(s, args, mergekit) for s in (args.size or ["0.5GB"])]}
    if not args.no_depth_check:
        result["depth_check"] = depth_check(args)
    result["machine"]["loadavg_after"] = os.getloadavg()  # type: ignore[index]
    text = json.dumps(result, indent=2)
    args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
