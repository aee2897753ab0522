"""Bad inputs are never promoted: each fails with an error naming the problem, audited, no alias, no debris.

Every case of the catalogue goes through `mlflow nlsr realign` (a one-line `Error:` naming the problem,
the input-error exit code, no output dir and no temp dir left) and through
``NLSRService.process_version`` against a real `mlflow server` (a ``failed`` job whose reason is in the
audit trail and in the version's ``nlsr.error`` tag, no ``safe`` alias, no realigned version registered,
no realigned dir or temp dir in the work dir). Registry-only cases (unknown, deleted and non-model
versions) and gate configs naming unknown suites or metrics go through ``process_version`` and
`mlflow nlsr run`.
"""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from mlflow_nlsr.cli import cli
from mlflow_nlsr.errors import InputError, RegistryError
from mlflow_nlsr.registry.client import RegistryClient
from tests import factories
from tests.reliability.conftest import TINY_GATES, Trio, leftovers, register, write_rules

INPUT_EXIT = InputError.exit_code


@dataclass
class Case:
    """One bad input: the dirs to realign, extra realign options, and what the error must say."""

    base: Path
    aligned: Path
    finetuned: Path
    expect: str
    options: dict[str, Any] = field(default_factory=dict)


def _rewrite(src: Path, dst: Path, edit: Callable[[dict[str, torch.Tensor]], None], base: Path) -> Path:
    tensors = factories.read_adapter_tensors(src)
    edit(tensors)
    cfg = json.loads((src / "adapter_config.json").read_text())
    return factories.make_lora_adapter(
        base, dst, r=cfg["r"], alpha=cfg["lora_alpha"], targets=cfg["target_modules"], tensors=tensors
    )


def _first_key(tensors: dict[str, torch.Tensor]) -> str:
    return sorted(tensors)[0]


def _adapters_for_other_architecture(good: Trio, root: Path) -> Case:
    other = factories.make_tiny_llama(root / "other-base", layers=2, hidden=32, intermediate=64)
    aligned = factories.make_lora_adapter(other, root / "aligned", r=4, seed=1)
    finetuned = factories.continue_adapter(other, aligned, root / "finetuned")
    return Case(good.base, aligned, finetuned, "for base weight")


def _finetuned_of_other_shape(good: Trio, root: Path) -> Case:
    other = factories.make_tiny_llama(root / "other-base", layers=2, hidden=32, intermediate=64)
    finetuned = factories.make_lora_adapter(other, root / "finetuned", r=4, seed=1)
    return Case(good.base, good.aligned, finetuned, "aligned shape")


def _missing_tensor(good: Trio, root: Path) -> Case:
    ft = _rewrite(good.finetuned, root / "ft", lambda t: t.pop(_first_key(t)), good.base)
    return Case(good.base, good.aligned, ft, "has no matching")


def _nan_in_finetuned(good: Trio, root: Path) -> Case:
    def poison(t: dict[str, torch.Tensor]) -> None:
        t[_first_key(t)][0, 0] = float("nan")

    return Case(good.base, good.aligned, _rewrite(good.finetuned, root / "ft", poison, good.base),
                "holds NaN or Inf values")


def _inf_in_aligned(good: Trio, root: Path) -> Case:
    def poison(t: dict[str, torch.Tensor]) -> None:
        t[sorted(t)[-1]][1, 1] = float("inf")

    return Case(good.base, _rewrite(good.aligned, root / "al", poison, good.base), good.finetuned,
                "holds NaN or Inf values")


def _truncated_safetensors(good: Trio, root: Path) -> Case:
    ft = Path(shutil.copytree(good.finetuned, root / "ft"))
    weights = ft / "adapter_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    return Case(good.base, good.aligned, ft, "truncated or corrupt")


