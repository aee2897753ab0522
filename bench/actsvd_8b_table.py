"""Bytes resident per stage for an 8B model (Llama-3-8B shapes), the whole-model paths vs block by block.

Computed from the configuration, not measured: parameters × bytes per element, Gram matrices × 8 bytes
(float64, the whole-model path) or 4 bytes (float32, accumulated on the GPU), kept subspaces V [d_out, k]
× 4 bytes, hidden states = calibration tokens × hidden × bytes. Python/CUDA runtime overheads and
allocator slack are not included. The point is which stages fit on one 80 GB GPU and in how much host RAM,
and how much scratch disk full mode needs between the calibration pass and pass 1.

    python bench/actsvd_8b_table.py [--samples 128 --max-length 256 --dtype-bytes 2]
"""

from __future__ import annotations

import argparse

LLAMA3_8B = {"hidden": 4096, "intermediate": 14336, "layers": 32, "heads": 32, "kv_heads": 8, "vocab": 128256}
GIB = 2**30
#: kept rank of every Llama-3-8B module: core.kept_rank(min(d_out, d_in, 128), 0.8, "official")
KEPT = 102


def shapes(cfg: dict[str, int]) -> dict[str, tuple[int, int]]:
    """[d_out, d_in] of every linear module of one decoder block."""
    h, i = cfg["hidden"], cfg["intermediate"]
    kv = cfg["kv_heads"] * h // cfg["heads"]
    return {"q_proj": (h, h), "k_proj": (kv, h), "v_proj": (kv, h), "o_proj": (h, h),
            "gate_proj": (i, h), "up_proj": (i, h), "down_proj": (h, i)}


def table(cfg: dict[str, int], samples: int, max_length: int, nbytes: int, rank: int = 16) -> list[tuple]:
    """Rows (stage, whole-model bytes, blockwise bytes, what is resident)."""
    block = sum(a * b for a, b in shapes(cfg).values()) + 2 * cfg["hidden"]
    embed = cfg["vocab"] * cfg["hidden"]
    model = cfg["layers"] * block + 2 * embed + cfg["hidden"]  # untied lm_head
    # distinct inputs per block: attention input (q/k/v), o_proj input, MLP input (gate/up), down_proj input
    h, i = cfg["hidden"], cfg["intermediate"]
    grams_block = (3 * h * h + i * i) * 8
    grams_block32 = grams_block // 2
    subspaces = cfg["layers"] * sum(d_out * KEPT for d_out, _ in shapes(cfg).values()) * 4
    # reducing down_proj's Gram (the largest): its float64 copy, ΔW_e in fp32 and fp64, and W·G in fp64
    reduce = i * i * 8 + h * i * (4 + 8 + 8)
    hidden_states = samples * max_length * h * nbytes
    lora = cfg["layers"] * sum(rank * (a + b) for a, b in shapes(cfg).values()) * 4
    largest = i * h * 4
    return [
        ("full ActSVD: reference weights", model * 4, (embed + block) * nbytes,
         "old: whole model in fp32; new: embeddings + one block in the job dtype"),
        ("full ActSVD: Gram matrices", cfg["layers"] * grams_block, grams_block32,
         "old: float64 XᵀX per distinct input, all blocks; new: one block's, float32 on the GPU"),
        ("full ActSVD: reducing a block's Grams", 0, reduce,
         "new: float64 eigendecomposition workspace of the largest Gram (down_proj), one module at a time"),
        ("full ActSVD: scratch on disk for pass 1", cfg["layers"] * grams_block, subspaces,
         f"old: every float64 Gram; new: each weight's kept subspace V [d_out, {KEPT}] in float32"),
        ("full ActSVD: building weights", 0, 3 * largest,
         "new: W_0, W_a and W_0 + ΔW_e of the largest tensor in fp32 while a block is built"),
        ("LoRA ActSVD: model", model * nbytes + lora, (embed + block) * nbytes + lora,
         "old: base + PEFT adapter; new: embeddings + one block with the factors merged"),
        ("LoRA ActSVD: Gram matrices", grams_block, grams_block, "one block's at a time in both"),
        ("hidden states (both modes)", hidden_states, hidden_states,
         f"{samples} samples x {max_length} tokens; new: on the CPU when they would crowd the GPU"),
        ("full passes 1-2 (streaming)", 4 * largest, 4 * largest, "unchanged: 4 x the largest tensor"),
        ("gate (hf backend)", model * nbytes, model * nbytes, "the gated model in the job dtype + KV cache"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--dtype-bytes", type=int, default=2, help="2 = bfloat16/float16, 4 = float32")
    args = parser.parse_args()
    rows = table(LLAMA3_8B, args.samples, args.max_length, args.dtype_bytes)
    print(f"Llama-3-8B shapes, {args.samples} calibration samples x {args.max_length} tokens, "
          f"{args.dtype_bytes}-byte weights\n")
    print("| stage | whole model (GiB) | block by block (GiB) | resident |")
    print("|---|---:|---:|---|")
    for stage, old, new, what in rows:
        print(f"| {stage} | {old / GIB:.2f} | {new / GIB:.2f} | {what} |")
    by = {row[0]: row for row in rows}
    full = ("full ActSVD: reference weights", "full ActSVD: Gram matrices", "hidden states (both modes)")
    old_peak = sum(by[s][1] for s in full)
    # the block's weights and its Grams are resident while the block is reduced or built
    new_peak = sum(by[s][2] for s in full) + max(by["full ActSVD: building weights"][2],
                                                 by["full ActSVD: reducing a block's Grams"][2])
    print(f"\nfull-mode ActSVD peak: {old_peak / GIB:.1f} GiB whole model, {new_peak / GIB:.1f} GiB by block")
    scratch = by["full ActSVD: scratch on disk for pass 1"]
    print(f"full-mode scratch for pass 1: {scratch[1] / GIB:.1f} GiB of Grams, {scratch[2] / GIB:.2f} GiB of "
          "kept subspaces")
    lora = ("LoRA ActSVD: model", "LoRA ActSVD: Gram matrices", "hidden states (both modes)")
    lora_old, lora_new = sum(by[s][1] for s in lora), sum(by[s][2] for s in lora)
    print(f"LoRA-mode ActSVD peak: {lora_old / GIB:.1f} GiB whole model, {lora_new / GIB:.1f} GiB blockwise")


if __name__ == "__main__":
    main()
