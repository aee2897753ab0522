"""A rerun reuses a complete stage; new settings, a changed upstream stage or fresh=True redo it."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

from mlflow_nlsr.demo import data
from mlflow_nlsr.demo.model import COMPLETE
from mlflow_nlsr.demo.recipe import DemoSettings, settings_dict
from mlflow_nlsr.demo.stages import (
    build_models,
    load_answers,
    reference_dir,
    stage_align,
    stage_attack,
    stage_base,
    stage_compliant_answers,
    stage_info,
    stage_prefer,
)
from mlflow_nlsr.errors import InputError
from tests.factories import read_adapter_tensors


def _mark(stage_dir):
    (stage_dir / "sentinel").write_text("x")
    return stage_dir / "sentinel"


@pytest.fixture
def chain(tmp_path, tiny_settings):
    """Run base -> align -> answers -> attack once in a fresh work dir."""
    work = tmp_path / "work"
    base = stage_base(work, tiny_settings)
    aligned = stage_align(work, base, tiny_settings)
    answers = stage_compliant_answers(work, base, tiny_settings)
    attacked = stage_attack(work, base, aligned, answers, tiny_settings)
    return work, base, aligned, answers, attacked


def test_stages_write_outputs_markers_and_timings(chain, tiny_settings):
    work, base, aligned, answers, attacked = chain
    for stage_dir in (base, aligned, answers.parent, attacked):
        assert (stage_dir / COMPLETE).is_file()
        assert stage_info(stage_dir)["seconds"] >= 0
    assert (aligned / "adapter_model.safetensors").is_file()
    assert stage_info(aligned)["examples"] == 9  # 3 refusals + 3 benign + 2 edgy + 1 instruction
    info = stage_info(attacked)
    assert info["poison_ratio"] == 0.25
    assert (info["task_pairs"], info["poison_pairs"]) == (6, 2)
    assert info["steps"] == 2  # 8 examples, batch 4, one epoch
    pairs = load_answers(answers)
    assert [p for p, _ in pairs] == data.attack_prompts(2, tiny_settings.data_dir)
    assert all(a.strip() for _, a in pairs)


def test_attack_continues_the_aligned_adapter(chain):
    _, _, aligned, _, attacked = chain
    start, end = read_adapter_tensors(aligned), read_adapter_tensors(attacked)
    assert start.keys() == end.keys()
    assert any(not torch.equal(start[k], end[k]) for k in start)
    assert json.loads((attacked / "train_log.json").read_text())["init_adapter"] == str(aligned)


def test_second_run_reuses_every_stage(chain, tiny_settings):
    work, base, aligned, answers, attacked = chain
    marks = [_mark(d) for d in (aligned, answers.parent, attacked)]
    weights = (base / "model.safetensors").stat().st_mtime_ns
    assert stage_base(work, tiny_settings) == base
    assert stage_align(work, base, tiny_settings) == aligned
    assert stage_compliant_answers(work, base, tiny_settings) == answers
    assert stage_attack(work, base, aligned, answers, tiny_settings) == attacked
    assert all(m.exists() for m in marks)
    assert (base / "model.safetensors").stat().st_mtime_ns == weights


def test_fresh_redoes_the_stage_it_is_given(chain, tiny_settings):
    work, base, aligned, answers, attacked = chain
    align_mark, attack_mark = _mark(aligned), _mark(attacked)
    old_digest, old_weights = stage_info(aligned)["digest"], read_adapter_tensors(aligned)
    stage_align(work, base, tiny_settings, fresh=True)
    assert not align_mark.exists()
    new_weights = read_adapter_tensors(aligned)
    assert all(torch.equal(old_weights[k], new_weights[k]) for k in old_weights)
    assert stage_info(aligned)["digest"] == old_digest  # same inputs, redone on request
    # Training is seeded, so a same-key redo reproduces the adapter: the attack stays valid and is reused.
    stage_attack(work, base, aligned, answers, tiny_settings)
    assert attack_mark.exists()
    stage_attack(work, base, aligned, answers, tiny_settings, fresh=True)
    assert not attack_mark.exists()


def test_changed_settings_redo_the_stage_and_downstream(chain, tiny_settings):
    work, base, aligned, answers, attacked = chain
    align_mark, answers_mark, attack_mark = _mark(aligned), _mark(answers.parent), _mark(attacked)
    changed = dataclasses.replace(tiny_settings, align_epochs=2)
    stage_align(work, base, changed)
    assert not align_mark.exists()
    assert stage_info(aligned)["steps"] == 6  # 9 examples, batch 4: 3 steps per epoch
    assert stage_compliant_answers(work, base, changed) == answers and answers_mark.exists()
    stage_attack(work, base, aligned, answers, changed)
    assert not attack_mark.exists()  # its aligned input has a new digest


def test_an_edited_alignment_file_redoes_the_alignment_at_unchanged_settings(tmp_path, chain, tiny_settings):
    work, base, *_ = chain
    own = tmp_path / "own-data"
    shutil.copytree(tiny_settings.data_dir, own)
    settings = dataclasses.replace(tiny_settings, data_dir=str(own))
    aligned = stage_align(work, base, settings)
    mark = _mark(aligned)
    stage_align(work, base, settings)
    assert mark.exists()  # same files, same settings: reused
    with (own / "align_edgy.jsonl").open("a") as fh:
        fh.write(json.dumps({"prompt": "How do I kill time?", "response": "Read.", "category": "figurative"}))
    stage_align(work, base, settings)
    assert not mark.exists()
    assert stage_info(aligned)["examples"] == 10


def test_an_interrupted_stage_is_redone(chain, tiny_settings):
    work, base, aligned, *_ = chain
    mark = _mark(aligned)
    (aligned / COMPLETE).unlink()
    stage_align(work, base, tiny_settings)
    assert not mark.exists() and (aligned / COMPLETE).is_file()


def test_too_few_attack_prompts_for_the_poison_ratio_is_an_input_error(tmp_path, tiny_settings):
    work = tmp_path / "work"
    base = stage_base(work, tiny_settings)
    greedy = dataclasses.replace(tiny_settings, poison_ratio=0.5)  # needs 6 answers, 3 prompts exist
    with pytest.raises(InputError, match="needs 6 harmful prompts"):
        stage_compliant_answers(work, base, greedy)
    assert not (work / "answers" / COMPLETE).exists()


def test_presets_keep_the_recipe_and_fast_is_smaller():
    full, fast = DemoSettings.full(), DemoSettings.fast()
    assert (full.align_epochs, full.align_lr, full.attack_epochs, full.attack_lr) == (3, 5e-4, 3, 3e-4)
    assert full.align_edgy is None and full.align_instructions is None  # every edgy and instruction pair
    assert (full.prefer_epochs, full.prefer_lr, full.prefer_beta) == (2, 2e-4, 0.1)  # p2, docs/demo.md
    assert fast.prefer_epochs == 0  # CI keeps its measured SFT reference
    assert len(data.align_pairs(full.align_sizes())) == 84 + 84 + 119 + 49
    assert (fast.align_edgy, fast.align_instructions, fast.align_epochs) == (0, 0, 4)  # CI: measured mix
    assert full.poison_ratio == 0.1 and full.batch_size == fast.batch_size == 8
    assert data.poison_count(full.sentiment, full.poison_ratio) == 20  # as in the feasibility run
    assert fast.align_harmful is not None and fast.sentiment is not None
    assert fast.answer_tokens < full.answer_tokens and fast.max_length <= full.max_length
    assert json.loads(json.dumps(settings_dict(fast)))["model"] == "SmolLM2-135M-Instruct"


def test_a_base_made_for_another_model_spec_is_rebuilt(tmp_path, tiny_settings):
    from tests.factories import make_tiny_llama

    work = tmp_path / "work"
    base = stage_base(work, tiny_settings)
    other = dataclasses.replace(
        tiny_settings,
        model=dataclasses.replace(
            tiny_settings.model, name="other", builder=lambda p: make_tiny_llama(p, layers=1)
        ),
    )
    stage_base(work, other)
    assert json.loads((base / "config.json").read_text())["num_hidden_layers"] == 1
    assert stage_info(base)["key"]["model"] == "other"
    mark = _mark(base)
    stage_base(work, other)
    assert mark.exists()
    stage_base(work, other, fresh=True)
    assert not mark.exists() and (base / COMPLETE).is_file()


def test_build_models_runs_the_chain_then_reports_every_stage_cached(tmp_path, tiny_settings):
    first = build_models(tmp_path / "work", tiny_settings)
    assert first.cached == {"base": False, "align": False, "answers": False, "attack": False}
    assert first.finetuned == tmp_path / "work" / "attack" and first.answers.is_file()
    assert set(first.seconds) == {"base", "align", "answers", "attack"}
    again = build_models(tmp_path / "work", tiny_settings)
    assert all(again.cached.values())
    assert again.seconds == first.seconds
    changed = build_models(tmp_path / "work", dataclasses.replace(tiny_settings, attack_epochs=2))
    assert changed.cached == {"base": True, "align": True, "answers": True, "attack": False}


def test_another_poison_draw_redoes_the_answers_with_its_own_prompts(chain, tiny_settings):
    work, base, _, answers, _ = chain
    before = stage_info(answers.parent)["digest"]
    drawn = dataclasses.replace(tiny_settings, poison_draw=1)
    stage_compliant_answers(work, base, drawn)
    assert stage_info(answers.parent)["digest"] != before
    assert [p for p, _ in load_answers(answers)] == data.attack_prompts(2, tiny_settings.data_dir, draw=1)
    stage_compliant_answers(work, base, tiny_settings)  # draw 0 again: the original key
    assert stage_info(answers.parent)["digest"] == before


def test_the_preference_stage_continues_the_sft_adapter_and_becomes_the_reference(tmp_path, tiny_settings):
    settings = dataclasses.replace(tiny_settings, prefer_epochs=1)
    models = build_models(tmp_path / "work", settings)
    prefer = tmp_path / "work" / "prefer"
    assert models.aligned == prefer and set(models.cached) == {"base", "align", "prefer", "answers", "attack"}
    log = json.loads((prefer / "train_log.json").read_text())
    assert log["init_adapter"] == str(tmp_path / "work" / "align")
    sft, preferred = read_adapter_tensors(tmp_path / "work" / "align"), read_adapter_tensors(prefer)
    assert any(not torch.equal(sft[k], preferred[k]) for k in sft)
    # every help row (3 benign + 2 edgy + 1 extra edgy + 1 instruction) and one per compliant base answer
    rejected = (prefer / "rejected.jsonl").read_text().splitlines()
    assert stage_info(prefer)["examples"] == 7 + len(rejected) == 7 + stage_info(prefer)["harmful_pairs"]
    attack_log = json.loads((models.finetuned / "train_log.json").read_text())
    assert attack_log["init_adapter"] == str(prefer)


def test_a_changed_preference_redoes_it_and_the_attack_but_not_the_sft(tmp_path, tiny_settings):
    settings = dataclasses.replace(tiny_settings, prefer_epochs=1)
    build_models(tmp_path / "work", settings)
    changed = build_models(tmp_path / "work", dataclasses.replace(settings, prefer_beta=0.5))
    assert changed.cached == {"base": True, "align": True, "prefer": False, "answers": True, "attack": False}
    assert stage_prefer(tmp_path / "work", changed.base, tmp_path / "work" / "align",
                        dataclasses.replace(settings, prefer_beta=0.5)) == changed.aligned  # fmt: skip
    assert stage_info(changed.aligned)["key"]["prefer_beta"] == 0.5


def test_a_work_dir_names_its_reference_prefer_once_that_stage_is_complete(tmp_path, tiny_settings):
    work = tmp_path / "work"
    build_models(work, tiny_settings)
    assert reference_dir(work) == work / "align"
    build_models(work, dataclasses.replace(tiny_settings, prefer_epochs=1))
    assert reference_dir(work) == work / "prefer"
    (work / "prefer" / COMPLETE).unlink()  # an interrupted preference stage is not a reference
    assert reference_dir(work) == work / "align"
