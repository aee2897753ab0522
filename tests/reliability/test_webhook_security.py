"""Forged, stale, replayed, oversized or malformed deliveries are refused with a 4xx and queue nothing.

Through the `mlflow nlsr serve` receiver (its request handler in a thread, and the real command as a
subprocess) and through the app plugin's ``/nlsr/webhook`` route on `mlflow server --app-name nlsr`.
Whatever the headers and body, the receiver answers a JSON 2xx/4xx (503 only when the job store fails)
and never writes the secret to a log.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlflow_nlsr.cli.triggers import make_handler
from mlflow_nlsr.errors import JobStoreError
from mlflow_nlsr.registry import webhook as W
from mlflow_nlsr.service.intake import WebhookIntake
from mlflow_nlsr.store.repository import JobStore
from tests.mlflow_server import free_port
from tests.reliability.conftest import APP_SECRET

SECRET = "receiver-secret-Must-Not-Leak-7f3a"
MAX_BYTES = 64 * 1024


def envelope(name: str = "wh-model", version: str | int = "1", **extra) -> bytes:
    data = {"name": name, "version": str(version), "source": "models:/m-0123456789abcdef", "tags": {}}
    return json.dumps({"entity": "model_version", "action": "created", "data": {**data, **extra}}).encode()


def signed(body: bytes, *, secret: str = SECRET, ts: int | None = None, did: str | None = None) -> dict:
    did = did or uuid.uuid4().hex
    ts = int(time.time()) if ts is None else ts
    return {"Content-Type": "application/json", W.DELIVERY_ID_HEADER: did, W.TIMESTAMP_HEADER: str(ts),
            W.SIGNATURE_HEADER: W.sign(secret, did, ts, body)}


def bad_deliveries(secret: str, max_bytes: int) -> dict[str, tuple[dict, bytes, int]]:
    """name -> (headers, body, expected status) for every kind of delivery that must be refused."""
    body = envelope(f"forged-{uuid.uuid4().hex[:8]}")
    unsigned = {k: v for k, v in signed(body, secret=secret).items() if k != W.SIGNATURE_HEADER}
    tampered = signed(body, secret=secret)
    big = json.dumps({"entity": "model_version", "action": "created",
                      "data": {"name": "big", "version": "1", "pad": "x" * max_bytes}}).encode()
    no_ts = {k: v for k, v in signed(body, secret=secret).items() if k != W.TIMESTAMP_HEADER}
    nameless = json.dumps({"entity": "model_version", "action": "created", "data": {"name": "x"}}).encode()
    injected = envelope(version="1; DROP TABLE jobs")
    return {
        "unsigned": (unsigned, body, 401),
        "wrong-secret": (signed(body, secret=secret + "x"), body, 401),
        "tampered-body": (tampered, body.replace(b'"1"', b'"2"'), 401),
        "garbage-signature": ({**signed(body, secret=secret), W.SIGNATURE_HEADER: "v1,AAAA"}, body, 401),
        "other-scheme": ({**signed(body, secret=secret), W.SIGNATURE_HEADER: "v0,abc"}, body, 401),
        "stale": (signed(body, secret=secret, ts=int(time.time()) - 3600), body, 401),
        "from-the-future": (signed(body, secret=secret, ts=int(time.time()) + 3600), body, 401),
        "no-timestamp": (no_ts, body, 400),
        "oversized": (signed(big, secret=secret), big, 413),
        "not-json": (signed(b"{nope", secret=secret), b"{nope", 400),
        "json-array": (signed(b"[1, 2]", secret=secret), b"[1, 2]", 400),
        "no-version": (signed(nameless, secret=secret), nameless, 400),
        "bad-version": (signed(injected, secret=secret), injected, 400),
    }


BAD = sorted(bad_deliveries(SECRET, MAX_BYTES))


# -- the receiver's handler in a thread ------------------------------------------------------------
@pytest.fixture
def store(tmp_path) -> Iterator[JobStore]:
    with JobStore(f"sqlite:///{tmp_path / 'jobs.db'}") as s:
        yield s


@pytest.fixture
def receiver(store) -> Iterator[tuple[str, WebhookIntake]]:
    """`mlflow nlsr serve`'s handler on a free loopback port (no registry client: nothing to tag)."""
    intake = WebhookIntake(secret=SECRET, store=store, max_bytes=MAX_BYTES)
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(intake))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_port}", intake
    server.shutdown()
    server.server_close()


