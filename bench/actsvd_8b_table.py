"""Bytes resident per stage for an 8B model (Llama-3-8B shapes), the whole-model paths vs block by block.

Computed from the configuration, not measured: parameters × bytes per element, Gram matrices × 8 bytes
(float64), hidden states = calibration tokens × hidden × bytes. Python/CUDA runtime overheads and
allocator slack are not included. The point is which stages fit on one 80 GB GPU and in how much host RAM.

    python bench/actsvd_8b_table.py [--samples 128 --max-length 256 --dtype-bytes 2]
"""

from __future__ import annotations

import argparse

LLAMA3_8B = {"hidden": 4096, "intermediate": 14336, "layers": 32, "heads": 32, "kv_heads": 8, "vocab": 128256}
GIB = 2**30


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
    hidden_states = samples * max_length * h * nbytes
    lora = cfg["layers"] * sum(rank * (a + b) for a, b in shapes(cfg).values()) * 4
    largest = i * h * 4
    return [
        ("full ActSVD: reference weights", model * 4, (embed + block) * nbytes,
         "old: whole model in fp32; new: embeddings + one block in the job dtype"),
        ("full ActSVD: Gram matrices", cfg["layers"] * grams_block, grams_block,
         "float64 XᵀX per distinct input; new: one block's, written out when the block is done"),
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
    old_peak = rows[0][1] + rows[1][1] + rows[5][1]
    new_peak = rows[0][2] + rows[1][2] + rows[2][2] + rows[5][2]
    print(f"\nfull-mode ActSVD peak: {old_peak / GIB:.1f} GiB whole model, {new_peak / GIB:.1f} GiB by block")
    lora_old, lora_new = rows[3][1] + rows[4][1] + rows[5][1], rows[3][2] + rows[4][2] + rows[5][2]
    print(f"LoRA-mode ActSVD peak: {lora_old / GIB:.1f} GiB whole model, {lora_new / GIB:.1f} GiB blockwise")


if __name__ == "__main__":
    main()
