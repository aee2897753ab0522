"""Scorers and methods are registered classes: a scorer written in a test plugs into the CLI end to end,
and unknown names fail with a did-you-mean hint listing what is installed."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from mlflow_nlsr.cli import cli
from mlflow_nlsr.errors import ConfigError
from mlflow_nlsr.options import METHODS, SCORERS, RealignOptions
from mlflow_nlsr.pipeline.scorers import Scorer


class FirstRowsScorer(Scorer):
    """Toy scorer: the first rows of every factor (LoRA) or module (full) are safety-critical."""

    summary = "the first rows, a toy"

    def factor_mask(self, key, reference, ctx):
        mask = torch.zeros(reference.shape, dtype=torch.bool)
        mask[: max(1, int(reference.shape[0] * (1 - ctx.options.sparsity)))] = True
        return mask

    def full_scores(self, key, delta_e, ctx):
        rows = torch.arange(delta_e.shape[0], 0, -1, dtype=torch.float32)
        return rows.unsqueeze(1).expand_as(delta_e).clone()


@pytest.fixture
def toy_scorer():
    SCORERS.register("toy", FirstRowsScorer)
    yield FirstRowsScorer
    SCORERS.unregister("toy")


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_a_scorer_registered_in_a_test_runs_through_mlflow_nlsr_realign(
    toy_scorer, tiny_adapters, tmp_path, mode
):
    base, aligned, finetuned = tiny_adapters
    out = tmp_path / "out"
    argv = ["realign", "--base", str(base), "--aligned", str(aligned), "--finetuned", str(finetuned),
            "--output", str(out), "--scorer", "toy", "--selection", "all", "--mode", mode, "--no-progress",
            "--json"]  # fmt: skip
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "nlsr_report.json").read_text())
    assert report["scorer"] == "toy" and report["patched_modules"] == report["total_modules"] > 0
    assert "actsvd_data" not in report and "D2" not in report["decisions"]  # no model pass, no kept rank
    from safetensors.torch import load_file

    masks = load_file(str(out / "masks.safetensors"))
    first = masks[sorted(masks)[0]]
    rows = first.any(dim=1)
    assert rows[0] and not rows[-1]  # the toy's rows, not anything a built-in scorer would pick


def test_an_unknown_scorer_is_a_config_error_that_suggests_the_close_name():
    with pytest.raises(ConfigError, match=r"unknown scorer 'magnitud'\. Did you mean: magnitude\?"):
        RealignOptions(scorer="magnitud")
    result = CliRunner().invoke(cli, ["realign", "--base", ".", "--aligned", ".", "--finetuned", ".",
                                      "--output", "x", "--method", "safelora-nslr"])  # fmt: skip
    assert result.exit_code != 0 and "safelora-nlsr" in result.output


def test_the_cli_lists_the_registered_scorers_and_methods_with_their_summaries():
    text = " ".join(CliRunner().invoke(cli, ["realign", "--help"]).output.split())
    for name in (*SCORERS.names(), *METHODS.names()):
        assert name in text
    assert "activation-aware low rank" in text and "official SafeLoRA projection" in text


def test_a_registered_scorer_must_subclass_scorer():
    with pytest.raises(TypeError, match="must subclass Scorer"):
        SCORERS.register("bad", object)  # type: ignore[arg-type]
