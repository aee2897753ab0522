"""Overhead of the Ray executor against the in-process one, on the tiny test job (seconds, same run).

Starts a loopback `mlflow server` and a 2-CPU Ray head (plugins/mlflow-nlsr-ray), registers the tiny
base / aligned / fine-tuned trio the service tests use, and runs the same job (magnitude scorer, no
calibration, 2 items per gate) ``--repeat`` times with ``executor: local`` and ``--repeat`` times with
``executor: ray`` (the first job of each also pays for gating the two references once, which later jobs
take from the gate cache; the first Ray job also pays for connecting the driver and the Ray worker's
imports, which later jobs reuse). Wall seconds of ``process_version`` each; the cluster's startup is
timed separately.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python bench/ray_executor.py --repeat 2

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.factories / tests.mlflow_server

from mlflow_nlsr.registry.client import RegistryClient  # noqa: E402
from mlflow_nlsr.registry.models import log_local_model  # noqa: E402
from mlflow_nlsr.service import NLSRService, Settings  # noqa: E402
from tests import factories  # noqa: E402
from tests.mlflow_server import running_server  # noqa: E402
from tests.service.conftest import PERMISSIVE, write_config  # noqa: E402


def timed_job(
    url: str, root: Path, trio: tuple[Path, Path, Path], refs: tuple[str, str], label: str, **settings: object
) -> float:
    """Register a fresh fine-tuned version and return the wall seconds of its job."""
    name = f"bench-{label}-{os.getpid()}-{int(time.time() * 1000)}"
    config = write_config(root / f"{name}.yaml", name, *refs, PERMISSIVE)
    client = RegistryClient(url)
    _, version = log_local_model(trio[2], name=name, registered_model_name=name, client=client)
    svc = NLSRService(  # one work dir per executor: later jobs reuse the reference gate cache, as on a node
        Settings(tracking_uri=url, work_dir=root / label, config=config, calibrate=False, **settings)
    )  # type: ignore[arg-type]
    start = time.perf_counter()
    outcome = svc.process_version(name, version.version)
    seconds = time.perf_counter() - start
    if outcome.state != "promoted":
        raise SystemExit(f"{label}: job ended {outcome.state}: {outcome.reasons}")
    return round(seconds, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="Ray jobs to time (the first is cold).")
    args = parser.parse_args()
    from mlflow_nlsr_ray.cluster import local_cluster

    from mlflow_nlsr.service.executor import close_all

    with tempfile.TemporaryDirectory(prefix="nlsr-bench-ray-") as tmp, running_server(Path(tmp)) as srv:
        root = Path(tmp)
        trio = factories.make_model_trio(root / "models")
        client = RegistryClient(srv.url)
        log_local_model(trio[0], name="base", registered_model_name="bench-base", client=client)
        log_local_model(trio[1], name="aligned", registered_model_name="bench-aligned", client=client)
        refs = ("models:/bench-base/1", "models:/bench-aligned/1")
        local = [timed_job(srv.url, root, trio, refs, "local") for _ in range(args.repeat)]
        start = time.perf_counter()
        with local_cluster(num_cpus=2) as address:
            cluster_s = round(time.perf_counter() - start, 2)
            options = {"address": address, "work_dir": str(root / "ray-node")}
            remote = [
                timed_job(srv.url, root, trio, refs, "ray", executor="ray", executor_options=options)
                for _ in range(args.repeat)
            ]
            close_all()
    print(
        json.dumps(
            {
                "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}",
                "load_average": os.getloadavg(),
                "local_s": local,
                "ray_s": remote,
                "ray_cluster_start_s": cluster_s,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