def _corrupt_header(good: Trio, root: Path) -> Case:
    ft = Path(shutil.copytree(good.finetuned, root / "ft"))
    weights = ft / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:40] = b"\xff" * 32  # the JSON header right after its 8-byte length
    weights.write_bytes(bytes(data))
    return Case(good.base, good.aligned, ft, "truncated or corrupt")


def _different_rank(good: Trio, root: Path) -> Case:
    ft = factories.make_lora_adapter(good.base, root / "ft", r=8, seed=2)
    return Case(good.base, good.aligned, ft, "LoRA ranks differ")


def _different_targets(good: Trio, root: Path) -> Case:
    keep = ("q_proj", "v_proj")
    tensors = {k: v for k, v in factories.read_adapter_tensors(good.finetuned).items()
               if any(f".{m}." in k for m in keep)}
    ft = factories.make_lora_adapter(good.base, root / "ft", r=4, targets=list(keep), tensors=tensors)
    return Case(good.base, good.aligned, ft, "target_modules differ")


def _fresh_lora(good: Trio, root: Path) -> Case:
    ft = factories.make_lora_adapter(good.base, root / "ft", r=4, seed=99)
    return Case(good.base, good.aligned, ft, "does not continue the aligned adapter")


def _no_chat_template(good: Trio, root: Path) -> Case:
    base = factories.make_tiny_llama(root / "base", layers=2, chat_template=None)
    return Case(base, good.aligned, good.finetuned, "no chat template", {"scorer": "actsvd"})


def _empty_calibration(good: Trio, root: Path) -> Case:
    root.mkdir(parents=True, exist_ok=True)
    (root / "calib.jsonl").write_text("")
    return Case(good.base, good.aligned, good.finetuned, "holds no samples",
                {"scorer": "actsvd", "calibration": str(root / "calib.jsonl")})


def _malformed_calibration(good: Trio, root: Path) -> Case:
    root.mkdir(parents=True, exist_ok=True)
    (root / "calib.jsonl").write_text('{"prompt": "hi", "response": "hello"}\n{this is not json\n')
    return Case(good.base, good.aligned, good.finetuned, "not valid JSON",
                {"scorer": "actsvd", "calibration": str(root / "calib.jsonl")})


CASES: dict[str, Callable[[Trio, Path], Case]] = {
    "adapters-for-another-architecture": _adapters_for_other_architecture,
    "finetuned-shape-differs-from-aligned": _finetuned_of_other_shape,
    "missing-tensor": _missing_tensor,
    "nan-weights": _nan_in_finetuned,
    "inf-weights": _inf_in_aligned,
    "truncated-safetensors": _truncated_safetensors,
    "corrupt-safetensors-header": _corrupt_header,
    "different-rank": _different_rank,
    "different-target-modules": _different_targets,
    "fresh-lora-not-a-continuation": _fresh_lora,
    "tokenizer-without-chat-template": _no_chat_template,
    "empty-calibration-file": _empty_calibration,
    "malformed-calibration-file": _malformed_calibration,
}


def _cli_realign(case: Case, out: Path) -> Any:
    args = ["realign", "--base", str(case.base), "--aligned", str(case.aligned), "--finetuned",
            str(case.finetuned), "--output", str(out), "--no-progress", "--scorer", "magnitude"]
    for key, value in case.options.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return CliRunner().invoke(cli, args)


@pytest.mark.parametrize("name", list(CASES))
def test_realign_cli_names_the_problem_and_leaves_no_output(name, good, tmp_path):
    case = CASES[name](good, tmp_path / "in")
    out = tmp_path / "out" / "realigned"

    result = _cli_realign(case, out)

    assert result.exit_code == INPUT_EXIT, (result.exit_code, result.output, result.exception)
    assert result.output.startswith("Error: ") and case.expect in result.output, result.output
    assert "Traceback" not in result.output
    assert not out.exists() and leftovers(tmp_path / "out") == []


