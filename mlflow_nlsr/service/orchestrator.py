"""The one orchestrator: an idempotent, resumable ``process_version(name, version)``.

Every trigger (webhook receiver, ``mlflow server --app-name nlsr``, the poller, ``mlflow nlsr run``)
ends here. A job walks queued → running → realigned → gated → promoted | rejected (or failed /
skipped); each step's output is written to the job's work dir before the state advances, so a worker
that dies anywhere is resumed by the next one from the last completed step, and a version is promoted
only after the realigned weights are fully written, registered and gated. The realign and gate steps
(:mod:`.work`) run on the job's executor (:mod:`.executor`: in-process by default, or e.g. on Ray).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from mlflow_nlsr import lineage
from mlflow_nlsr.calibration.records import calibration_runs, calibration_tags
from mlflow_nlsr.calibration.run import CalibrationSettings, JobHooks, Models, calibrate_job
from mlflow_nlsr.calibration.search import Budget
from mlflow_nlsr.calibration.steps import realign_step
from mlflow_nlsr.errors import ConfigError, GateError, InputError, JobStoreError, NLSRError, RegistryError
from mlflow_nlsr.gates.intervals import metrics_with_intervals
from mlflow_nlsr.gates.runner import run_gates
from mlflow_nlsr.io.hashing import sha256_dir
from mlflow_nlsr.pipeline import realign
from mlflow_nlsr.registry import RegistryClient, is_realigned, log_local_model
from mlflow_nlsr.report_sections import calibration_search
from mlflow_nlsr.rules import Resolved, Rules
from mlflow_nlsr.service import model_card, promotion
from mlflow_nlsr.service.costs import COSTS_FILE, StageCosts, cost_metrics, read_report, record_costs
from mlflow_nlsr.service.executor import execute
from mlflow_nlsr.service.heartbeat import Heartbeat, LeaseLost
from mlflow_nlsr.service.intake import enqueue_version
from mlflow_nlsr.service.notify import notify_job
from mlflow_nlsr.service.poller import poll_registry
from mlflow_nlsr.service.preflight import check_job_inputs
from mlflow_nlsr.service.retention import GATE_CACHE, GATE_METRICS, mark_gate_result_used, release_work_dir
from mlflow_nlsr.service.settings import Outcome, Settings, job_work_dir
from mlflow_nlsr.service.settings import slug as _slug
from mlflow_nlsr.service.work import WorkInput, gate_config_of
from mlflow_nlsr.store.repository import JobStore
from mlflow_nlsr.store.states import JobState
from mlflow_nlsr.store.tables import Job

log = logging.getLogger(__name__)

#: errors that a retry cannot fix: the job fails at once, with the reason audited
PERMANENT = (InputError, ConfigError, GateError)
#: chaos-testing hook (docs/operations.md): SIGKILL the worker at the step this env var names
FAULT_ENV = "NLSR_FAULT_INJECT"


def _fault(step: str) -> None:
    """Kill this process with SIGKILL when ``NLSR_FAULT_INJECT`` equals `step` (realign, gate, register)."""
    if os.environ.get(FAULT_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


class NLSRService:
    """Realign, gate, register and promote registered model versions."""

    def __init__(
        self, settings: Settings, *, store: JobStore | None = None, client: RegistryClient | None = None
    ) -> None:
        self.settings = settings
        Path(settings.work_dir).mkdir(parents=True, exist_ok=True)
        self.store = store or JobStore(settings.resolved_store_url(), max_attempts=settings.max_attempts)
        self.client = client or RegistryClient(settings.tracking_uri)
        self.rules = Rules.load(settings.config)

    # -- triggers --------------------------------------------------------------------------
    def enqueue(
        self, name: str, version: str | int, *, trigger: str, actor: str,
        tags: Mapping[str, str] | None = None,
    ) -> Job | None:  # fmt: skip
        """Queue a job unless the version is one NLSR registered itself (loop prevention)."""
        return enqueue_version(
            self.store, self.client, name, version, trigger=trigger, actor=actor, tags=tags
        )

    def poll_once(self, name_glob: str | None = None, *, since: str | None = None) -> list[Job]:
        """Enqueue new versions without an ``nlsr.status`` tag (service/poller.py: watermark, ``since``)."""
        return poll_registry(self.store, self.client, name_glob, since=since)

    def process_version(
        self, name: str, version: str | int, *, trigger: str = "cli", actor: str = "cli"
    ) -> Outcome:
        """Run the whole job for one version now; return its outcome (idempotent: a done job is reported)."""
        info = self.client.get_version(name, version)
        job = enqueue_version(
            self.store, self.client, name, info.version, trigger=trigger, actor=actor, tags=info.tags,
            registered_by=self.client.registering_user(info),
        )  # fmt: skip
        if job is None:
            raise ConfigError(
                f"{info.uri} was registered by NLSR (nlsr.realigned=true); realigned "
                "versions are never realigned again"
            )
        if job.settled:  # done, or parked awaiting approval
            return Outcome.of(job)
        claimed = self.store.claim(self.settings.worker_id, self.settings.lease_seconds, job_id=job.id)
        if claimed is None:
            current = self.store.get_by_id(job.id) or job
            if current.settled:
                return Outcome.of(current)
            raise JobStoreError(
                f"{info.uri}: job {job.id} is {current.state} and leased by "
                f"{current.lease_owner} until {current.lease_expires_at}; try again later"
            )
        return self.run(claimed)

    def run_next(self) -> Outcome | None:
        """Claim one due job (or one whose worker died) and run it; None when there is none."""
        job = self.store.claim(self.settings.worker_id, self.settings.lease_seconds)
        return None if job is None else self.run(job)

    def work(
        self, *, max_jobs: int | None = None, idle_exit_s: float | None = None, poll_interval_s: float = 2.0
    ) -> list[Outcome]:
        """The worker loop: run jobs until `max_jobs` ran or nothing came for `idle_exit_s` seconds."""
        outcomes: list[Outcome] = []
        idle_since = time.monotonic()
        while max_jobs is None or len(outcomes) < max_jobs:
            outcome = self.run_next()
            if outcome is not None:
                outcomes.append(outcome)
                idle_since = time.monotonic()
                continue
            if idle_exit_s is not None and time.monotonic() - idle_since >= idle_exit_s:
                break
            time.sleep(poll_interval_s)
        return outcomes

    # -- one job ---------------------------------------------------------------------------
    def run(self, job: Job) -> Outcome:
        """Run (or resume) a claimed job to a terminal state; failures are audited, never raised."""
        worker = self.settings.worker_id
        try:
            with Heartbeat(self.store, job.id, worker, self.settings.lease_seconds) as beat:
                return self._execute(job, beat)
        except LeaseLost as exc:
            log.warning("%s/%s: %s", job.model_name, job.version, exc)
            return Outcome.of(self.store.get_by_id(job.id) or job, (str(exc),))
        except Exception as exc:  # noqa: BLE001 - every failure must be recorded on the job
            permanent = isinstance(exc, PERMANENT)
            reason = f"{type(exc).__name__}: {exc}"
            log.error("%s/%s failed: %s", job.model_name, job.version, reason)
            try:
                failed = self.store.fail(job.id, worker, reason, retry=not permanent)
            except JobStoreError as store_exc:
                return Outcome.of(job, (reason, str(store_exc)))
            if failed.state is JobState.FAILED:
                self._tag_source(
                    job.model_name,
                    job.version,
                    {lineage.STATUS: "failed", lineage.ERROR: reason[: lineage.MAX_TAG]},
                    quiet=True,
                )
                notify_job(self.store, self.rules.notify, failed)
            return Outcome.of(failed, (reason,))

    def _execute(self, job: Job, beat: Heartbeat) -> Outcome:
        name, version, worker = job.model_name, job.version, self.settings.worker_id
        info = self.client.get_version(name, version)
        if job.registered_by is None:  # queued by a webhook: learn who registered the version now
            self.store.note_registered_by(job.id, self.client.registering_user(info))
        if is_realigned(info):
            return self._skip(job, "version was registered by NLSR (nlsr.realigned=true)")
        given = (("nlsr.base_uri", self.settings.base_uri), ("nlsr.aligned_uri", self.settings.aligned_uri))
        overrides = {k: v for k, v in given if v}
        resolved = self.rules.resolve(name, {**info.tags, **overrides})
        if resolved is None:
            return self._skip(
                job,
                f"no nlsr.yaml rule matches {name!r} and the version has no "
                "nlsr.base_uri/nlsr.aligned_uri tags",
            )
        options = resolved.rule.options(
            **{**self.settings.placement_overrides(), **dict(self.settings.realign_overrides)}
        )
        rule = replace(resolved.rule, device=options.device, dtype=options.dtype)  # one place for the job
        job_dir = job_work_dir(Path(self.settings.work_dir), name, version)
        costs = StageCosts(job_dir / COSTS_FILE)
        self._tag_source(name, version, {lineage.STATUS: str(job.state)})
        work = WorkInput(info.uri, replace(resolved, rule=rule), options, job_dir)
        job = execute(self, job, work, beat)  # realign + gates on the job's executor (service/work.py)
        out = job_dir / "realigned"
        result: dict[str, Any] = dict(job.result or {})
        # the local executor measured each stage here; a remote one published its report with them
        report = record_costs(out, costs, options) if costs.path.is_file() else read_report(out)
        new_version = self._register(job, info.uri, resolved, report, options.sha256(), result, job_dir)
        _fault("register")
        beat.check()
        passed = bool(result["verdict"]["passed"])
        target = resolved.rule.target_name or name
        # auto / manual promotion, alias history, never backwards: service/promotion.py
        decision = promotion.conclude(self, job, resolved.rule, target, new_version, result)
        tags = {lineage.STATUS: decision.state.value, lineage.REALIGNED_VERSION: f"{target}/{new_version}"}
        if not passed:
            tags[lineage.REASONS] = lineage.reasons_text(result["verdict"])
        self._tag_source(name, version, tags)
        done = self.store.finish(
            job.id, worker, decision.state, reasons=decision.reasons, realigned_version=new_version,
            result={**result, "promotion": decision.promotion, "reasons": decision.reasons},
        )  # fmt: skip
        notify_job(self.store, self.rules.notify, done)  # never raises (service/notify.py)
        release_work_dir(self.settings.work_dir, done, self.rules.retention)  # retention: in nlsr.yaml
        return Outcome.of(done)

    # -- steps -----------------------------------------------------------------------------
    def _realign(self, job: Job, models: Models, options: Any, rule: Any, beat: Heartbeat) -> Job:
        """Check the inputs, realign (or calibrate: every attempt audited), advance to REALIGNED."""
        if not (models.output / "nlsr_report.json").exists():
            check_job_inputs(models.base, models.aligned, models.finetuned, options, rule.gate_config)
            if self.settings.calibrate:
                hooks = self._calibration_hooks(job, models, rule, beat)
                calibrate_job(models, options, self._calibration_settings(rule), hooks)
            else:
                realign(models.base, models.aligned, models.finetuned, models.output, options, overwrite=True)
        _fault("realign")
        beat.check()
        job = self.store.advance(
            job.id, self.settings.worker_id, JobState.REALIGNED, config_sha256=options.sha256()
        )
        self._tag_source(job.model_name, job.version, {lineage.STATUS: "realigned"})
        return job

    def _calibration_settings(self, rule: Any) -> CalibrationSettings:
        """The calibration's gates and bounds: the rule's gate config, the service's limits and budget."""
        s = self.settings
        return CalibrationSettings(
            gate_config_of(rule),
            gate_limit=s.gate_limit or rule.gate_limit,
            quick_limit=s.calibration_quick_limit,
            batch_size=s.gate_batch_size,
            budget=Budget(
                s.calibration_max_attempts, s.calibration_time_budget_s, screen_z=s.calibration_screen_z
            ),
        )

    def _calibration_hooks(self, job: Job, models: Models, rule: Any, beat: Heartbeat) -> JobHooks:
        """What a job's calibration may do: realign, gate references (cached), audit, check the lease."""
        config, job_dir = gate_config_of(rule), models.output.parent

        def reference_gate(role: str, path: Path, limit: int | None) -> dict[str, float]:
            return self._gate(role, path, models.base, config, limit, job_dir)[0]

        def audit(event: str, inputs: dict[str, Any], decision: str, reasons: list[str]) -> None:
            self.store.audit(event, actor=self.settings.worker_id, model_name=job.model_name,
                             version=job.version, job_id=job.id, inputs=inputs, decision=decision,
                             reasons=reasons)  # fmt: skip

        realign = realign_step(models.base, models.aligned, models.finetuned)
        return JobHooks(realign=realign, reference_gate=reference_gate, audit=audit, heartbeat=beat.check)

    def _gate(
        self, role: str, path: Path, base: Path, config: Any, limit: int | None, job_dir: Path
    ) -> tuple[dict[str, float], Path]:
        """Gate metrics (with ``<rate>_ci_low/_ci_high``) of one model and the dir holding its samples.

        References are cached by content hash under ``<work>/gate-cache``; the realigned model is gated
        into ``<job>/gates/realigned``. The base model runs only the suites the rules read from it.
        """
        is_adapter = (path / "adapter_config.json").exists()
        suites = config.baseline_suites("base") if role == "base" else None
        gate_kw: dict[str, Any] = config.run_kwargs(limit or None, suites)
        if role == "realigned":
            out = job_dir / "gates" / role
        else:
            settings_key = json.dumps(gate_kw, sort_keys=True, default=str)
            key = f"{sha256_dir(path)[:16]}-{sha256_dir(base)[:8]}-{_short_hash(settings_key)}"
            out = Path(self.settings.work_dir) / GATE_CACHE / key
        metrics_file = out / GATE_METRICS
        if metrics_file.exists():
            if role != "realigned":
                mark_gate_result_used(out)
            return metrics_with_intervals(json.loads(metrics_file.read_text())), out
        run = run_gates(
            base if is_adapter else path,
            adapter=path if is_adapter else None,
            batch_size=self.settings.gate_batch_size,
            output_dir=out,
            **gate_kw,
        )
        return metrics_with_intervals(run.summary()), out

    def _register(
        self,
        job: Job,
        source_uri: str,
        resolved: Resolved,
        report: Mapping[str, Any],
        config_sha: str,
        result: Mapping[str, Any],
        job_dir: Path,
    ) -> str:
        """Register the realigned output once (a resumed job finds the version it registered before)."""
        target = resolved.rule.target_name or job.model_name
        existing = self.client.search_versions(
            f"name = '{target}' and tags.`{lineage.SOURCE_MODEL}` = '{job.model_name}' "
            f"and tags.`{lineage.SOURCE_VERSION}` = '{job.version}' and tags.`{lineage.JOB_ID}` = '{job.id}'"
        )
        if existing:
            return existing[0].version
        tags = lineage.realigned_tags(
            source_name=job.model_name,
            source_version=job.version,
            job_id=job.id,
            base_uri=resolved.base_uri,
            aligned_uri=resolved.aligned_uri,
            report=report,
            config_sha256=config_sha,
            verdict=result["verdict"],
            metrics=result["metrics"],
        )
        search = calibration_search(report)
        if search is not None:
            tags.update(calibration_tags(search))
        card = model_card.render(
            model_card.CardInputs(
                source_uri, resolved.base_uri, resolved.aligned_uri, report, result["verdict"],
                result["metrics"], model_card.read_gate_summary(job_dir / "gates"), job.registered_by, job.id,
            )
        )  # fmt: skip
        (job_dir / "realigned" / model_card.CARD_NAME).write_text(card)  # logged with the weights
        card = f"{card}\n\n{lineage.review_link(job.model_name, job.version)}"  # MLflow's page -> /nlsr/
        model_id, version = log_local_model(
            job_dir / "realigned",
            name=f"{_slug(job.model_name)}-v{job.version}-nlsr",
            client=self.client,
            tags={lineage.SOURCE_MODEL: job.model_name, lineage.SOURCE_VERSION: job.version},
            params={k: v for k, v in report.get("options", {}).items() if v is not None and k != "extra"},
            registered_model_name=target,
            version_tags=tags,
            description=card,
        )
        if version is None:
            raise RegistryError(f"registering the realigned model of {source_uri} returned no version")
        gates_dir = job_dir / "gates"
        flat = {f"{role}.{k}": v for role, values in result["metrics"].items() for k, v in values.items()}
        flat.update(cost_metrics(report))
        run_id = self.client.log_gate_metrics(
            model_id,
            flat,
            params={"verdict": result["verdict"]["passed"]},
            artifacts_dir=gates_dir if gates_dir.exists() else None,
            run_name=lineage.gate_run_name(job.model_name, job.version),
        )
        if search is not None:  # one nested run per calibration attempt
            self.client.log_child_runs(run_id, calibration_runs(search))
        return version.version

    def _skip(self, job: Job, reason: str) -> Outcome:
        self._tag_source(job.model_name, job.version, {lineage.STATUS: "skipped", lineage.REASONS: reason})
        done = self.store.finish(job.id, self.settings.worker_id, JobState.SKIPPED, reasons=[reason])
        release_work_dir(self.settings.work_dir, done, self.rules.retention)
        return Outcome.of(done, (reason,))

    def _tag_source(
        self, name: str, version: str | int, tags: Mapping[str, str], *, quiet: bool = False
    ) -> None:
        try:
            self.client.set_version_tags(name, version, tags)
        except NLSRError:
            if not quiet:
                raise
            log.warning("could not tag %s/%s with %s", name, version, dict(tags))


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]
