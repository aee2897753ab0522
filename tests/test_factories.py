"""The test factories produce models that transformers and PEFT load."""

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def test_tiny_llama_loads_and_generates(tiny_base):
    tok = AutoTokenizer.from_pretrained(tiny_base)
    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    text = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    ids = tok(text, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 3


def test_peft_loads_the_continued_adapter(tiny_adapters):
    from peft import PeftModel

    base, aligned, finetuned = tiny_adapters
    model = AutoModelForCausalLM.from_pretrained(base)
    peft_model = PeftModel.from_pretrained(model, finetuned)
    a = peft_model.base_model.model.model.layers[0].self_attn.q_proj.lora_A["default"].weight
    assert a.shape == (8, 64)
    assert torch.isfinite(a).all()