def _fill_the_disk(tmp_dir: Path, *args: Any, **kwargs: Any) -> Any:
    """Stand-in for the output writer: half an adapter file lands, then the disk is full."""
    (tmp_dir / "adapter_model.safetensors").write_bytes(b"\0" * 4096)
    raise OSError(errno.ENOSPC, "No space left on device", str(tmp_dir / "adapter_model.safetensors"))


def test_realign_cli_reports_a_full_disk_and_leaves_no_partial_output(good, tmp_path, monkeypatch):
    monkeypatch.setattr("mlflow_nlsr.pipeline.lora.write_outputs", _fill_the_disk)
    out = tmp_path / "out" / "realigned"

    result = _cli_realign(Case(good.base, good.aligned, good.finetuned, ""), out)

    assert result.exit_code != 0
    assert "No space left on device" in result.output, (result.output, result.exception)
    assert "Traceback" not in result.output
    assert not out.exists() and leftovers(tmp_path / "out") == []


def test_the_installed_mlflow_nlsr_command_reports_bad_weights_in_one_line(good, tmp_path):
    case = _nan_in_finetuned(good, tmp_path / "in")
    out = tmp_path / "out"
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow_bin), "nlsr", "realign", "--base", str(case.base), "--aligned", str(case.aligned),
           "--finetuned", str(case.finetuned), "--output", str(out), "--scorer", "magnitude", "--no-progress"]

    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)

    assert proc.returncode == INPUT_EXIT, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # one line, no traceback
    assert "NaN or Inf" in proc.stderr and not out.exists()


# -- the same catalogue through process_version against the real server ----------------------------
@pytest.fixture
def service_for(server, tmp_path):
    """Build an NLSRService (fresh work dir and SQLite store) with the tiny gates and realign overrides."""
    from mlflow_nlsr.service import NLSRService, Settings

    def build(gates: dict | None = None, **settings: Any) -> NLSRService:
        config = write_rules(tmp_path / "nlsr.yaml", gates or TINY_GATES)
        return NLSRService(Settings(tracking_uri=server.url, work_dir=tmp_path / "work", config=config,
                                    **settings))

    return build


def assert_failed_cleanly(svc: Any, server: Any, name: str, version: str, outcome: Any, expect: str) -> None:
    """Failed job, reason audited and tagged, no alias, no realigned version, no realigned dir or temp dir."""
    assert outcome.state == "failed", outcome
    assert any(expect in r for r in outcome.reasons), outcome.reasons
    trail = svc.store.audit_trail(name, version)
    assert trail[-1].event == "failed" and trail[-1].decision == "failed"
    assert any(expect in r for r in trail[-1].reasons), trail[-1].reasons
    assert [e.event for e in trail].count("failed") == 1
    client = RegistryClient(server.url)
    tags = client.get_version(name, version).tags
    assert tags["nlsr.status"] == "failed" and expect in tags["nlsr.error"]
    assert client.search_versions(f"name = '{name}' and tags.`nlsr.realigned` = 'true'") == []
    with pytest.raises(RegistryError):
        client.get_alias_version(name, "safe")
    work = Path(svc.settings.work_dir)
    assert not (work / "jobs" / name / version / "realigned").exists()
    assert leftovers(work) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_process_version_fails_the_job_with_the_reason_audited(name, good, server, model_name, service_for,
                                                               tmp_path):
    case = CASES[name](good, tmp_path / "in")
    version = register(server.url, case.finetuned, model_name,
                       **{"nlsr.base_uri": str(case.base), "nlsr.aligned_uri": str(case.aligned)})
    svc = service_for(realign_overrides=case.options)

    outcome = svc.process_version(model_name, version)

    assert_failed_cleanly(svc, server, model_name, version, outcome, case.expect)
    assert svc.store.get(model_name, version).attempts == 1, "a bad input must not be retried"


