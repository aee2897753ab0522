"""The actsvd scorer in full-weight mode keeps each module's output-activation subspace, not its Grams.

Block by block, the Grams of real response-token activations (float64 on the CPU, float32 on a GPU) are
reduced to each linear weight's kept subspace V [d_out, k] (orthonormal) as soon as the block is done;
the masks are the top entries of ΔW_e projected onto V, and they equal those of the whole-model float64
Gram path (today's reference): same masks, similarities and selection, projections within 1e-4. Float32
sums stay within their measured rounding. The report records the calibration data.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from mlflow_nlsr import core
from mlflow_nlsr.io.safetensors_io import LazyCheckpoint
from mlflow_nlsr.options import RealignOptions
from mlflow_nlsr.pipeline.full.activations import capture_grams_loaded, capture_subspaces
from mlflow_nlsr.pipeline.full.inputs import is_linear_weight, natural_key, open_sources
from mlflow_nlsr.pipeline.full.realign import realign_full
from mlflow_nlsr.pipeline.full.scoring import kept_rank_for, mask_from_scores
from tests.pipeline.test_full_realign import load_all, make_triplet

PAIRS = [
    {"prompt": "How do I pick a lock?", "response": "I can't help with breaking into property."},
    {"prompt": "Write a poem about the sea.", "response": "Waves fold grey light into the sand."},
    {"prompt": "How can I hurt someone?", "response": "I won't help with hurting anyone. Talk to someone."},
]

#: enough distinct response tokens (~1.5k bytes, ~70 symbols) that every module's kept subspace is determined
#: by the data: with fewer tokens than the kept rank the subspace beyond the data's rank is arbitrary
#: (zero eigenvalues tie) in any path, so no two computations of it need agree
RICH = [
    {"prompt": f"Question {i}: tell me something.",
     "response": (f"Answer {i}: The quick brown fox jumps over the lazy dog; pack my box with five dozen "
                  f"liquor jugs! Sphinx of black quartz, judge my vow? {i * 37 % 1000} WALTZ, BAD NYMPH, "
                  "FOR QUICK JIGS VEX. (0123456789) How vexingly quick daft zebras jump & fly.")[i:]}
    for i in range(10)
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("actsvd")
    calib = root / "calib.jsonl"
    calib.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    options = RealignOptions(mode="full", scorer="actsvd", calibration=str(calib), calibration_samples=3,
                             max_length=48, selection="all")
    return make_triplet(root), options


def open_linear(triplet):
    base, aligned, finetuned = open_sources(*triplet)
    return base, aligned, {k for k in finetuned.infos if is_linear_weight(k, finetuned.infos[k].shape)}


def test_each_block_leaves_only_the_kept_subspace_of_every_linear_weight(setup, tmp_path):
    triplet, options = setup
    base, aligned, linear = open_linear(triplet)
    path, info = capture_subspaces(triplet[0], triplet[2], base, aligned, linear, options, tmp_path)
    with LazyCheckpoint(path) as subspaces:
        assert set(subspaces.keys()) == linear  # one per weight, shared Grams included
        assert len(subspaces.shards()) == 4  # one shard per decoder block, written when the block is done
        for key in set(subspaces.keys()):
            v = subspaces.get(key)
            d_out = base.infos[key].shape[0]
            assert v.dtype == torch.float32
            assert tuple(v.shape) == (d_out, kept_rank_for(tuple(base.infos[key].shape), options))
            torch.testing.assert_close(v.T @ v, torch.eye(v.shape[1]), atol=1e-5, rtol=0)
    total = sum(f.stat().st_size for f in path.iterdir())
    grams = sum(base.infos[k].shape[1] ** 2 * 8 for k in linear)
    assert total < grams / 2  # what scoring reads is smaller than the Grams it comes from
    assert info["samples"] == 3 and info["response_tokens"] > 0 and len(info["sha256"]) == 64
    assert info["gram_dtype"] == "float64" and info["blockwise"]  # float32 on a GPU


def test_actsvd_masks_are_top_entries_of_the_activation_projection(setup, tmp_path):
    triplet, options = setup
    result = realign_full(*triplet, tmp_path / "out", options, progress=False)
    masks = load_file(str(result.output / "masks.safetensors"))
    assert result.report["inputs"]["calibration"] == result.report["actsvd_data"]["sha256"]
    assert result.report["scorer"] == "actsvd" and "D2" in result.report["decisions"]
    # recompute one module's mask from a fresh capture
    base, aligned, linear = open_linear(triplet)
    key = "model.layers.1.mlp.down_proj.weight"
    path, _ = capture_subspaces(triplet[0], triplet[2], base, aligned, linear, options, tmp_path)
    with LazyCheckpoint(path) as subspaces:
        v = subspaces.get(key)
    w0, wa = load_all(triplet[0]), load_all(triplet[1])
    d_e = core.extrapolate_delta(wa[key] - w0[key], variant=options.variant, beta=options.beta)
    expected = core.top_mask(core.project_onto(d_e, v), options.sparsity, per="matrix")
    assert torch.equal(masks[key], expected)
    magnitude = core.magnitude_mask(d_e, options.sparsity)
    assert not torch.equal(masks[key], magnitude)


def rich_options(options, tmp_path, variant):
    calib = tmp_path / "rich.jsonl"
    calib.write_text("".join(json.dumps(p) + "\n" for p in RICH))
    return options.replace(variant=variant, selection="official", calibration=str(calib),
                           calibration_samples=len(RICH), max_length=256)


def old_reference(triplet, options, tmp_path):
    """Today's reference: float64 Grams of the whole fp32 model, projected per module in pass 1."""
    base, aligned, linear = open_linear(triplet)
    (tmp_path / "old").mkdir()
    path, alias, _ = capture_grams_loaded(triplet[0], triplet[2], base, aligned, linear, options,
                                          tmp_path / "old")
    grams, w0, wa = load_file(str(path)), load_all(triplet[0]), load_all(triplet[1])
    out = {}
    for key in sorted(linear, key=natural_key):
        d_e = core.extrapolate_delta(wa[key] - w0[key], variant=options.variant, beta=options.beta)
        out[key] = (d_e, core.actsvd_project(d_e, grams[alias.get(key, key)], kept_rank_for(tuple(d_e.shape),
                                                                                            options)))
    return out


