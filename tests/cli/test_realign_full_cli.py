"""`mlflow nlsr realign` in full-weight mode writes a (sharded) HF checkpoint; --max-shard-size reaches it.

--max-shard-size shards the full-weight output (index + model-0000i-of-0000n files that reload to the
same tensors as one file); in LoRA mode it is ignored with a note, and a malformed size is a config error
with no output.
"""

from __future__ import annotations

import json

from click.testing import CliRunner

from mlflow_nlsr.cli import cli
from mlflow_nlsr.io import LazyCheckpoint


def _args(tiny_adapters, out, *extra):
    base, aligned, finetuned = tiny_adapters
    return ["realign", "--base", str(base), "--aligned", str(aligned), "--finetuned", str(finetuned),
            "--output", str(out), "--no-progress", "--scorer", "magnitude", *extra]


def test_max_shard_size_shards_the_full_weight_output(tiny_adapters, tmp_path):
    runner = CliRunner()
    one = runner.invoke(cli, _args(tiny_adapters, tmp_path / "one", "--mode", "full"))
    assert one.exit_code == 0, one.output
    assert "Realigned checkpoint written to" in one.output
    assert (tmp_path / "one" / "model.safetensors").is_file()
    many = runner.invoke(cli, _args(tiny_adapters, tmp_path / "many", "--mode", "full", "--max-shard-size",
                                    "100KB"))
    assert many.exit_code == 0, many.output
    index = json.loads((tmp_path / "many" / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and all((tmp_path / "many" / s).stat().st_size < 100_000 + 10_000 for s in shards)
    report = json.loads((tmp_path / "many" / "nlsr_report.json").read_text())
    assert report["max_shard_size"] == 100_000
    single, sharded = LazyCheckpoint(tmp_path / "one"), LazyCheckpoint(tmp_path / "many")
    keys = single.keys()
    assert keys == sharded.keys()
    for key in keys:
        got, expected = sharded.get(key), single.get(key)
        assert got.dtype == expected.dtype and got.equal(expected), key


def test_max_shard_size_is_ignored_with_a_note_in_lora_mode(tiny_adapters, tmp_path):
    result = CliRunner().invoke(cli, _args(tiny_adapters, tmp_path / "out", "--max-shard-size", "1KB"))
    assert result.exit_code == 0, result.output
    assert "--max-shard-size is ignored (LoRA mode" in result.output
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()


def test_a_malformed_max_shard_size_is_a_config_error_without_output(tiny_adapters, tmp_path):
    result = CliRunner().invoke(cli, _args(tiny_adapters, tmp_path / "out", "--mode", "full",
                                           "--max-shard-size", "two gigs"))
    assert result.exit_code == 2
    assert "Error:" in result.output and "max shard size" in result.output
    assert not (tmp_path / "out").exists()
