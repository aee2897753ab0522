"""Streaming pieces of full-weight mode agree with their plain counterparts.

The header-first writer produces files safetensors and LazyCheckpoint read back bit for bit; the
selection-based threshold equals core.top_mask; the masked-entry cosine equals core.delta_similarity; the
randomised low-rank scorer is seeded (same seed, same scores) and exact on low-rank updates.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from mlflow_nlsr import core
from mlflow_nlsr.errors import ConfigError, InputError
from mlflow_nlsr.io import LazyCheckpoint
from mlflow_nlsr.options import RealignOptions
from mlflow_nlsr.pipeline import full_scoring
from mlflow_nlsr.pipeline.full_scoring import lowrank_scores, masked_cosine, matrix_top_mask, module_mask
from mlflow_nlsr.pipeline.full_writer import (
    Entry,
    StreamingSafetensors,
    StreamingShardedWriter,
    ValueSpill,
    dtype_name,
    parse_size,
    plan_shards,
)


def _tensors() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    out = {f"layers.{i}.w": torch.randn(16, 8, generator=gen) for i in range(6)}
    out["half"] = torch.randn(4, 4, generator=gen).to(torch.bfloat16)
    out["ids"] = torch.arange(5)
    out["mask"] = torch.rand(3, 7, generator=gen) > 0.5
    out["scalar"] = torch.tensor(2.5)
    return out


def _entries(tensors: dict[str, torch.Tensor]) -> list[Entry]:
    return [Entry(k, dtype_name(v.dtype), tuple(v.shape)) for k, v in tensors.items()]


def test_streamed_shards_read_back_bit_for_bit(tmp_path):
    tensors = _tensors()
    writer = StreamingShardedWriter(tmp_path, _entries(tensors), max_shard_size=1100)
    for key in writer.order:
        writer.write(key, tensors[key])
    files = writer.finish()
    assert "model.safetensors.index.json" in files and len(files) > 3
    ckpt = LazyCheckpoint(tmp_path)
    assert ckpt.keys() == sorted(tensors)
    for key, value in tensors.items():
        got = ckpt.get(key)
        assert got.dtype == value.dtype and torch.equal(got, value), key


def test_single_streamed_file_loads_with_safetensors(tmp_path):
    tensors = _tensors()
    file = StreamingSafetensors(tmp_path / "x.safetensors", _entries(tensors), {"k": "v"})
    for key, value in tensors.items():
        file.write(key, value)
    file.finish()
    loaded = load_file(str(tmp_path / "x.safetensors"))
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())


def test_out_of_order_wrong_shape_or_missing_tensors_are_refused(tmp_path):
    tensors = _tensors()
    file = StreamingSafetensors(tmp_path / "x.safetensors", _entries(tensors))
    with pytest.raises(InputError, match="expected layers.0.w"):
        file.write("layers.1.w", tensors["layers.1.w"])
    with pytest.raises(InputError, match=r"expected layers.0.w F32 \[16, 8\]"):
        file.write("layers.0.w", torch.zeros(8, 16))
    file.write("layers.0.w", tensors["layers.0.w"])
    with pytest.raises(InputError, match="layers.1.w was never written"):
        file.finish()
    assert not (tmp_path / "x.safetensors").exists()


def test_shard_plan_respects_the_size_limit_and_keeps_order():
    entries = [Entry(f"t{i}", "F32", (10, 10)) for i in range(7)]  # 400 bytes each
    shards = plan_shards(entries, 1000)
    assert [len(s) for s in shards] == [2, 2, 2, 1]
    assert [e.key for s in shards for e in s] == [e.key for e in entries]
    assert [len(s) for s in plan_shards([Entry("big", "F32", (100, 100))], 10)] == [1]


def test_sizes_parse_in_decimal_and_binary_units():
    assert parse_size("2GB") == 2 * 10**9
    assert parse_size("500MiB") == 500 * 2**20
    assert parse_size("50KB") == 50_000
    assert parse_size(123) == 123
    with pytest.raises(ConfigError):
        parse_size("two gigs")


def test_value_spill_round_trips_any_dtype(tmp_path):
    spill = ValueSpill(tmp_path / "spill.bin")
    values = {"a": torch.randn(7).to(torch.bfloat16), "b": torch.randn(0), "c": torch.arange(9.0)}
    for key, value in values.items():
        spill.write(key, value)
    for key in ("c", "a", "b"):
        assert torch.equal(spill.read(key), values[key])
    spill.close()
    assert not (tmp_path / "spill.bin").exists()


@pytest.mark.parametrize("shape", [(37, 23), (400, 400)])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.8, 0.99])
def test_selection_threshold_equals_core_top_mask(sparsity, shape):
    scores = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    scores[0, :5] = scores[1, 0]  # ties
    assert torch.equal(matrix_top_mask(scores, sparsity), core.top_mask(scores, sparsity, per="matrix"))


def test_masked_cosine_equals_core_delta_similarity():
    gen = torch.Generator().manual_seed(2)
    d_t, d_e = torch.randn(50, 30, generator=gen), torch.randn(50, 30, generator=gen)
    mask = torch.rand(50, 30, generator=gen) > 0.7
    assert masked_cosine(d_t, d_e, mask) == pytest.approx(core.delta_similarity(d_t, d_e, mask), abs=1e-13)
    assert masked_cosine(d_t, d_e, torch.zeros_like(mask)) == 0.0


def test_lowrank_scores_are_seeded_and_exact_for_low_rank_updates():
    gen = torch.Generator().manual_seed(3)
    delta = torch.randn(60, 5, generator=gen) @ torch.randn(5, 40, generator=gen)
    first, second = lowrank_scores(delta, 5, seed=11), lowrank_scores(delta, 5, seed=11)
    assert torch.equal(first, second)
    assert torch.allclose(first, delta, atol=1e-4)
    state = torch.random.get_rng_state()
    lowrank_scores(delta, 3, seed=12)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is left untouched


def test_weight_lowrank_mask_matches_the_exact_svd_mask_on_a_low_rank_update():
    gen = torch.Generator().manual_seed(4)
    delta = torch.randn(64, 3, generator=gen) @ torch.randn(3, 48, generator=gen)
    options = RealignOptions(scorer="weight-lowrank", sparsity=0.8)
    mask = module_mask("w", delta, options, rank_cap=3)
    k = full_scoring.kept_rank_for((64, 48), options, rank_cap=3)
    assert k == 2  # official: int(3 * 0.8)
    exact = core.weight_lowrank_mask(delta, 0.8, k)
    assert (mask ^ exact).float().mean() < 0.005


def test_actsvd_mask_needs_a_gram_matrix():
    from mlflow_nlsr.errors import CalibrationError

    with pytest.raises(CalibrationError, match="Gram"):
        module_mask("w", torch.randn(8, 8), RealignOptions(scorer="actsvd"))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kth_smallest_equals_the_sorted_value_on_large_and_skewed_inputs(seed):
    from mlflow_nlsr.pipeline.full_scoring import kth_smallest

    gen = torch.Generator().manual_seed(seed)
    flat = torch.randn(300_000, generator=gen).abs()
    flat[:100_000] *= 1000  # a block with another scale: the strided sample must still bracket
    flat[200_000:200_100] = flat[5]  # ties
    ordered = flat.sort().values
    for k in (0, 1234, 150_000, 240_000, 299_999):
        assert kth_smallest(flat, k) == ordered[k]
