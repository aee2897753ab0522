"""ActSVD memory and time against model depth: the whole-model path vs one decoder block at a time.

Synthetic Llama checkpoints of one width (hidden 512, intermediate 1536, 8 heads, fp32) at 4, 8, 16 and 32
decoder blocks. For each depth, in both modes and both paths, one fresh subprocess runs only the ActSVD
calibration stage and reports its seconds and the process's peak RSS (``VmHWM``) next to the RSS
after imports and input setup (so the stage's own cost is ``peak - before``):

* full mode: ``capture_grams_loaded`` (whole fp32 reference model, every float64 Gram held until the end
  and written out for pass 1) vs ``capture_subspaces`` (one block built from the streamed base +
  extrapolated delta; its Grams reduced to each weight's kept subspace V [d_out, k] when the block is
  done, only V written); ``scratch_mib`` is what each leaves on disk for pass 1;
* LoRA mode (rank-16 adapter on every projection): ``load_adapted_model`` + ``actsvd_projections`` (whole
  PEFT model) vs ``blockwise_projections`` (one block, reference factors merged).

    OMP_NUM_THREADS=1 python bench/actsvd_scaling.py --depths 4,8,16,32 \
        --out bench/results/actsvd_scaling.json

Prints a Markdown table and writes the JSON rows. The machine's load average is recorded with them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HIDDEN, INTERMEDIATE, HEADS = 512, 1536, 8
SAMPLES, MAX_LENGTH, RANK = 8, 128, 16


def _rss_mib() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss it does not inherit the parent's peak across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def build_models(root: Path, depth: int) -> dict[str, Path]:
    """Base, aligned (base + noise) checkpoints and a rank-16 reference adapter for one depth."""
    import torch
    from safetensors.torch import load_file, save_file

    sys.path.insert(0, str(ROOT))
    from tests import factories

    folder = root / f"d{depth}"
    base = factories.make_tiny_llama(folder / "base", layers=depth, hidden=HIDDEN, intermediate=INTERMEDIATE,
                                     heads=HEADS, kv_heads=HEADS, seed=depth)
    aligned = folder / "aligned"
    aligned.mkdir()
    gen = torch.Generator().manual_seed(1)
    tensors = load_file(str(base / "model.safetensors"))
    noisy = {k: (v + 0.01 * torch.randn(v.shape, generator=gen)) if v.dim() == 2 and "layers" in k else v
             for k, v in tensors.items()}
    save_file(noisy, str(aligned / "model.safetensors"), metadata={"format": "pt"})
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "chat_template.jinja"):
        if (base / name).is_file():
            (aligned / name).write_bytes((base / name).read_bytes())
    adapter = factories.make_lora_adapter(base, folder / "adapter", r=RANK, alpha=2 * RANK, seed=3)
    return {"base": base, "aligned": aligned, "adapter": adapter}


def _samples(base: Path):
    from mlflow_nlsr.pipeline import actsvd_data
    from mlflow_nlsr.pipeline.loading import load_tokenizer

    tok = load_tokenizer(base)
    pairs = actsvd_data.load_pairs(actsvd_data.default_calibration_path())
    samples = actsvd_data.encode_pairs(tok, pairs, samples=SAMPLES, max_length=MAX_LENGTH, seed=0)
    return tok, samples


def run_full(paths: dict[str, Path], path: str, work: Path) -> float:
    """Run one full-mode capture into `work`; return the MiB it left there (the scratch pass 1 reads)."""
    from mlflow_nlsr.options import RealignOptions
    from mlflow_nlsr.pipeline.full.activations import capture_grams_loaded, capture_subspaces
    from mlflow_nlsr.pipeline.full.inputs import is_linear_weight, open_sources

    options = RealignOptions(mode="full", calibration_samples=SAMPLES, max_length=MAX_LENGTH, device="cpu")
    base, aligned, finetuned = open_sources(paths["base"], paths["aligned"], paths["aligned"])
    linear = {k for k in finetuned.infos if is_linear_weight(k, finetuned.infos[k].shape)}
    capture = capture_subspaces if path == "blockwise" else capture_grams_loaded
    capture(paths["base"], paths["base"], base, aligned, linear, options, work)
    return sum(f.stat().st_size for f in work.rglob("*") if f.is_file()) / 2**20


def run_lora(paths: dict[str, Path], path: str) -> None:
    import torch

    from mlflow_nlsr.io import read_adapter
    from mlflow_nlsr.pipeline.activations import actsvd_projections, make_batches
    from mlflow_nlsr.pipeline.loading import load_adapted_model
    from mlflow_nlsr.pipeline.lora_blockwise import blockwise_projections

    adapter = read_adapter(paths["adapter"])
    tok, samples = _samples(paths["base"])
    batches = make_batches(samples, 8, tok.pad_token_id)
    cpu = torch.device("cpu")
    if path == "blockwise":
        blockwise_projections(paths["base"], adapter.tensors, batches, sparsity=0.8, variant="official",
                              scaling=adapter.scaling, device=cpu, progress=False)
    else:
        model = load_adapted_model(paths["base"], adapter.config, adapter.tensors, cpu, torch.float32)
        actsvd_projections(model, batches, sparsity=0.8, variant="official", progress=False)


def child(mode: str, depth: int, path: str, root: Path) -> dict[str, object]:
    """One measurement in this (fresh) process."""
    import torch  # noqa: F401 - counted in the import baseline
    import transformers  # noqa: F401

    import mlflow_nlsr.pipeline  # noqa: F401

    paths = {k: root / f"d{depth}" / k for k in ("base", "aligned", "adapter")}
    before = _current_rss_mib()
    started = time.perf_counter()
    scratch = None
    with tempfile.TemporaryDirectory() as work:
        if mode == "full":
            scratch = round(run_full(paths, path, Path(work)), 2)
        else:
            run_lora(paths, path)
    return {"mode": mode, "depth": depth, "path": path, "seconds": round(time.perf_counter() - started, 2),
            "rss_before_mib": round(before), "peak_rss_mib": round(_rss_mib()), "scratch_mib": scratch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", default="4,8,16,32")
    parser.add_argument("--modes", default="full,lora")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", nargs=4, metavar=("MODE", "DEPTH", "PATH", "ROOT"), help=argparse.SUPPRESS)
    parser.add_argument("--build", nargs=2, metavar=("DEPTH", "ROOT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        build_models(Path(args.build[1]), int(args.build[0]))
        return
    if args.child:
        mode, depth, path, root = args.child
        print(json.dumps(child(mode, int(depth), path, Path(root))))
        return
    depths = [int(d) for d in args.depths.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="nlsr-actsvd-bench-") as tmp:
        root = Path(tmp)
        for depth in depths:
            # built in a subprocess of its own, so this parent stays small
            subprocess.run([sys.executable, __file__, "--build", str(depth), str(root)], check=True,
                           capture_output=True)
            for mode in args.modes.split(","):
                for path in ("whole-model", "blockwise"):
                    load = os.getloadavg()[0]
                    command = [sys.executable, __file__, "--child", mode, str(depth), path, str(root)]
                    proc = subprocess.run(command, capture_output=True, text=True, check=True)
                    row = {**json.loads(proc.stdout.strip().splitlines()[-1]), "load_1min": round(load, 2)}
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr)
            for sub in ("base", "aligned", "adapter"):
                subprocess.run(["rm", "-rf", str(root / f"d{depth}" / sub)], check=True)
    print(f"# ActSVD scaling, {platform.node()} ({os.cpu_count()} cores), "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("| mode | depth | path | seconds | RSS before (MiB) | peak RSS (MiB) | scratch (MiB) | load |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['mode']} | {r['depth']} | {r['path']} | {r['seconds']} | {r['rss_before_mib']} | "
              f"{r['peak_rss_mib']} | {r['scratch_mib']} | {r['load_1min']} |")
    if args.out:
        args.out.write_text(json.dumps({"machine": platform.node(), "cpus": os.cpu_count(),
                                        "date": time.strftime("%Y-%m-%d"), "modes": args.modes, "rows": rows},
                                       indent=1) + "\n")


if __name__ == "__main__":
    main()