@pytest.mark.slow
def test_a_full_disk_fails_the_job_without_promoting_or_leaving_a_partial_dir(
    good, server, model_name, service_for, monkeypatch
):
    monkeypatch.setattr("mlflow_nlsr.pipeline.lora.write_outputs", _fill_the_disk)
    version = register(server.url, good.finetuned, model_name,
                       **{"nlsr.base_uri": str(good.base), "nlsr.aligned_uri": str(good.aligned)})
    svc = service_for(max_attempts=1)

    outcome = svc.process_version(model_name, version)

    assert_failed_cleanly(svc, server, model_name, version, outcome, "No space left on device")


@pytest.mark.slow
def test_a_full_disk_is_retried_with_backoff_before_the_job_fails(
    good, server, model_name, service_for, monkeypatch
):
    monkeypatch.setattr("mlflow_nlsr.pipeline.lora.write_outputs", _fill_the_disk)
    version = register(server.url, good.finetuned, model_name,
                       **{"nlsr.base_uri": str(good.base), "nlsr.aligned_uri": str(good.aligned)})
    svc = service_for()

    outcome = svc.process_version(model_name, version)

    assert outcome.state == "queued", "ENOSPC is transient (space may be freed): retried, not promoted"
    job = svc.store.get(model_name, version)
    assert job.not_before is not None and "No space left" in (job.last_error or "")
    assert svc.store.audit_trail(model_name, version)[-1].event == "retry"
    assert leftovers(Path(svc.settings.work_dir)) == []


# -- registry-only cases ---------------------------------------------------------------------------
def _register_non_model(url: str, name: str, root: Path) -> str:
    """Register a version whose artifacts are a text file, not a model."""
    client = RegistryClient(url)
    junk = root / "junk"
    junk.mkdir(parents=True)
    (junk / "notes.txt").write_text("not a model")
    logged = client.mlflow.create_logged_model(client.experiment_id(None), name=name)
    client.mlflow.log_model_artifacts(logged.model_id, str(junk))
    client.mlflow.finalize_logged_model(logged.model_id, "READY")
    return client.create_version(name, f"models:/{logged.model_id}", model_id=logged.model_id).version


@pytest.mark.slow
def test_an_unknown_version_is_refused_by_name_and_nothing_is_queued(server, model_name, service_for):
    svc = service_for()

    with pytest.raises(RegistryError, match=rf"{model_name}/7.*not found"):
        svc.process_version(model_name, "7")

    assert svc.store.get(model_name, "7") is None


@pytest.mark.slow
def test_a_version_deleted_after_it_was_queued_fails_its_job(good, server, model_name, service_for):
    version = register(server.url, good.finetuned, model_name,
                       **{"nlsr.base_uri": str(good.base), "nlsr.aligned_uri": str(good.aligned)})
    svc = service_for()
    svc.enqueue(model_name, version, trigger="webhook", actor="test")
    RegistryClient(server.url).mlflow.delete_model_version(model_name, version)

    outcome = svc.run_next()

    assert outcome is not None and outcome.state == "failed", outcome
    assert any("not found" in r for r in outcome.reasons), outcome.reasons
    assert svc.store.audit_trail(model_name, version)[-1].decision == "failed"
    assert svc.store.get(model_name, version).attempts == 1, "a deleted version must not be retried"


@pytest.mark.slow
@pytest.mark.parametrize("which", ["nlsr.aligned_uri", "nlsr.base_uri"])
def test_a_models_uri_that_is_not_a_model_fails_the_job(which, good, server, model_name, service_for,
                                                         tmp_path):
    junk_name = f"{model_name}-junk"
    junk_version = _register_non_model(server.url, junk_name, tmp_path)
    refs = {"nlsr.base_uri": str(good.base), "nlsr.aligned_uri": str(good.aligned)}
    refs[which] = f"models:/{junk_name}/{junk_version}"
    version = register(server.url, good.finetuned, model_name, **refs)
    svc = service_for()

    outcome = svc.process_version(model_name, version)

    assert_failed_cleanly(svc, server, model_name, version, outcome, "is not a model")
    cache = Path(svc.settings.work_dir) / "references"
    left = [p.relative_to(cache).as_posix() for p in cache.rglob("*")] if cache.exists() else []
    assert left in ([], [".partial"]), f"a non-model download must be removed: {left}"


