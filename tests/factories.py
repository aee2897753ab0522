"""Tiny, random, local models for tests: nothing is downloaded.

`make_tokenizer` builds a byte-level BPE tokenizer (any text encodes) with a ChatML chat template;
`make_tiny_llama` saves a random Llama checkpoint; `make_lora_adapter` saves a PEFT LoRA adapter,
and `continue_adapter` derives a fine-tuned adapter that *continues* a given one (same factor basis),
which is what NLSR expects (spec §1.2).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_tokenizer(chat_template: str | None = CHATML):
    """Return a byte-level PreTrainedTokenizerFast with ChatML specials (vocab ~260)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok.add_special_tokens(specials)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    if chat_template is not None:
        fast.chat_template = chat_template
    return fast


def make_tiny_llama(
    path: Path | str,
    *,
    layers: int = 4,
    hidden: int = 64,
    intermediate: int = 128,
    heads: int = 4,
    kv_heads: int = 2,
    seed: int = 0,
    chat_template: str | None = CHATML,
    max_shard_size: str | None = None,
) -> Path:
    """Save a random LlamaForCausalLM (+ tokenizer) to `path` and return it."""
    from transformers import LlamaConfig, LlamaForCausalLM

    path = Path(path)
    tok = make_tokenizer(chat_template)
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg).eval()
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(path, safe_serialization=True, **kwargs)
    tok.save_pretrained(path)
    return path


def lora_key(layer: int, module: str, factor: str) -> str:
    """PEFT key of one LoRA factor, e.g. base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight."""
    block = "self_attn" if module in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
    return f"base_model.model.model.layers.{layer}.{block}.{module}.lora_{factor}.weight"


def _module_shapes(base: Path) -> dict[str, tuple[int, int]]:
    cfg = json.loads((base / "config.json").read_text())
    h, i = cfg["hidden_size"], cfg["intermediate_size"]
    hd = cfg.get("head_dim") or h // cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads", cfg["num_attention_heads"]) * hd
    return {
        "q_proj": (cfg["num_attention_heads"] * hd, h),
        "k_proj": (kv, h),
        "v_proj": (kv, h),
        "o_proj": (h, cfg["num_attention_heads"] * hd),
        "gate_proj": (i, h),
        "up_proj": (i, h),
        "down_proj": (h, i),
    }


def make_lora_adapter(
    base: Path | str,
    path: Path | str,
    *,
    r: int = 8,
    alpha: int = 16,
    targets: list[str] | None = None,
    seed: int = 1,
    scale: float = 0.05,
    tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Save a PEFT LoRA adapter for `base` with random (or given) factors and return its dir."""
    from safetensors.torch import save_file

    base, path = Path(base), Path(path)
    targets = targets or TARGETS
    cfg = json.loads((base / "config.json").read_text())
    shapes = _module_shapes(base)
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    if tensors is None:
        for layer in range(cfg["num_hidden_layers"]):
            for mod in targets:
                d_out, d_in = shapes[mod]
                out[lora_key(layer, mod, "A")] = torch.randn(r, d_in, generator=gen) * scale
                out[lora_key(layer, mod, "B")] = torch.randn(d_out, r, generator=gen) * scale
    else:
        out = {k: v.contiguous() for k, v in tensors.items()}
    path.mkdir(parents=True, exist_ok=True)
    save_file(out, str(path / "adapter_model.safetensors"), metadata={"format": "pt"})
    adapter_cfg = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": str(base),
        "r": r,
        "lora_alpha": alpha,
        "lora_dropout": 0.0,
        "target_modules": sorted(targets),
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "use_rslora": False,
        "use_dora": False,
    }
    (path / "adapter_config.json").write_text(json.dumps(adapter_cfg, indent=2))
    return path


def read_adapter_tensors(path: Path | str) -> dict[str, torch.Tensor]:
    """Load every tensor of a saved adapter."""
    from safetensors.torch import load_file

    return load_file(str(Path(path) / "adapter_model.safetensors"))


def continue_adapter(
    base: Path | str,
    aligned: Path | str,
    path: Path | str,
    *,
    drift: float = 0.02,
    seed: int = 2,
) -> Path:
    """Save a 'fine-tuned' adapter that continues `aligned`: its factors plus small noise."""
    src = read_adapter_tensors(aligned)
    cfg = json.loads((Path(aligned) / "adapter_config.json").read_text())
    gen = torch.Generator().manual_seed(seed)
    out = {k: v + torch.randn(v.shape, generator=gen) * drift for k, v in src.items()}
    return make_lora_adapter(
        base, path, r=cfg["r"], alpha=cfg["lora_alpha"], targets=cfg["target_modules"], tensors=out
    )


def make_model_trio(root: Path) -> tuple[Path, Path, Path]:
    """(base 2-layer Llama, aligned r=4 adapter, fine-tuned adapter continuing it) under `root`."""
    base = make_tiny_llama(root / "base", layers=2)
    aligned = make_lora_adapter(base, root / "aligned", r=4, seed=1)
    finetuned = continue_adapter(base, aligned, root / "finetuned", drift=0.03)
    return base, aligned, finetuned
