"""``RayExecutor``: submit one job's work to a Ray cluster as a task with the rule's resources.

A Ray *task* rather than a Ray *job* (Jobs API): the claiming worker is the task's owner, so the work
dies with the worker (no orphan keeps writing after its lease moved on), ``ray.cancel(force=True)``
kills it, and only ``ray`` core is needed (no dashboard, which ``ray[default]`` and the Jobs API need).
Ray's own task retries are off (``max_retries=0``): a task that dies (node lost, OOM, SIGKILL) is one
failed attempt that the job store retries with its backoff, so retries are counted and audited once.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow_nlsr.errors import ConfigError, ExecutorError
from mlflow_nlsr.service.executor import Executor, Poll, Status
from mlflow_nlsr.service.remote import JobSpec

#: where a node keeps inputs, outputs and gate caches unless the rule names ``work_dir``
DEFAULT_WORK_DIR = Path(tempfile.gettempdir()) / "mlflow-nlsr-ray"
NAMESPACE = "mlflow-nlsr"


@dataclass(frozen=True)
class RayHandle:
    """A submitted task: its ObjectRef and the MLflow run that receives its outputs and log."""

    ref: Any
    run_id: str
    tracking_uri: str | None


def _work(spec_json: str, work_dir: str) -> dict[str, Any]:
    """The task body (runs on a Ray worker)."""
    from mlflow_nlsr.service.remote import run_remote

    return run_remote(spec_json, work_dir)


class RayExecutor(Executor):
    """Executor ``ray``; options are the rule's ``executor:`` keys or ``--executor-option`` values.

    Args:
        address: Ray cluster address; default ``RAY_ADDRESS``, else ``auto`` (``ray start --head`` here).
        num_cpus, num_gpus: task resources (a 7B realign wants ``num_gpus: 1``).
        memory: bytes of memory the task reserves (Ray's scheduler, not a hard limit).
        runtime_env: Ray runtime_env of the task, e.g. ``{env_vars: {HF_HOME: /models}}``.
        work_dir: node-local scratch for inputs, outputs and gate caches.
        resources: custom Ray resources, e.g. ``{accelerator_type:A100: 1}``.

    """

    def __init__(
        self,
        address: str | None = None,
        num_cpus: float = 1,
        num_gpus: float = 0,
        memory: int | None = None,
        runtime_env: Mapping[str, Any] | None = None,
        work_dir: str | None = None,
        resources: Mapping[str, float] | None = None,
    ) -> None:
        if num_cpus < 0 or num_gpus < 0 or (memory is not None and int(memory) <= 0):
            raise ConfigError(
                f"ray executor: expected num_cpus, num_gpus >= 0 and memory > 0 bytes, found "
                f"{num_cpus}, {num_gpus}, {memory}"
            )
        self.address = address or os.environ.get("RAY_ADDRESS") or "auto"
        self.task_options: dict[str, Any] = {
            "num_cpus": num_cpus,
            "num_gpus": num_gpus,
            "max_retries": 0,
            "retry_exceptions": False,
        }
        if memory is not None:
            self.task_options["memory"] = int(memory)
        if runtime_env:
            self.task_options["runtime_env"] = dict(runtime_env)
        if resources:
            self.task_options["resources"] = dict(resources)
        self.work_dir = str(work_dir or DEFAULT_WORK_DIR)
        self._connected = False

    def _connect(self) -> Any:
        import ray

        if not ray.is_initialized():
            try:
                ray.init(address=self.address, namespace=NAMESPACE, log_to_driver=True)
            except ConnectionError as exc:  # transient: the job is retried with the store's backoff
                raise ExecutorError(
                    f"ray executor: no Ray cluster at {self.address!r} ({exc}); start one with "
                    "`ray start --head` or set address / RAY_ADDRESS"
                ) from exc
            self._connected = True
        return ray

    def submit(self, spec: JobSpec) -> Any:
        """Start the job's work as a Ray task."""
        ray = self._connect()
        task = ray.remote(_work).options(name=f"nlsr-job-{spec.job_id}", **self.task_options)
        ref = task.remote(spec.to_json(), self.work_dir)
        return RayHandle(ref, spec.run_id, spec.settings.get("tracking_uri"))

    def poll(self, handle: RayHandle) -> Poll:
        """Running until the task's result is ready; a task that died is a failure with Ray's reason."""
        import ray
        from ray.exceptions import RayError, TaskCancelledError

        ready, _ = ray.wait([handle.ref], timeout=0)
        if not ready:
            return Poll(Status.RUNNING)
        try:
            outcome = ray.get(handle.ref)
        except TaskCancelledError as exc:
            return Poll(Status.CANCELLED, _first_line(exc), "ExecutorError")
        except RayError as exc:  # worker or node died, OOM-killed, object lost
            return Poll(Status.FAILED, f"ray task died: {type(exc).__name__}: {_first_line(exc)}")
        if outcome.get("ok"):
            return Poll(Status.SUCCEEDED)
        return Poll(Status.FAILED, str(outcome.get("error", "")), outcome.get("type"))

    def cancel(self, handle: RayHandle) -> None:
        """Kill the task's worker process (``ray.cancel(force=True)``)."""
        import ray

        ray.cancel(handle.ref, force=True)

    def logs(self, handle: RayHandle) -> str:
        """The task's log, as uploaded to the job's MLflow run (``logs/``); empty if none came back."""
        from mlflow_nlsr.errors import NLSRError
        from mlflow_nlsr.registry import RegistryClient

        with tempfile.TemporaryDirectory() as tmp:
            try:
                got = RegistryClient(handle.tracking_uri).download_artifacts(
                    f"runs:/{handle.run_id}/logs", tmp
                )
            except NLSRError:
                return ""
            return "".join(p.read_text(errors="replace") for p in sorted(Path(got).iterdir()) if p.is_file())

    def close(self) -> None:
        """Disconnect from the cluster if this executor connected."""
        if self._connected:
            import ray

            ray.shutdown()
            self._connected = False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:500] if text else type(exc).__name__
