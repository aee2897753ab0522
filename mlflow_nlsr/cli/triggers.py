"""``mlflow nlsr watch | serve | webhook install``: the triggers that queue registry versions."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import click

from mlflow_nlsr.cli._common import echo_json, handle_errors, json_option
from mlflow_nlsr.cli._service import with_service
from mlflow_nlsr.errors import ConfigError

WEBHOOK_PATH = "/nlsr/webhook"


@click.command()
@click.option("--interval", type=float, default=30.0, show_default=True, help="Seconds between polls.")
@click.option("--once", is_flag=True, help="Poll once and exit.")
@click.option("--name-glob", default=None, help="Only registered models whose name matches this glob.")
@click.option(
    "--since",
    default="now",
    show_default=True,
    help="On the poller's first start, look back this far: now, all, or an ISO date (UTC).",
)
@with_service
@json_option
@handle_errors
def watch(
    interval: float,
    once: bool,
    name_glob: str | None,
    since: str,
    svc_args: dict[str, Any],
    as_json: bool,
) -> None:
    """Poll the registry and queue every new version without an ``nlsr.status`` tag.

    The safety net behind webhooks: MLflow persists no deliveries (a receiver that is down loses
    them) and clients that write to the database directly fire none. Run it next to the workers.
    A watermark per model (in the job store) keeps each pass to new versions; the first start
    looks back only as far as --since (default now: history is not queued).
    """
    from mlflow_nlsr.registry.client import RegistryClient
    from mlflow_nlsr.service.poller import poll_registry
    from mlflow_nlsr.service.settings import Settings
    from mlflow_nlsr.store.repository import JobStore

    settings = Settings(
        tracking_uri=svc_args["tracking_uri"], store_url=svc_args["store_url"], work_dir=svc_args["work_dir"]
    )
    store = JobStore(settings.resolved_store_url())
    client = RegistryClient(settings.tracking_uri)
    while True:
        jobs = poll_registry(store, client, name_glob, since=since)
        queued = [{"model": j.model_name, "version": j.version, "job_id": j.id} for j in jobs]
        if as_json:
            echo_json(queued)
        else:
            for q in queued:
                click.echo(f"queued {q['model']}/{q['version']} (job {q['job_id']})")
        if once:
            return
        time.sleep(interval)


def make_handler(intake: Any) -> type[BaseHTTPRequestHandler]:
    """A request handler bound to one WebhookIntake (POST /nlsr/webhook, GET /nlsr/health)."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "mlflow-nlsr"

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            if self.path == "/nlsr/health":
                self._send(200, {"nlsr": "ok"})
            else:
                self._send(404, {"error": f"unknown path {self.path}"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != WEBHOOK_PATH:
                self._send(404, {"error": f"unknown path {self.path}; POST to {WEBHOOK_PATH}"})
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if length < 0:  # rfile.read(-1) would block until the client hangs up
                self._send(400, {"error": "malformed Content-Length: expected a non-negative integer"})
                return
            if length > intake.max_bytes:
                self._send(
                    413, {"error": f"body of {length} bytes exceeds the {intake.max_bytes}-byte limit"}
                )
                return
            status, body = intake.handle(dict(self.headers.items()), self.rfile.read(length))
            self._send(status, body)

        def log_message(self, fmt: str, *args: Any) -> None:  # never echo headers (or secrets)
            sys.stderr.write(f"nlsr-serve {self.address_string()} {fmt % args}\n")

    return Handler


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8765, show_default=True)
@click.option(
    "--secret",
    envvar="NLSR_WEBHOOK_SECRET",
    required=True,
    help="The secret configured on the MLflow webhook [env NLSR_WEBHOOK_SECRET].",
)
@click.option(
    "--workers",
    type=int,
    default=1,
    show_default=True,
    help="Worker processes to start next to the receiver (0 = receiver only).",
)
@click.option(
    "--max-age", type=int, default=300, show_default=True, help="Reject deliveries older than this (s)."
)
@with_service
@handle_errors
def serve(host: str, port: int, secret: str, workers: int, max_age: int, svc_args: dict[str, Any]) -> None:
    """Receive MLflow webhooks at /nlsr/webhook and run workers that process the queued jobs.

    The receiver verifies X-MLflow-Signature (HMAC-SHA256 over delivery_id.timestamp.body), rejects
    stale timestamps and replayed delivery ids, answers at once and only queues; the workers realign,
    gate, register and promote. Point a webhook at it with `mlflow nlsr webhook install`.
    """
    from mlflow_nlsr.registry.client import RegistryClient
    from mlflow_nlsr.service.intake import WebhookIntake
    from mlflow_nlsr.service.settings import Settings
    from mlflow_nlsr.store.repository import JobStore

    if not secret:
        raise ConfigError("--secret is empty: use the secret configured on the MLflow webhook")
    settings = Settings(
        tracking_uri=svc_args["tracking_uri"],
        store_url=svc_args["store_url"],
        work_dir=svc_args["work_dir"],
        config=svc_args["config_path"],
    )
    intake = WebhookIntake(
        secret=secret,
        store=JobStore(settings.resolved_store_url()),
        client=RegistryClient(settings.tracking_uri),
        max_age=max_age,
    )
    procs = []
    for _ in range(workers):
        cmd = [
            sys.executable,
            "-m",
            "mlflow_nlsr.cli",
            "worker",
            "--work-dir",
            str(settings.work_dir),
            "--store",
            settings.resolved_store_url(),
        ]
        if settings.tracking_uri:
            cmd += ["--tracking-uri", settings.tracking_uri]
        if settings.config:
            cmd += ["--config", str(settings.config)]
        procs.append(subprocess.Popen(cmd))  # noqa: S603 - our own interpreter and module
    server = ThreadingHTTPServer((host, port), make_handler(intake))
    click.echo(
        f"mlflow-nlsr receiving webhooks on http://{host}:{server.server_port}{WEBHOOK_PATH} "
        f"with {workers} worker(s)"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        for p in procs:
            p.terminate()


@click.group()
def webhook() -> None:
    """Manage the MLflow webhook that triggers NLSR."""


@webhook.command("install")
@click.option("--url", required=True, help="Receiver URL, e.g. http://nlsr-svc:8765/nlsr/webhook.")
@click.option("--secret", envvar="NLSR_WEBHOOK_SECRET", required=True, help="Shared HMAC secret.")
@click.option("--name", default="nlsr-trigger", show_default=True)
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", required=True, help="The MLflow server.")
@json_option
@handle_errors
def install(url: str, secret: str, name: str, tracking_uri: str, as_json: bool) -> None:
    """Create (or update) the registry webhook for model_version.created pointing at the receiver.

    The MLflow server needs MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY set (else stored secrets are lost on
    restart), and for http or private-IP receivers MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https and
    MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true. The server caches its webhook list for
    MLFLOW_WEBHOOK_CACHE_TTL seconds (default 60): versions registered in that window after the
    install fire nothing, so run `mlflow nlsr watch --since <install time>` (or the app trigger).
    """
    from datetime import datetime, timezone

    from mlflow_nlsr.registry.client import RegistryClient
    from mlflow_nlsr.registry.install import install_webhook

    installed_at = datetime.now(timezone.utc).replace(microsecond=0)
    webhook_id = install_webhook(RegistryClient(tracking_uri), url, secret, name=name)
    note = cache_note(installed_at)
    if as_json:
        data = {"webhook_id": webhook_id, "url": url, "name": name, "installed_at": installed_at.isoformat()}
        echo_json({**data, "cache_ttl_default_s": WEBHOOK_CACHE_TTL_DEFAULT_S, "note": note})
    else:
        click.echo(f"webhook {name} ({webhook_id}) -> {url}")
        click.echo(note)


#: MLflow's default for MLFLOW_WEBHOOK_CACHE_TTL (mlflow/webhooks/delivery.py reads it server-side)
WEBHOOK_CACHE_TTL_DEFAULT_S = 60


def cache_note(installed_at: Any) -> str:
    """What a user must know after installing: the server's webhook cache delays the first deliveries."""
    since = installed_at.strftime("%Y-%m-%dT%H:%M:%S")
    return (
        "note: the MLflow server caches its webhook list for MLFLOW_WEBHOOK_CACHE_TTL seconds "
        f"(default {WEBHOOK_CACHE_TTL_DEFAULT_S}), so versions registered in that window fire nothing; "
        f"cover it with `mlflow nlsr watch --since {since}` (or `mlflow server --app-name nlsr`)."
    )
