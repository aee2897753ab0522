"""One job's work: realign (or calibrate) and gate, the part an executor runs in-process or remotely.

``realign_and_gate`` walks ``running → realigned → gated`` for a claimed job, measuring each stage
(``costs.json``, :mod:`.costs`). The ``local`` executor calls it in the worker; a remote executor calls it
through :func:`mlflow_nlsr.service.remote.run_spec` on a cluster node, acting for the claiming worker
(its worker id, heartbeating the same lease), so a lost lease or a cancelled job refuses every state
change the remote side tries.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow_nlsr import lineage
from mlflow_nlsr.calibration.records import calibration_reasons
from mlflow_nlsr.calibration.run import Models
from mlflow_nlsr.gates.intervals import read_intervals
from mlflow_nlsr.gates.policy import evaluate_policy, load_gate_config
from mlflow_nlsr.options import RealignOptions
from mlflow_nlsr.registry.cache import REFERENCES, ReferenceCache
from mlflow_nlsr.rules import Resolved
from mlflow_nlsr.service.costs import COSTS_FILE, StageCosts, record_costs
from mlflow_nlsr.service.heartbeat import Heartbeat
from mlflow_nlsr.service.retention import note_references
from mlflow_nlsr.store.states import JobState
from mlflow_nlsr.store.tables import Job

if TYPE_CHECKING:
    from mlflow_nlsr.service.orchestrator import NLSRService


def _fault(step: str) -> None:
    from mlflow_nlsr.service.orchestrator import _fault as fault  # the chaos hook lives with the service

    fault(step)


@dataclass(frozen=True)
class WorkInput:
    """What one job works on: the fine-tuned version's URI, its placed rule, its options, its work dir."""

    source_uri: str
    resolved: Resolved
    options: RealignOptions
    job_dir: Path


def realign_and_gate(
    svc: NLSRService,
    job: Job,
    work: WorkInput,
    beat: Heartbeat,
    publish: Callable[[], Mapping[str, Any]] | None = None,
) -> Job:
    """Realign a ``running`` job and gate a ``realigned`` one; return the job as the store has it now.

    `beat` holds the lease (``beat.check()`` raises once it is lost). `publish` (remote executors)
    uploads the outputs before the ``gated`` step is recorded and returns what to add to the job's
    result (where they went); the published report carries the stage costs.
    """
    name, version, worker = job.model_name, job.version, svc.settings.worker_id
    rule, options, job_dir = work.resolved.rule, work.options, work.job_dir
    costs = StageCosts(job_dir / COSTS_FILE)
    base, aligned = use_references(svc, work)
    # the job's own copy (removed with its dir), kept the cache's way so a resume downloads it no more
    finetuned = ReferenceCache(job_dir / "input", svc.client).resolve(work.source_uri)
    out = job_dir / "realigned"
    if job.state is JobState.RUNNING:
        with costs.stage("realign", options.device):
            job = svc._realign(job, Models(base, aligned, finetuned, out), options, rule, beat)
    report = json.loads((out / "nlsr_report.json").read_text())
    gate_config = gate_config_of(rule)
    limit = svc.settings.gate_limit or rule.gate_limit
    if job.state is JobState.REALIGNED:
        metrics: dict[str, dict[str, float]] = {}
        gate_dirs: dict[str, str] = {}  # where each role's samples.jsonl is (references: the gate cache)
        roles = [("finetuned", finetuned), ("aligned", aligned)]
        roles += [("base", base)] if "base" in gate_config.baselines else []  # only when a rule names it
        for role, path in (*roles, ("realigned", out)):
            with costs.stage(f"gate_{role}", options.device):
                metrics[role], gate_dir = svc._gate(role, path, base, gate_config, limit, job_dir)
                gate_dirs[role] = str(Path(gate_dir).resolve())
            _fault("gate")
        summary = json.loads((Path(gate_dirs["realigned"]) / "metrics.json").read_text())
        verdict = evaluate_policy(
            gate_config,
            metrics["realigned"],
            {role: metrics[role] for role, _ in roles},
            read_intervals(summary),
        )
        gated: dict[str, Any] = {
            "verdict": verdict.to_dict(),
            "metrics": metrics,
            "gate_dirs": gate_dirs,
            "reasons": [r.message for r in verdict.reasons]
            + ([] if verdict.passed else calibration_reasons(report)),
        }
        if publish is not None:
            record_costs(out, costs, options)
            gated.update(publish())
        beat.check()
        job = svc.store.advance(job.id, worker, JobState.GATED, result=gated)
        svc._tag_source(name, version, {lineage.STATUS: "gated"})
    return job


def gate_config_of(rule: Any) -> Any:
    """The rule's gate config on the job's device and dtype (the config's own device, if set, wins)."""
    return load_gate_config(rule.gate_config).placed(rule.device, rule.dtype)


def use_references(svc: NLSRService, work: WorkInput) -> tuple[Path, Path]:
    """Base and aligned from the reference cache (downloaded once per content, reused by every job).

    The job's dir records which entries it uses, so ``gc`` leaves them alone while the job is active.
    """
    cache = ReferenceCache(Path(svc.settings.work_dir) / REFERENCES, svc.client)
    base, aligned = cache.resolve(work.resolved.base_uri), cache.resolve(work.resolved.aligned_uri)
    note_references(work.job_dir, (base, aligned))
    return base, aligned
