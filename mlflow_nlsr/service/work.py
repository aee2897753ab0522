"""One job's work: realign (or calibrate) and gate, the part an executor runs in-process or remotely.

``realign_and_gate`` walks ``running → realigned → gated`` for a claimed job. The ``local`` executor
calls it in the worker; a remote executor calls it through :func:`mlflow_nlsr.service.remote.run_spec`
on a cluster node, acting for the claiming worker (its worker id, heartbeating the same lease), so a
lost lease or a cancelled job refuses every state change the remote side tries.
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
from mlflow_nlsr.gates.policy import evaluate_policy, load_gate_config
from mlflow_nlsr.options import RealignOptions
from mlflow_nlsr.registry import resolve_to_local
from mlflow_nlsr.rules import Resolved
from mlflow_nlsr.service.heartbeat import Heartbeat
from mlflow_nlsr.store.states import JobState
from mlflow_nlsr.store.tables import Job

if TYPE_CHECKING:
    from mlflow_nlsr.service.orchestrator import NLSRService


@dataclass(frozen=True)
class WorkInput:
    """What one job works on: the fine-tuned version's URI, its rule and options, and its work dir."""

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
    result (where they went).
    """
    from mlflow_nlsr.service.orchestrator import _fault

    name, version, worker = job.model_name, job.version, svc.settings.worker_id
    resolved, options, job_dir = work.resolved, work.options, work.job_dir
    base = resolve_to_local(resolved.base_uri, Path(svc.settings.work_dir) / "inputs", svc.client)
    aligned = resolve_to_local(resolved.aligned_uri, Path(svc.settings.work_dir) / "inputs", svc.client)
    finetuned = resolve_to_local(work.source_uri, job_dir / "input", svc.client)
    out = job_dir / "realigned"
    if job.state is JobState.RUNNING:
        job = svc._realign(job, Models(base, aligned, finetuned, out), options, resolved.rule, beat)
    report = json.loads((out / "nlsr_report.json").read_text())
    gate_config = load_gate_config(resolved.rule.gate_config)
    limit = svc.settings.gate_limit or resolved.rule.gate_limit
    if job.state is JobState.REALIGNED:
        metrics: dict[str, dict[str, float]] = {}
        for role, path in (("finetuned", finetuned), ("aligned", aligned), ("realigned", out)):
            metrics[role] = svc._gate(role, path, base, gate_config, limit, job_dir)
            _fault("gate")
        verdict = evaluate_policy(
            gate_config,
            metrics["realigned"],
            {"finetuned": metrics["finetuned"], "aligned": metrics["aligned"]},
        )
        gated: dict[str, Any] = {
            "verdict": verdict.to_dict(),
            "metrics": metrics,
            "reasons": [r.message for r in verdict.reasons]
            + ([] if verdict.passed else calibration_reasons(report)),
        }
        if publish is not None:
            gated.update(publish())
        beat.check()
        job = svc.store.advance(job.id, worker, JobState.GATED, result=gated)
        svc._tag_source(name, version, {lineage.STATUS: "gated"})
    return job
