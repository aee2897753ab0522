"""Full-weight inputs: mismatches fail before any output exists and name the tensor; adapters merge like peft.

A PEFT adapter given for the aligned or fine-tuned model is merged per tensor and must equal
``PeftModel.merge_and_unload`` exactly; a realignment with adapter inputs equals one with the merged
checkpoints.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mlflow_nlsr.errors import CorruptCheckpointError, IncompatibleModelsError, InputError
from mlflow_nlsr.options import RealignOptions
from mlflow_nlsr.pipeline.full.inputs import AdapterSource, CheckpointSource, is_linear_weight, open_sources
from mlflow_nlsr.pipeline.full.realign import realign_full
from tests import factories
from tests.pipeline.test_full_realign import AUX, load_all, make_triplet

OPTIONS = RealignOptions(mode="full", scorer="magnitude")
Q0 = "model.layers.0.self_attn.q_proj.weight"


@pytest.fixture(scope="module")
def triplet(tmp_path_factory):
    return make_triplet(tmp_path_factory.mktemp("inputs"))


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _rewrite_shard(path: Path, key: str, change) -> None:
    index = json.loads((path / "model.safetensors.index.json").read_text())
    shard = path / index["weight_map"][key]
    tensors = load_file(str(shard))
    change(tensors)
    save_file(tensors, str(shard), metadata={"format": "pt"})


def _assert_fails_without_output(triplet, out: Path, error, match: str) -> None:
    with pytest.raises(error, match=match):
        realign_full(*triplet, out, OPTIONS, progress=False)
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}*"))


def test_mismatched_shape_fails_before_writing_and_names_the_tensor(triplet, tmp_path):
    base, aligned, finetuned = triplet
    bad = _copy(finetuned, tmp_path / "bad")
    key = "model.layers.1.mlp.up_proj.weight"
    _rewrite_shard(bad, key, lambda t: t.__setitem__(key, torch.zeros(5, 64)))
    _assert_fails_without_output(
        (base, aligned, bad), tmp_path / "out", IncompatibleModelsError, f"{key} has different shapes"
    )


def test_missing_tensor_fails_before_writing_and_names_it(triplet, tmp_path):
    base, aligned, finetuned = triplet
    bad = _copy(aligned, tmp_path / "bad")
    key = "model.layers.2.self_attn.v_proj.weight"
    index_path = bad / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    del index["weight_map"][key]
    index_path.write_text(json.dumps(index))
    _assert_fails_without_output(
        (base, bad, finetuned),
        tmp_path / "out",
        IncompatibleModelsError,
        f"{key} is missing from the aligned checkpoint",
    )


def test_tensor_listed_in_the_index_but_absent_from_its_shard_is_named(triplet, tmp_path):
    base, aligned, finetuned = triplet
    bad = _copy(finetuned, tmp_path / "bad")
    _rewrite_shard(bad, Q0, lambda t: t.pop(Q0))
    _assert_fails_without_output((base, aligned, bad), tmp_path / "out", CorruptCheckpointError, Q0)


def test_different_architecture_fails_naming_the_config_field(triplet, tmp_path):
    base, aligned, finetuned = triplet
    bad = _copy(aligned, tmp_path / "bad")
    config = json.loads((bad / "config.json").read_text())
    config["model_type"] = "mistral"
    (bad / "config.json").write_text(json.dumps(config))
    _assert_fails_without_output(
        (base, bad, finetuned), tmp_path / "out", IncompatibleModelsError, "model_type differs"
    )


def test_truncated_shard_is_reported_as_corrupt(triplet, tmp_path):
    base, aligned, finetuned = triplet
    bad = _copy(finetuned, tmp_path / "bad")
    shard = sorted(bad.glob("model-*.safetensors"))[0]
    shard.write_bytes(shard.read_bytes()[:-100])
    _assert_fails_without_output((base, aligned, bad), tmp_path / "out", CorruptCheckpointError, "truncated")


def test_an_adapter_as_base_is_refused(triplet, tmp_path):
    base, aligned, finetuned = triplet
    adapter = factories.make_lora_adapter(base, tmp_path / "adapter")
    with pytest.raises(InputError, match="full base checkpoint"):
        open_sources(adapter, aligned, finetuned)


def test_lazy_adapter_merge_equals_peft_merge_and_unload(triplet, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = triplet[0]
    adapter = factories.make_lora_adapter(base, tmp_path / "adapter", seed=5, scale=0.1)
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter).merge_and_unload()
    state = merged.state_dict()
    source = AdapterSource(adapter, CheckpointSource(base))
    assert len(source.modules) == 4 * 7
    for key in source.ordered_keys():
        assert torch.equal(source.get(key), state[key]), key
    base_state = load_all(base)
    changed = [k for k in source.infos if not torch.equal(source.get(k), base_state[k])]
    assert sorted(changed) == sorted(source.modules)


def test_adapter_inputs_realign_like_their_merged_checkpoints(triplet, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = triplet[0]
    aligned_adapter = factories.make_lora_adapter(base, tmp_path / "aligned", seed=7, scale=0.1)
    ft_adapter = factories.continue_adapter(base, aligned_adapter, tmp_path / "ft", drift=0.05)
    merged_dirs = []
    for adapter in (aligned_adapter, ft_adapter):
        plain = AutoModelForCausalLM.from_pretrained(base)
        model = PeftModel.from_pretrained(plain, adapter).merge_and_unload()
        out = tmp_path / f"{adapter.name}-merged"
        model.save_pretrained(out, max_shard_size="50KB")
        for name in AUX:
            if (base / name).is_file():
                shutil.copy2(base / name, out / name)
        merged_dirs.append(out)
    options = OPTIONS.replace(mode="auto")
    lazy = realign_full(base, aligned_adapter, ft_adapter, tmp_path / "lazy", options, progress=False)
    plain = realign_full(base, *merged_dirs, tmp_path / "plain", options, progress=False)
    a, b = load_all(lazy.output), load_all(plain.output)
    assert set(a) == set(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert lazy.report["input_kinds"] == {"base": "checkpoint", "aligned": "adapter", "finetuned": "adapter"}
    assert (lazy.output / "tokenizer.json").read_bytes() == (base / "tokenizer.json").read_bytes()
    assert lazy.report["patched_modules"] > 0


def test_adapter_that_does_not_fit_the_base_names_its_factors(triplet, tmp_path):
    base, aligned, _ = triplet
    other = factories.make_tiny_llama(tmp_path / "other", hidden=32, intermediate=64)
    adapter = factories.make_lora_adapter(other, tmp_path / "adapter")
    with pytest.raises(IncompatibleModelsError, match=r"layers\.0\..*lora_A\.weight.* expected A \[r, "):
        open_sources(base, aligned, adapter)


def test_linear_weights_are_projections_and_not_embeddings_norms_or_head():
    assert is_linear_weight("model.layers.3.mlp.down_proj.weight", (64, 128))
    assert is_linear_weight("model.layers.0.block_sparse_moe.experts.1.w1.weight", (128, 64))
    assert not is_linear_weight("model.layers.0.input_layernorm.weight", (64,))
    assert not is_linear_weight("model.embed_tokens.weight", (259, 64))
    assert not is_linear_weight("lm_head.weight", (259, 64))
    assert not is_linear_weight("model.layers.0.self_attn.q_proj.bias", (64,))
