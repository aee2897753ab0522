"""Webhook verification is a pure function that accepts exactly MLflow's signed deliveries.

Anything unsigned, wrongly signed, stale, replayed, oversized or malformed is refused with a
WebhookRejected carrying the HTTP status to answer, and no input whatsoever makes `verify` raise
anything else. The secret never appears in messages or logs.
"""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlflow_nlsr.errors import ConfigError, WebhookRejected
from mlflow_nlsr.registry import webhook as W

SECRET = "s3cr3t-Sh0uld-N3ver-Leak"
NOW = 1_795_896_459.0


def _body(**data) -> bytes:
    payload = {
        "entity": "model_version",
        "action": "created",
        "timestamp": "2026-11-28T20:07:39.862952+00:00",
        "data": {
            "name": "nlsr-demo",
            "version": "3",
            "source": "models:/m-7bb93eb35cac4152b0a5b3b9b51b243e",
            "run_id": None,
            "tags": {"nlsr.source": "finetune"},
            "description": None,
            **data,
        },
    }
    return json.dumps(payload).encode()


def _headers(
    body: bytes, *, secret: str = SECRET, did: str = "e94535e2-8d0d-447b", ts: int = int(NOW)
) -> dict:
    return {
        "Content-Type": "application/json",
        W.DELIVERY_ID_HEADER: did,
        W.TIMESTAMP_HEADER: str(ts),
        W.SIGNATURE_HEADER: W.sign(secret, did, ts, body),
    }


def _status(secret, headers, body, now=NOW, **kw) -> int:
    with pytest.raises(WebhookRejected) as info:
        W.verify(secret, headers, body, now, **kw)
    assert SECRET not in str(info.value)
    return info.value.status


def test_header_constants_match_mlflow():
    from mlflow.webhooks import constants as C

    assert W.SIGNATURE_HEADER == C.WEBHOOK_SIGNATURE_HEADER
    assert W.TIMESTAMP_HEADER == C.WEBHOOK_TIMESTAMP_HEADER
    assert W.DELIVERY_ID_HEADER == C.WEBHOOK_DELIVERY_ID_HEADER
    assert W.SIGNATURE_VERSION == C.WEBHOOK_SIGNATURE_VERSION


def test_sign_matches_mlflows_own_signer():
    from mlflow.webhooks.delivery import _generate_hmac_signature

    body = _body().decode()
    assert W.sign(SECRET, "abc-1", "1795896459", body) == _generate_hmac_signature(
        SECRET, "abc-1", "1795896459", body
    )


def test_a_correctly_signed_delivery_is_parsed():
    body = _body()
    event = W.verify(SECRET, _headers(body), body, NOW + 10)
    assert (event.event, event.name, event.version) == ("model_version.created", "nlsr-demo", "3")
    assert event.tags == {"nlsr.source": "finetune"}
    assert event.delivery_id == "e94535e2-8d0d-447b" and event.timestamp == int(NOW)
    assert not event.ignorable


def test_header_names_are_case_insensitive():
    body = _body()
    headers = {k.lower(): v for k, v in _headers(body).items()}
    assert W.verify(SECRET, headers, body, NOW).version == "3"


def test_unsigned_delivery_is_401():
    body = _body()
    headers = _headers(body)
    del headers[W.SIGNATURE_HEADER]
    assert _status(SECRET, headers, body) == 401


def test_wrong_secret_is_401():
    body = _body()
    assert _status(SECRET, _headers(body, secret="other-secret"), body) == 401


def test_tampered_body_is_401():
    body = _body()
    headers = _headers(body)
    assert _status(SECRET, headers, _body(version="4")) == 401


def test_unknown_signature_scheme_is_401():
    body = _body()
    headers = _headers(body)
    headers[W.SIGNATURE_HEADER] = headers[W.SIGNATURE_HEADER].replace("v1,", "v2,")
    assert _status(SECRET, headers, body) == 401


def test_one_matching_signature_among_several_is_accepted():
    body = _body()
    headers = _headers(body)
    headers[W.SIGNATURE_HEADER] = "v1,AAAA " + headers[W.SIGNATURE_HEADER]
    assert W.verify(SECRET, headers, body, NOW).name == "nlsr-demo"


@pytest.mark.parametrize("skew", [301, -301, 10_000])
def test_stale_or_future_timestamp_is_401(skew):
    body = _body()
    assert _status(SECRET, _headers(body), body, now=NOW + skew) == 401


def test_timestamp_inside_the_window_is_accepted():
    body = _body()
    assert W.verify(SECRET, _headers(body), body, NOW + 299).version == "3"


@pytest.mark.parametrize(
    "header, value",
    [(W.DELIVERY_ID_HEADER, ""), (W.DELIVERY_ID_HEADER, "id with spaces"), (W.TIMESTAMP_HEADER, "12a"),
     (W.TIMESTAMP_HEADER, "-1795896459"), (W.TIMESTAMP_HEADER, "")],
)  # fmt: skip
def test_malformed_id_or_timestamp_headers_are_400(header, value):
    body = _body()
    headers = _headers(body)
    headers[header] = value
    assert _status(SECRET, headers, body) == 400