def post(hostport: str, headers: dict, body: bytes, path: str = "/nlsr/webhook") -> tuple[int, dict]:
    conn = http.client.HTTPConnection(hostport, timeout=30)
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


@pytest.mark.parametrize("case", BAD)
def test_the_receiver_refuses_a_bad_delivery_and_queues_nothing(case, receiver, store):
    headers, body, expected = bad_deliveries(SECRET, MAX_BYTES)[case]

    status, answer = post(receiver[0], headers, body)

    assert status == expected, answer
    assert "error" in answer and SECRET not in json.dumps(answer)
    assert store.list_jobs() == [] and store.audit_trail() == []


def test_a_valid_delivery_is_queued_once_and_its_replay_refused(receiver, store):
    body = envelope("replayed-model", 3)
    headers = signed(body)

    first = post(receiver[0], headers, body)
    again = post(receiver[0], headers, body)

    assert first[0] == 202 and first[1]["queued"]["version"] == "3"
    assert again[0] == 409 and "replay" in again[1]["error"]
    assert [(j.model_name, j.version) for j in store.list_jobs()] == [("replayed-model", "3")]


def test_a_negative_content_length_is_refused_without_hanging_the_receiver(receiver, store):
    with socket.create_connection(receiver[0].split(":"), timeout=10) as sock:  # type: ignore[arg-type]
        sock.sendall(b"POST /nlsr/webhook HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{}")
        reply = sock.recv(4096)

    assert reply.startswith(b"HTTP/1.0 400") or reply.startswith(b"HTTP/1.1 400"), reply[:80]
    assert store.list_jobs() == []


def test_a_job_store_failure_answers_503_and_lets_the_retry_through(receiver, store, monkeypatch):
    def broken(*args, **kwargs):
        raise JobStoreError("database is locked")

    monkeypatch.setattr(store, "enqueue", broken)
    body = envelope("retry-model", 1)
    headers = signed(body)

    assert post(receiver[0], headers, body)[0] == 503
    monkeypatch.undo()
    assert post(receiver[0], headers, body)[0] == 202, "MLflow's retry of the same delivery id must pass"
    assert len(store.list_jobs()) == 1


# -- fuzz: no input crashes the receiver -----------------------------------------------------------
_HEADER_NAMES = st.sampled_from([W.SIGNATURE_HEADER, W.TIMESTAMP_HEADER, W.DELIVERY_ID_HEADER,
                                 "Content-Type", "X-Other"])
_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)
_ENVELOPES = st.fixed_dictionaries(
    {"entity": st.sampled_from(["model_version", "registered_model", "", 3]),
     "action": st.sampled_from(["created", "deleted", None]),
     "data": st.one_of(_JSON, st.fixed_dictionaries(
         {"name": st.one_of(_TEXT, st.integers(), st.none()),
          "version": st.one_of(st.integers(-5, 10**20), _TEXT, st.none(), st.booleans()),
          "tags": _JSON}))})


@st.composite
def deliveries(draw) -> tuple[dict, bytes]:
    if draw(st.booleans()):  # correctly signed, arbitrary envelope: exercises parsing behind the HMAC
        body = json.dumps(draw(_ENVELOPES)).encode()
        headers = signed(body, ts=int(time.time()) + draw(st.integers(-400, 400)))
    else:  # anything at all
        body = draw(st.binary(max_size=300) | _JSON.map(lambda v: json.dumps(v).encode()))
        headers = draw(st.dictionaries(_HEADER_NAMES, _TEXT, max_size=4))
    return headers, body


def _accepts(status: int, answer: dict) -> None:
    assert isinstance(answer, dict)
    assert status in (200, 202) or 400 <= status < 500, (status, answer)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(delivery=deliveries())