@pytest.mark.slow
def test_a_reference_to_an_unknown_version_fails_the_job(good, server, model_name, service_for):
    version = register(server.url, good.finetuned, model_name, **{
        "nlsr.base_uri": str(good.base), "nlsr.aligned_uri": f"models:/{model_name}-nope/3"})
    svc = service_for()

    outcome = svc.process_version(model_name, version)

    assert_failed_cleanly(svc, server, model_name, version, outcome, "not found")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("gates", "expect"),
    [
        ({"suites": ["safty"], "limit": 1, "rules": ["asr <= 1.0"]}, "unknown suite 'safty'"),
        ({"suites": ["safety"], "extra_tasks": ["no_such_task"], "limit": 1, "rules": ["asr <= 1.0"]},
         "unknown lm-eval task 'no_such_task'"),
        ({"suites": ["safety"], "limit": 1, "rules": ["toxicity <= 0.1"]}, "metric 'toxicity' is missing"),
        ({"suites": ["safety"], "limit": 1, "rules": ["asr <= basline"]}, "needs baseline 'basline'"),
    ],
    ids=["unknown-suite", "unknown-task", "unknown-metric", "unknown-baseline"],
)
def test_a_gate_config_naming_unknown_things_fails_the_job_and_moves_no_alias(
    gates, expect, good, server, model_name, service_for
):
    version = register(server.url, good.finetuned, model_name,
                       **{"nlsr.base_uri": str(good.base), "nlsr.aligned_uri": str(good.aligned)})
    svc = service_for(gates)

    outcome = svc.process_version(model_name, version)

    assert outcome.state == "failed" and any(expect in r for r in outcome.reasons), outcome
    trail = svc.store.audit_trail(model_name, version)
    assert trail[-1].decision == "failed" and any(expect in r for r in trail[-1].reasons)
    client = RegistryClient(server.url)
    assert client.search_versions(f"name = '{model_name}' and tags.`nlsr.realigned` = 'true'") == []
    with pytest.raises(RegistryError):
        client.get_alias_version(model_name, "safe")
    assert leftovers(Path(svc.settings.work_dir)) == []


# -- the same registry cases through `mlflow nlsr run` ---------------------------------------------
@pytest.mark.slow
def test_run_cli_names_an_unknown_version(server, model_name, tmp_path):
    result = CliRunner().invoke(cli, ["run", "--model-uri", f"models:/{model_name}/4", "--tracking-uri",
                                      server.url, "--work-dir", str(tmp_path / "w")])

    assert result.exit_code == RegistryError.exit_code, result.output
    assert result.output.startswith("Error: ") and f"{model_name}/4" in result.output
    assert "not found" in result.output


@pytest.mark.slow
def test_run_cli_exits_non_zero_when_the_job_fails(good, server, model_name, tmp_path):
    version = register(server.url, good.finetuned, model_name)
    config = write_rules(tmp_path / "nlsr.yaml", TINY_GATES)
    bad = _inf_in_aligned(good, tmp_path / "in")

    result = CliRunner().invoke(cli, [
        "run", "--model-uri", f"models:/{model_name}/{version}", "--tracking-uri", server.url,
        "--work-dir", str(tmp_path / "w"), "--config", str(config), "--base", str(good.base),
        "--aligned", str(bad.aligned), "--json"])

    assert result.exit_code != 0, result.output
    data = json.loads(result.output[result.output.index("{"):result.output.rindex("}") + 1])
    assert data["state"] == "failed" and any("NaN or Inf" in r for r in data["reasons"])