def test_oversized_body_is_413_before_any_other_check():
    body = b"x" * 2048
    assert _status(SECRET, {}, body, max_bytes=1024) == 413


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"\xff\xfe", b"[1, 2]", b'"text"', b'{"entity": "model_version"}',
     b'{"entity": "model_version", "action": "created", "data": []}',
     b'{"entity": "model_version", "action": "created", "data": {"name": "x"}}',
     b'{"entity": "model_version", "action": "created", "data": {"name": 5, "version": "1"}}',
     b'{"entity": "model_version", "action": "created", "data": {"name": "", "version": "1"}}',
     b'{"entity": "registered_model", "action": "created", "data": {"name": " "}}',
     b'{"entity": "model_version", "action": "created", "data": {"name": "x", "version": "1.5"}}',
     b'{"entity": "model_version", "action": "created", "data": {"name": "x", "version": "1", "tags": []}}'],
)  # fmt: skip
def test_malformed_but_signed_payloads_are_400(raw):
    assert _status(SECRET, _headers(raw), raw) == 400


def test_replayed_delivery_id_is_409_through_the_guard():
    body = _body()
    guard = W.ReplayGuard(ttl=600)
    W.verify(SECRET, _headers(body), body, NOW, guard=guard)
    assert _status(SECRET, _headers(body), body, now=NOW + 5, guard=guard) == 409


def test_forged_deliveries_do_not_poison_the_guard():
    body = _body()
    guard = W.ReplayGuard()
    _status(SECRET, _headers(body, secret="forger"), body, guard=guard)
    assert len(guard) == 0
    assert W.verify(SECRET, _headers(body), body, NOW, guard=guard).version == "3"


def test_guard_forgets_ids_after_ttl_and_on_request():
    guard = W.ReplayGuard(ttl=10)
    guard.check_and_remember("a", 100.0)
    with pytest.raises(WebhookRejected) as info:
        guard.check_and_remember("a", 105.0)
    assert info.value.status == 409
    guard.check_and_remember("a", 111.0)  # expired: accepted again
    guard.forget("a")
    guard.check_and_remember("a", 112.0)
    assert len(guard) == 1


def test_guard_is_bounded():
    guard = W.ReplayGuard(ttl=1000, max_entries=3)
    for i in range(5):
        guard.check_and_remember(str(i), 1.0)
    assert len(guard) == 3
    guard.check_and_remember("0", 2.0)  # evicted oldest, so not a replay any more


def test_other_events_are_parsed_but_ignorable():
    tag_set = {"entity": "model_version_tag", "action": "set",
               "data": {"name": "m", "version": "1", "key": "nlsr.status", "value": "pending"}}  # fmt: skip
    event = W.parse_event(tag_set)
    assert event.event == "model_version_tag.set" and event.ignorable and event.data["key"] == "nlsr.status"
    alias = W.parse_event(
        {"entity": "model_version_alias", "action": "deleted", "data": {"name": "m", "alias": "a"}}
    )
    assert alias.ignorable and alias.version is None


def test_mlflows_test_webhook_example_payload_parses():
    example = {
        "entity": "model_version",
        "action": "created",
        "timestamp": "2026-01-01T00:00:00+00:00",
        "data": {
            "name": "example_model",
            "version": "1",
            "source": "models:/123",
            "run_id": "abcd1234abcd5678",
            "tags": {"example_key": "example_value"},
            "description": "An example model version",
        },
    }
    event = W.parse_event(example)
    assert (event.name, event.version, dict(event.tags)) == (
        "example_model",
        "1",
        {"example_key": "example_value"},
    )


def test_empty_secret_is_a_configuration_error():
    body = _body()
    with pytest.raises(ConfigError):
        W.verify("", _headers(body), body, NOW)


def test_verification_never_logs(caplog):
    body = _body()
    with caplog.at_level(logging.DEBUG):
        W.verify(SECRET, _headers(body), body, NOW)
        _status(SECRET, _headers(body, secret="x"), body)
    assert SECRET not in caplog.text and caplog.records == []


_header_values = st.one_of(st.text(max_size=80), st.sampled_from(["", "v1,", "v1,AAAA", str(int(NOW))]))
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
_envelopes = st.fixed_dictionaries(
    {},
    optional={
        "entity": st.one_of(st.sampled_from(["model_version", "registered_model", ""]), _json),
        "action": st.one_of(st.sampled_from(["created", "set"]), _json),
        "data": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={"name": st.one_of(st.text(max_size=10), _json), "version": _json, "tags": _json},
            ),
            _json,
        ),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.binary(max_size=300),
    headers=st.dictionaries(
        st.sampled_from([W.SIGNATURE_HEADER, W.TIMESTAMP_HEADER, W.DELIVERY_ID_HEADER, "x-other"])
        | st.text(max_size=20),
        _header_values,
        max_size=5,
    ),
)
def test_fuzzed_headers_and_bytes_only_ever_raise_webhook_rejected(body, headers):
    try:
        W.verify(SECRET, headers, body, NOW, max_bytes=200)
    except WebhookRejected as exc:
        assert exc.status in {400, 401, 409, 413}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.one_of(_envelopes, _json), raw_tail=st.binary(max_size=8))
def test_fuzzed_signed_payloads_yield_an_event_or_a_400(payload, raw_tail):
    body = json.dumps(payload).encode() + raw_tail
    try:
        event = W.verify(SECRET, _headers(body), body, NOW)
    except WebhookRejected as exc:
        assert exc.status == 400
    else:
        assert isinstance(event.entity, str) and isinstance(event.action, str)
        assert event.ignorable or (event.name is not None and event.version is not None)