def test_fuzzed_deliveries_always_get_a_json_2xx_or_4xx(delivery, store):
    intake = WebhookIntake(secret=SECRET, store=store, max_bytes=MAX_BYTES)
    headers, body = delivery

    status, answer = intake.handle(headers, body)

    _accepts(status, answer)
    if status == 202:
        assert store.get(answer["queued"]["model"], answer["queued"]["version"]) is not None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(delivery=deliveries())
def test_fuzzed_deliveries_over_http_never_crash_the_receiver(delivery, receiver):
    headers, body = delivery
    status, answer = post(receiver[0], {k: v for k, v in headers.items()}, body)
    _accepts(status, answer)


def test_the_intake_never_logs_the_secret(store, caplog):
    caplog.set_level(logging.DEBUG)
    intake = WebhookIntake(secret=SECRET, store=store, max_bytes=MAX_BYTES)
    for headers, body, _ in bad_deliveries(SECRET, MAX_BYTES).values():
        intake.handle(headers, body)
    intake.handle(signed(envelope("logged", 1)), envelope("logged", 1))

    assert caplog.records, "the rejections are logged"
    assert SECRET not in caplog.text


# -- the real `mlflow nlsr serve --workers 0` -------------------------------------------------------
@pytest.fixture(scope="module")
def serve_process(tmp_path_factory) -> Iterator[tuple[str, Path, Path]]:
    """`mlflow nlsr serve --workers 0` as a subprocess (secret from the env); (host:port, store db, log)."""
    root = tmp_path_factory.mktemp("serve")
    port, db, log = free_port(), root / "jobs.db", root / "serve.log"
    env = {**os.environ, "NLSR_WEBHOOK_SECRET": SECRET, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "mlflow_nlsr.cli", "serve", "--port", str(port), "--workers", "0",
           "--store", f"sqlite:///{db}", "--work-dir", str(root / "w"),
           "--tracking-uri", "http://127.0.0.1:9"]  # no registry needed for refusals
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"serve did not start:\n{log.read_text()[-3000:]}") from None
                time.sleep(0.5)
        yield f"127.0.0.1:{port}", db, log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.slow
def test_the_serve_command_refuses_every_bad_delivery_queues_nothing_and_never_logs_the_secret(
    serve_process,
):
    hostport, db, log = serve_process
    default_max = 1_000_000
    for name, (headers, body, expected) in bad_deliveries(SECRET, default_max).items():
        status, answer = post(hostport, headers, body)
        assert status == expected, (name, answer)

    with JobStore(f"sqlite:///{db}") as store:
        assert store.list_jobs() == [] and store.audit_trail() == []
    text = log.read_text()
    assert "POST /nlsr/webhook" in text, "the receiver logs requests"
    assert SECRET not in text


def _name_in(body: bytes) -> str | None:
    try:
        return json.loads(body)["data"]["name"]
    except (ValueError, KeyError, TypeError):
        return None


# -- the app plugin's route on `mlflow server --app-name nlsr` --------------------------------------
@pytest.mark.slow
def test_the_app_plugin_route_refuses_every_bad_delivery_and_queues_nothing(server, app_store_url):
    hostport = server.url.removeprefix("http://")
    cases = bad_deliveries(APP_SECRET, 1_000_000)
    names = {_name_in(body) for _, body, _ in cases.values()} - {None}
    for name, (headers, body, expected) in cases.items():
        status, answer = post(hostport, headers, body)
        assert status == expected, (name, status, answer)

    body = envelope(f"app-ok-{uuid.uuid4().hex[:6]}", 1)
    headers = signed(body, secret=APP_SECRET)
    assert post(hostport, headers, body)[0] == 202
    assert post(hostport, headers, body)[0] == 409
    with JobStore(app_store_url) as store:
        queued = {j.model_name for j in store.list_jobs()}
    assert json.loads(body)["data"]["name"] in queued
    assert not (names & queued), names & queued
    assert APP_SECRET not in server.log.read_text()