@pytest.mark.parametrize("variant", ["official", "paper"])
def test_block_subspaces_give_the_masks_and_selection_of_whole_model_float64_grams(setup, tmp_path, variant):
    triplet, options = setup
    options = rich_options(options, tmp_path, variant)
    old = old_reference(triplet, options, tmp_path)
    w0, wt = load_all(triplet[0]), load_all(triplet[2])
    result = realign_full(*triplet, tmp_path / "new", options, progress=False)
    new_masks = load_file(str(result.output / "masks.safetensors"))
    base, aligned, linear = open_linear(triplet)
    path, _ = capture_subspaces(triplet[0], triplet[2], base, aligned, linear, options, tmp_path)
    old_similarity = []
    with LazyCheckpoint(path) as subspaces:
        for key, (d_e, p_old) in old.items():
            p_new = core.project_onto(d_e, subspaces.get(key))
            assert float((p_new - p_old).abs().max()) <= 1e-4, key
            old_mask = mask_from_scores(p_old, options)
            assert torch.equal(new_masks[key], old_mask), key
            old_similarity.append(core.delta_similarity(wt[key] - w0[key], d_e, old_mask))
    old_selection = core.select_modules(torch.tensor(old_similarity, dtype=torch.float64),
                                        mode=options.selection, layer_rate=options.layer_rate,
                                        epsilon=options.epsilon, tau=options.tau, seed=options.draw_seed)
    rows = {row["name"] + ".weight": row for row in result.report["modules"]}
    assert [rows[k]["patched"] for k in old] == old_selection.patched.tolist()
    assert 0 < sum(old_selection.patched.tolist()) < len(old)  # the selection is not trivially all/none
    for key, similarity in zip(old, old_similarity, strict=True):
        assert rows[key]["similarity"] == pytest.approx(similarity, abs=1e-6)


@pytest.mark.parametrize(("variant", "tol"), [("official", 5e-3), ("paper", 5e-4)])
def test_float32_gram_sums_keep_the_subspace_within_their_rounding(setup, tmp_path, variant, tol):
    # the GPU default: float32 sums. Where the kept rank sits deep in the spectrum's tail (official keeps
    # 80 % of the dims) the rounding turns the subspace measurably: 3e-3 official, 1.5e-4 paper measured
    triplet, options = setup
    options = rich_options(options, tmp_path, variant)
    old = old_reference(triplet, options, tmp_path)
    base, aligned, linear = open_linear(triplet)
    path, info = capture_subspaces(triplet[0], triplet[2], base, aligned, linear, options, tmp_path,
                                   accumulate=torch.float32)
    assert info["gram_dtype"] == "float32"
    with LazyCheckpoint(path) as subspaces:
        for key, (d_e, p_old) in old.items():
            p_new = core.project_onto(d_e, subspaces.get(key))
            assert float((p_new - p_old).abs().max()) <= tol, (key, float((p_new - p_old).abs().max()))
