"""Webhooks: Standard Webhooks signing and verification, at-least-once delivery to a real
receiver on 127.0.0.1, retries across passes (time driven with ``now=``), 410, the SSRF
guard, and a crash between the HTTP call and recording its outcome."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from billing_batch._core import clock
from billing_batch._core.errors import ConfigError, WebhookVerificationError
from billing_batch.cli import main as cli_main
from billing_batch.config.settings import PROJECT_ROOT, Settings, load_settings
from billing_batch.storage import state as store
from billing_batch.webhooks import delivery as webhooks
from billing_batch.webhooks import outbox

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
SECRET_A = "whsec_" + base64.b64encode(b"secret-a-" * 4).decode()
SECRET_B = "whsec_" + base64.b64encode(b"secret-b-" * 4).decode()

# --- a real receiver ---------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    error: str | None = None


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that checks every request with ``webhooks.verify``.

    ``actions`` is a queue of answers: an int status code, or ``"hang"`` (wait until
    ``release`` is set, so the sender times out); ``path_actions`` the same per request
    path (first); when both are empty it answers 200.
    """

    secret: str
    port: int = 0
    now: datetime | None = None
    actions: list[int | str] = field(default_factory=list)
    path_actions: dict[str, list[int | str]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    scheme: str = "http"

    def url(self, path: str = "/hooks", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    @property
    def ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.received]


@contextmanager
def serve(tls: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    rcv = Receiver(secret=SECRET_A, scheme="https" if tls else "http")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                webhooks.verify(headers, body, rcv.secret, now=rcv.now)
                verified, error = True, None
            except WebhookVerificationError as exc:
                verified, error = False, str(exc)
            with rcv.lock:
                rcv.received.append(Received(self.path, headers, body, verified, error))
                queue = rcv.path_actions.get(self.path) or rcv.actions
                action = queue.pop(0) if queue else 200
            if action == "hang":
                rcv.release.wait(10)
                return
            status = int(action) if verified else 400
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("location", "http://127.0.0.1:1/elsewhere")
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    rcv.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield rcv
    finally:
        rcv.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve() as rcv:
        yield rcv


# --- settings and events -----------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def make_settings(
    tmp_path: Path,
    endpoints: Sequence[dict[str, Any]],
    *,
    allow_private: bool = True,
    timeout: float = 5.0,
) -> Settings:
    """Settings from a TOML file in tmp_path, like an operator would write them."""
    lines = [
        "[webhooks]",
        f"allow_private_addresses = {_toml_value(allow_private)}",
        f"timeout_seconds = {timeout}",
    ]
    for ep in endpoints:
        lines.append("[[webhooks.endpoints]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in ep.items()]
    config = tmp_path / "billing.toml"
    config.write_text("\n".join(lines) + "\n")
    return load_settings(config, env={"BILLING_HOME": str(tmp_path / "home")})


def endpoint(
    id: str, url: str, secret_env: str = "WH_SECRET_A", events: Sequence[str] = ()
) -> dict[str, Any]:
    ep: dict[str, Any] = {"id": id, "url": url, "secret_env": secret_env}
    if events:
        ep["events"] = list(events)
    return ep


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WH_SECRET_A", SECRET_A)
    monkeypatch.setenv("WH_SECRET_B", SECRET_B)


def record(
    settings: Settings,
    type_: str = "billing.invoice.paid",
    subject: str = "inv_1",
    at: datetime = T0,
    **data: Any,
) -> str:
    """A state change's event, written in its own transaction as the callers do."""
    with store.opened(settings) as con, store.transaction(con):
        return outbox.record_event(
            con,
            type_,
            subject_id=subject,
            data={"id": subject, **data},
            at=at,
            workspace_id="ws_123",
        )


def deliveries(settings: Settings) -> dict[tuple[str, str], dict[str, Any]]:
    with store.opened(settings) as con:
        rows = con.execute("SELECT * FROM webhook_deliveries").fetchall()
    return {(r["event_id"], r["endpoint_id"]): dict(r) for r in rows}


def attempts(settings: Settings) -> list[dict[str, Any]]:
    with store.opened(settings) as con:
        rows = con.execute("SELECT * FROM webhook_attempts ORDER BY seq").fetchall()
    return [dict(r) for r in rows]


def run(settings: Settings, receiver: Receiver | None, now: datetime) -> webhooks.DeliveryReport:
    if receiver is not None:
        receiver.now = now
    return webhooks.deliver(settings, now=now)


# --- signing and verification -------------------------------------------------------------

# The known-answer vector of the Standard Webhooks spec repository:
# github.com/standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py,
# test_sign_function (the same vector is used by the other languages' test suites).
KAT_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
KAT_MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
KAT_TIMESTAMP = 1614265330
KAT_PAYLOAD = b'{"test": 2432232314}'
KAT_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def kat_headers(**override: str) -> dict[str, str]:
    headers = {
        "webhook-id": KAT_MSG_ID,
        "webhook-timestamp": str(KAT_TIMESTAMP),
        "webhook-signature": KAT_SIGNATURE,
    }
    headers.update(override)
    return headers


KAT_NOW = datetime.fromtimestamp(KAT_TIMESTAMP, UTC)


def test_sign_matches_the_standard_webhooks_known_answer_vector() -> None:
    assert webhooks.sign(KAT_SECRET, KAT_MSG_ID, KAT_TIMESTAMP, KAT_PAYLOAD) == KAT_SIGNATURE
    # the whsec_ prefix is optional, as in the reference libraries
    bare = KAT_SECRET.removeprefix("whsec_")
    assert webhooks.sign(bare, KAT_MSG_ID, KAT_TIMESTAMP, KAT_PAYLOAD) == KAT_SIGNATURE


def test_verify_accepts_the_known_answer_vector_and_returns_the_payload() -> None:
    payload = webhooks.verify(kat_headers(), KAT_PAYLOAD, KAT_SECRET, now=KAT_NOW)
    assert payload == {"test": 2432232314}
    # header names are case-insensitive
    upper = {k.upper(): v for k, v in kat_headers().items()}
    assert webhooks.verify(upper, KAT_PAYLOAD, KAT_SECRET, now=KAT_NOW) == payload


def test_verify_accepts_any_of_several_signatures_and_ignores_other_versions() -> None:
    other = webhooks.sign(SECRET_B, KAT_MSG_ID, KAT_TIMESTAMP, KAT_PAYLOAD)
    header = f"v2,{KAT_SIGNATURE[3:]} {other} v1,not-base64! {KAT_SIGNATURE}"
    payload = webhooks.verify(
        kat_headers(**{"webhook-signature": header}), KAT_PAYLOAD, KAT_SECRET, now=KAT_NOW
    )
    assert payload == {"test": 2432232314}
    # a receiver in the middle of a rotation may pass both of its secrets
    both = f"{SECRET_B} {KAT_SECRET}"
    assert webhooks.verify(kat_headers(), KAT_PAYLOAD, both, now=KAT_NOW) == payload


@pytest.mark.parametrize(
    ("headers", "body", "message"),
    [
        (kat_headers(), b'{"test": 2432232315}', "no matching signature"),
        (kat_headers(), KAT_PAYLOAD + b" ", "no matching signature"),
        (kat_headers(**{"webhook-id": "msg_other"}), KAT_PAYLOAD, "no matching signature"),
        (kat_headers(**{"webhook-timestamp": str(KAT_TIMESTAMP + 1)}), KAT_PAYLOAD, "no matching"),
        (
            kat_headers(**{"webhook-signature": "v2," + KAT_SIGNATURE[3:]}),
            KAT_PAYLOAD,
            "no matching signature",
        ),
        (kat_headers(**{"webhook-timestamp": "hello"}), KAT_PAYLOAD, "not an integer"),
        (kat_headers(**{"webhook-signature": ""}), KAT_PAYLOAD, "webhook-signature"),
    ],
    ids=["tampered-body", "trailing-space", "other-id", "other-timestamp", "v2-only",
         "bad-timestamp", "empty-signature"],
)  # fmt: skip
def test_verify_rejects_tampering(headers: dict[str, str], body: bytes, message: str) -> None:
    with pytest.raises(WebhookVerificationError, match=message):
        webhooks.verify(headers, body, KAT_SECRET, now=KAT_NOW)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_verify_rejects_a_missing_header(missing: str) -> None:
    headers = kat_headers()
    del headers[missing]
    with pytest.raises(WebhookVerificationError, match=f"missing header.*{missing}"):
        webhooks.verify(headers, KAT_PAYLOAD, KAT_SECRET, now=KAT_NOW)


def test_verify_rejects_stale_and_future_timestamps_beyond_the_tolerance() -> None:
    h, body = kat_headers(), KAT_PAYLOAD
    # exactly at the 5-minute tolerance: still accepted, both ways
    webhooks.verify(h, body, KAT_SECRET, now=KAT_NOW + timedelta(seconds=300))
    webhooks.verify(h, body, KAT_SECRET, now=KAT_NOW - timedelta(seconds=300))
    with pytest.raises(WebhookVerificationError, match="too old"):
        webhooks.verify(h, body, KAT_SECRET, now=KAT_NOW + timedelta(seconds=301))
    with pytest.raises(WebhookVerificationError, match="future"):
        webhooks.verify(h, body, KAT_SECRET, now=KAT_NOW - timedelta(seconds=301))
    # and with the real clock, a 2021 timestamp is stale
    with pytest.raises(WebhookVerificationError, match="too old"):
        webhooks.verify(h, body, KAT_SECRET)
    # a custom tolerance
    webhooks.verify(h, body, KAT_SECRET, now=KAT_NOW + timedelta(hours=1), tolerance=3600)


def test_a_wrong_secret_fails_and_a_malformed_secret_is_a_config_error() -> None:
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        webhooks.verify(kat_headers(), KAT_PAYLOAD, SECRET_B, now=KAT_NOW)
    with pytest.raises(ConfigError):
        webhooks.verify(kat_headers(), KAT_PAYLOAD, "whsec_not base64!", now=KAT_NOW)
    with pytest.raises(ConfigError):
        webhooks.sign("whsec_", "msg_1", 1, b"{}")


def test_signature_header_signs_with_every_secret() -> None:
    header = webhooks.signature_header(f"{SECRET_A} {SECRET_B}", "msg_1", 1700000000, b"{}")
    assert header.split(" ") == [
        webhooks.sign(SECRET_A, "msg_1", 1700000000, b"{}"),
        webhooks.sign(SECRET_B, "msg_1", 1700000000, b"{}"),
    ]


# --- delivery ----------------------------------------------------------------------------


def test_an_event_is_delivered_signed_with_the_outbox_payload_as_body(
    tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(tmp_path, [endpoint("crm", receiver.url())])
    eid = record(settings, amount=Decimal("550.00"))
    now = T0 + timedelta(minutes=1)

    report = run(settings, receiver, now)

    assert (report.scheduled, report.attempted, report.delivered) == (1, 1, 1)
    assert (report.retry_scheduled, report.failed) == (0, 0)
    [got] = receiver.received
    assert got.verified, got.error
    assert got.path == "/hooks"
    assert got.headers["webhook-id"] == eid
    assert got.headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert got.headers["content-type"] == "application/json"
    with store.opened(settings) as con:
        payload = con.execute("SELECT payload FROM outbox WHERE id = ?", (eid,)).fetchone()[0]
    assert got.body == payload.encode()  # byte for byte
    body = json.loads(got.body)
    assert body == {
        "type": "billing.invoice.paid",
        "timestamp": "2026-03-02T09:30:00Z",
        "data": {"id": "inv_1", "amount": 550},
    }
    row = deliveries(settings)[(eid, "crm")]
    assert row["status"] == "delivered"
    assert row["attempts"] == 1
    assert row["delivered_at"] == clock.ts(now)
    [attempt] = attempts(settings)
    assert attempt["webhook_id"] == eid
    assert attempt["attempt_no"] == 1
    assert attempt["status_code"] == 200
    assert attempt["error"] is None
    assert attempt["duration_ms"] >= 0

    # a second pass has nothing to do
    again = run(settings, receiver, now + timedelta(hours=1))
    assert (again.scheduled, again.attempted) == (0, 0)
    assert len(receiver.received) == 1


def test_rotation_sends_one_signature_per_secret_and_either_secret_verifies(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WH_ROTATING", f"{SECRET_A}  {SECRET_B}")
    settings = make_settings(tmp_path, [endpoint("crm", receiver.url(), "WH_ROTATING")])
    record(settings)
    run(settings, receiver, T0)

    [got] = receiver.received
    assert got.verified
    signatures = got.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    for secret in (SECRET_A, SECRET_B):
        assert webhooks.verify(got.headers, got.body, secret, now=T0)["type"] == (
            "billing.invoice.paid"
        )
    with pytest.raises(WebhookVerificationError):
        other = "whsec_" + base64.b64encode(b"x" * 32).decode()
        webhooks.verify(got.headers, got.body, other, now=T0)


def test_500_then_200_retries_with_the_same_id_and_a_new_timestamp_and_signature(
    tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(tmp_path, [endpoint("crm", receiver.url())])
    eid = record(settings)
    receiver.actions = [500]

    first = run(settings, receiver, T0)
    assert (first.attempted, first.delivered, first.retry_scheduled) == (1, 0, 1)
    [result] = first.results
    assert result.outcome == "retry_scheduled" and result.status_code == 500
    assert result.next_attempt_at is not None
    # the first retry comes about 5 seconds later (with jitter)
    assert T0 + timedelta(seconds=4) <= result.next_attempt_at <= T0 + timedelta(seconds=6)
    row = deliveries(settings)[(eid, "crm")]
    assert (row["status"], row["attempts"], row["last_error"]) == ("pending", 1, "HTTP 500")
    assert row["next_attempt_at"] == clock.ts(result.next_attempt_at)
    assert first.to_dict()["note"].startswith("1 delivery attempt(s) failed at the receiver")

    # not due yet: nothing happens
    assert run(settings, receiver, T0 + timedelta(seconds=3)).attempted == 0

    later = T0 + timedelta(seconds=7)
    second = run(settings, receiver, later)
    assert (second.attempted, second.delivered) == (1, 1)

    one, two = receiver.received
    assert one.verified and two.verified
    assert one.headers["webhook-id"] == two.headers["webhook-id"] == eid
    assert one.body == two.body
    assert one.headers["webhook-timestamp"] == str(int(T0.timestamp()))
    assert two.headers["webhook-timestamp"] == str(int(later.timestamp()))
    assert one.headers["webhook-signature"] != two.headers["webhook-signature"]
    logged = attempts(settings)
    assert [(a["attempt_no"], a["status_code"], a["webhook_id"]) for a in logged] == [
        (1, 500, eid),
        (2, 200, eid),
    ]
    assert logged[0]["error"] == "HTTP 500" and logged[1]["error"] is None
    row = deliveries(settings)[(eid, "crm")]
    assert (row["status"], row["attempts"], row["last_error"]) == ("delivered", 2, None)


def test_a_timeout_is_a_failed_attempt_with_a_retry_scheduled(
    tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(tmp_path, [endpoint("crm", receiver.url())], timeout=0.2)
    eid = record(settings)
    receiver.actions = ["hang"]

    report = run(settings, receiver, T0)
    receiver.release.set()

    assert (report.attempted, report.delivered, report.retry_scheduled) == (1, 0, 1)
    [attempt] = attempts(settings)
    assert attempt["status_code"] is None
    assert "timeout" in attempt["error"]
    row = deliveries(settings)[(eid, "crm")]
    assert row["status"] == "pending" and row["attempts"] == 1
    assert "timeout" in row["last_error"]

    # the next pass delivers it
    assert run(settings, receiver, T0 + timedelta(minutes=1)).delivered == 1
    assert receiver.ids == [eid, eid]


def test_a_redirect_is_not_followed(tmp_path: Path, receiver: Receiver) -> None:
    settings = make_settings(tmp_path, [endpoint("crm", receiver.url())])
    record(settings)
    receiver.actions = [302]
    report = run(settings, receiver, T0)
    assert report.retry_scheduled == 1
    assert "redirects are not followed" in (report.results[0].error or "")
    assert len(receiver.received) == 1


def test_410_disables_the_endpoint_and_stops_its_deliveries(
    tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(
        tmp_path,
        [endpoint("gone", receiver.url("/gone")), endpoint("crm", receiver.url("/crm"))],
    )
    e1 = record(settings, subject="inv_1")
    e2 = record(settings, subject="inv_2", at=T0 + timedelta(seconds=1))
    receiver.path_actions["/gone"] = [410]

    report = run(settings, receiver, T0 + timedelta(minutes=1))

    assert report.disabled_endpoints == ["gone"]
    assert report.stopped == 1  # gone's delivery of the second event
    gone_requests = [r for r in receiver.received if r.path == "/gone"]
    assert len(gone_requests) == 1
    rows = deliveries(settings)
    assert rows[(e1, "gone")]["status"] == "failed"
    assert rows[(e2, "gone")]["status"] == "failed"
    assert "endpoint disabled" in rows[(e2, "gone")]["last_error"]
    assert rows[(e2, "gone")]["attempts"] == 0  # stopped without an attempt
    assert rows[(e1, "crm")]["status"] == rows[(e2, "crm")]["status"] == "delivered"
    [state] = [e for e in webhooks.list_endpoints(settings) if e["id"] == "gone"]
    assert state["state"] == "disabled"
    assert "410" in state["disabled_reason"]

    # later events are never sent to the disabled endpoint
    e3 = record(settings, subject="inv_3", at=T0 + timedelta(hours=1))
    later = run(settings, receiver, T0 + timedelta(hours=2))
    assert later.delivered == 1
    assert (e3, "gone") not in deliveries(settings)
    assert len([r for r in receiver.received if r.path == "/gone"]) == 1

    # re-enabled, it receives the events recorded from then on (not the ones it missed)
    enabled = webhooks.enable_endpoint(settings, "gone", now=T0 + timedelta(hours=3))
    assert enabled["state"] == "enabled" and enabled["disabled_reason"] is None
    e4 = record(settings, subject="inv_4", at=T0 + timedelta(hours=4))
    run(settings, receiver, T0 + timedelta(hours=5))
    assert [r.headers["webhook-id"] for r in receiver.received if r.path == "/gone"][-1] == e4
    assert (e3, "gone") not in deliveries(settings)


def test_gives_up_about_72_hours_after_the_event(tmp_path: Path, receiver: Receiver) -> None:
    settings = make_settings(tmp_path, [endpoint("crm", receiver.url())])
    eid = record(settings)
    receiver.actions = [500] * 100
    times: list[datetime] = []
    now = T0
    for _ in range(30):
        report = run(settings, receiver, now)
        assert report.attempted == 1
        times.append(now)
        row = deliveries(settings)[(eid, "crm")]
        if row["status"] != "pending":
            break
        now = clock.parse_ts(row["next_attempt_at"])
    row = deliveries(settings)[(eid, "crm")]
    assert row["status"] == "failed"
    assert re.fullmatch(r"gave up after 1[01] attempt\(s\): HTTP 500", row["last_error"])
    assert report.failed == 1 and report.results[0].outcome == "failed"
    # the schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h (± 20 %), then the
    # last attempt at the 72-hour deadline
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    for gap, nominal in zip(gaps[:8], webhooks.RETRY_DELAYS, strict=False):
        assert nominal * 0.8 <= gap <= nominal * 1.2
    # ten attempts, or eleven when the jitter shortened the gaps enough to fit one more
    assert times[-1] == T0 + timedelta(hours=72)
    assert len(times) in (10, 11) and len(times) == len(attempts(settings))
    assert len(set(receiver.ids)) == 1
    # and it is never tried again
    assert run(settings, receiver, T0 + timedelta(days=10)).attempted == 0


def test_an_event_first_attempted_after_the_deadline_gets_one_attempt(
    tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(tmp_path, [endpoint("crm", receiver.url())])
    run(settings, receiver, T0)  # the endpoint is known from T0
    eid = record(settings, at=T0 + timedelta(hours=1))
    receiver.actions = [503]
    report = run(settings, receiver, T0 + timedelta(days=5))  # no pass ran for days
    assert report.attempted == 1 and report.failed == 1
    assert deliveries(settings)[(eid, "crm")]["status"] == "failed"


def test_events_are_filtered_per_endpoint(tmp_path: Path, receiver: Receiver) -> None:
    settings = make_settings(
        tmp_path,
        [
            endpoint("paid-only", receiver.url("/paid"), events=["billing.invoice.paid"]),
            endpoint("all", receiver.url("/all")),
        ],
    )
    paid = record(settings, "billing.invoice.paid", "inv_1")
    overdue = record(settings, "billing.invoice.overdue", "inv_2")
    usage = record(settings, "billing.usage.recorded", "ing_1")

    report = run(settings, receiver, T0 + timedelta(minutes=1))

    assert report.delivered == 4
    by_path: dict[str, list[str]] = {}
    for r in receiver.received:
        by_path.setdefault(r.path, []).append(r.headers["webhook-id"])
    assert by_path["/paid"] == [paid]
    assert sorted(by_path["/all"]) == sorted([paid, overdue, usage])
    assert set(deliveries(settings)) == {
        (paid, "paid-only"),
        (paid, "all"),
        (overdue, "all"),
        (usage, "all"),
    }


def test_a_new_endpoint_gets_recent_events_but_not_old_history(
    tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(tmp_path, [endpoint("crm", receiver.url())])
    old = record(settings, subject="inv_old", at=T0 - timedelta(days=5))
    recent = record(settings, subject="inv_recent", at=T0 - timedelta(hours=1))

    run(settings, receiver, T0)  # the endpoint first appears now

    assert receiver.ids == [recent]
    assert (old, "crm") not in deliveries(settings)
    [state] = webhooks.list_endpoints(settings)
    assert state["first_seen_at"] == clock.ts(T0)
    assert state["deliver_since"] == clock.ts(T0 - timedelta(hours=72))

    # every event recorded after the endpoint appeared is delivered
    later = record(settings, subject="inv_later", at=T0 + timedelta(days=1))
    run(settings, receiver, T0 + timedelta(days=1, minutes=1))
    assert receiver.ids == [recent, later]


# --- outbound safety ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("2002:a00:1::1", False),  # 6to4 around 10.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 around 169.254.169.254
        ("8.8.8.8", True),
        ("93.184.216.34", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:8.8.8.8", True),
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    assert webhooks.is_public_address(address) is public


def test_private_destinations_are_refused_without_any_connection(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = receiver.port
    urls = {
        "loopback": f"http://127.0.0.1:{port}/hooks",
        "private": "http://10.1.2.3/hooks",
        "v6-loopback": f"http://[::1]:{port}/hooks",
        "metadata": "http://169.254.169.254/latest/meta-data",
        "mapped": f"http://[::ffff:127.0.0.1]:{port}/hooks",
        "by-name": "https://hooks.internal.test/hooks",
    }
    resolved: list[str] = []

    def fake_resolve(host: str, port: int) -> list[str]:
        resolved.append(host)
        return ["93.184.216.34", "10.0.0.7"]  # one private answer is enough to refuse

    monkeypatch.setattr(webhooks, "_resolve", fake_resolve)
    settings = make_settings(
        tmp_path, [endpoint(k, v) for k, v in urls.items()], allow_private=False
    )
    assert settings.webhooks.allow_private_addresses is False
    eid = record(settings)
    sent: list[httpx.Request] = []

    def transport(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    with httpx.Client(transport=httpx.MockTransport(transport)) as client:
        report = webhooks.deliver(settings, now=T0, client=client)

    assert sent == [] and receiver.received == []
    assert resolved == ["hooks.internal.test"]
    assert report.attempted == len(urls) and report.delivered == 0
    assert report.retry_scheduled == len(urls)
    for a in attempts(settings):
        assert a["status_code"] is None
        assert a["error"].startswith("destination refused"), a
    errors = {a["endpoint_id"]: a["error"] for a in attempts(settings)}
    assert "10.0.0.7" in errors["by-name"] and "93.184" not in errors["by-name"]
    assert "allow_private_addresses" in errors["metadata"]
    assert all(r["status"] == "pending" for r in deliveries(settings).values())
    assert {k[0] for k in deliveries(settings)} == {eid}


def test_the_connection_goes_to_the_address_that_was_checked(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name is resolved once, checked, and that very address is
    used; the Host header keeps the name. (The name below does not exist in DNS.)"""
    calls: list[tuple[str, int]] = []

    def fake_resolve(host: str, port: int) -> list[str]:
        calls.append((host, port))
        return ["127.0.0.1"]

    monkeypatch.setattr(webhooks, "_resolve", fake_resolve)
    url = f"http://hooks.example.invalid:{receiver.port}/hooks"
    settings = make_settings(tmp_path, [endpoint("crm", url)], allow_private=True)
    eid = record(settings)
    report = run(settings, receiver, T0)
    assert report.delivered == 1
    assert calls == [("hooks.example.invalid", receiver.port)]
    [got] = receiver.received
    assert got.headers["host"] == f"hooks.example.invalid:{receiver.port}"
    assert got.headers["webhook-id"] == eid and got.verified


def _self_signed(tmp_path: Path, name: str) -> tuple[Path, Path, str]:
    """A self-signed certificate for ``name`` (and not for 127.0.0.1)."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.now(UTC) - timedelta(days=1))
        .not_valid_after(datetime.now(UTC) + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_text(pem)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path, pem


def test_https_to_the_checked_address_keeps_sni_and_the_certificate_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key, pem = _self_signed(tmp_path, "hooks.example.test")
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    seen_sni: list[str | None] = []

    def remember_sni(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        seen_sni.append(name)

    server_tls.sni_callback = remember_sni
    monkeypatch.setattr(webhooks, "_resolve", lambda host, port: ["127.0.0.1"])

    with serve(server_tls) as rcv:
        settings = make_settings(
            tmp_path,
            [
                endpoint("good", rcv.url(host="hooks.example.test")),
                endpoint("wrong-name", rcv.url(host="other.example.test")),
            ],
        )
        eid = record(settings)
        rcv.now = T0
        trust = ssl.create_default_context(cadata=pem)
        with httpx.Client(verify=trust) as client:
            report = webhooks.deliver(settings, now=T0, client=client)

        assert [r.headers["host"] for r in rcv.received] == [f"hooks.example.test:{rcv.port}"]
        assert rcv.received[0].verified and rcv.received[0].headers["webhook-id"] == eid
    assert "hooks.example.test" in seen_sni
    assert report.delivered == 1 and report.retry_scheduled == 1
    [wrong] = [r for r in report.results if r.endpoint_id == "wrong-name"]
    # the certificate is checked against the URL's host name, not the pinned IP
    assert "certificate" in (wrong.error or "").lower()


def test_a_dead_endpoint_does_not_hold_the_pass(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    settings = make_settings(tmp_path, [endpoint("dead", f"http://127.0.0.1:{dead_port}/")])
    for i in range(5):
        record(settings, subject=f"inv_{i}", at=T0 + timedelta(seconds=i))
    report = webhooks.deliver(settings, now=T0 + timedelta(minutes=1))
    assert report.attempted == 5 and report.retry_scheduled == 5
    errors = [a["error"] for a in attempts(settings)]
    assert all(e.startswith("connection error") for e in errors[:3])
    assert all(e.startswith("not sent: endpoint unreachable") for e in errors[3:])


def test_configuration_errors_fail_the_pass_before_any_request(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, [endpoint("crm", receiver.url(), "WH_MISSING")])
    record(settings)
    with pytest.raises(ConfigError, match="WH_MISSING"):
        webhooks.deliver(settings, now=T0)
    monkeypatch.setenv("WH_MISSING", "not-a-secret!")
    with pytest.raises(ConfigError, match="whsec_"):
        webhooks.deliver(settings, now=T0)
    bad = make_settings(tmp_path, [endpoint("crm", "ftp://example.com/hooks")])
    with pytest.raises(ConfigError, match="http"):
        webhooks.deliver(bad, now=T0)
    assert receiver.received == [] and attempts(settings) == []


# --- at-least-once across a crash ----------------------------------------------------------

CRASHING_PASS = textwrap.dedent(
    """
    import os, sys
    from datetime import datetime
    from billing_batch import config
    from billing_batch.storage import state as store
    from billing_batch.webhooks import delivery as webhooks, outbox

    settings = config.load_settings(sys.argv[1], env={"BILLING_HOME": sys.argv[2]})
    now = datetime.fromisoformat(sys.argv[3])
    # the state change and its event, in one transaction
    with store.opened(settings) as con, store.transaction(con):
        outbox.record_event(con, "billing.invoice.paid", subject_id="inv_crash",
                            data={"id": "inv_crash"}, at=now, workspace_id="ws_123")

    def crash(*args, **kwargs):
        os._exit(17)  # killed after the HTTP call returned, before its outcome is recorded

    webhooks._record_outcome = crash
    webhooks.deliver(settings, now=now)
    """
)


def test_a_crash_after_the_http_call_redelivers_once_with_the_same_id(
    tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(tmp_path, [endpoint("crm", receiver.url())])
    script = tmp_path / "crashing_pass.py"
    script.write_text(CRASHING_PASS)
    receiver.now = T0
    env = {**os.environ, "WH_SECRET_A": SECRET_A}
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            str(settings.config_file),
            str(settings.home),
            T0.isoformat(),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 17, proc.stderr

    # the receiver got it (and answered 200), but nothing recorded the outcome
    [first] = receiver.received
    assert first.verified
    eid = first.headers["webhook-id"]
    assert eid == outbox.event_id("billing.invoice.paid", "inv_crash")
    row = deliveries(settings)[(eid, "crm")]
    assert row["status"] == "pending" and row["attempts"] == 1
    assert "no outcome recorded" in row["last_error"]
    assert attempts(settings) == []

    # a concurrent or immediate pass leaves the claimed delivery alone for a while
    assert run(settings, receiver, T0 + timedelta(seconds=5)).attempted == 0

    # the next pass delivers it again, with the same webhook-id...
    later = T0 + timedelta(minutes=5)
    report = run(settings, receiver, later)
    assert report.delivered == 1
    assert receiver.ids == [eid, eid]
    assert receiver.received[1].verified
    row = deliveries(settings)[(eid, "crm")]
    assert row["status"] == "delivered"
    [attempt] = attempts(settings)
    assert (attempt["attempt_no"], attempt["status_code"], attempt["webhook_id"]) == (2, 200, eid)

    # ...and then never again
    assert run(settings, receiver, later + timedelta(days=1)).attempted == 0
    assert receiver.ids == [eid, eid]


# --- CLI -----------------------------------------------------------------------------------


def test_cli_deliver_list_and_endpoints(
    tmp_path: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(tmp_path, [endpoint("crm", receiver.url())])
    now = clock.utcnow()  # the CLI uses the real clock
    paid = record(settings, "billing.invoice.paid", "inv_1", at=now)
    overdue = record(settings, "billing.invoice.overdue", "inv_2", at=now)
    receiver.actions = [500]
    argv = ["--config", str(settings.config_file), "--home", str(settings.home), "webhooks"]

    assert cli_main([*argv, "deliver"]) == 0  # a 500 is a scheduled retry, not a failure
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert summary["attempted"] == 2
    assert summary["delivered"] == 1
    assert summary["retry_scheduled"] == 1
    assert summary["failed"] == 0
    assert summary["disabled_endpoints"] == []
    assert summary["problems"][0]["status_code"] == 500
    assert "retried" in summary["note"]
    assert "retries are scheduled" in err

    assert cli_main([*argv, "list", "--status", "pending"]) == 0
    pending = json.loads(capsys.readouterr().out)
    assert len(pending) == 1
    assert pending[0]["status"] == "pending"
    assert pending[0]["attempt_log"][0]["status_code"] == 500
    assert pending[0]["event_id"] in (paid, overdue)

    assert cli_main([*argv, "list"]) == 0
    assert {d["status"] for d in json.loads(capsys.readouterr().out)} == {"pending", "delivered"}

    assert cli_main([*argv, "endpoints"]) == 0
    out = capsys.readouterr().out
    assert SECRET_A not in out and SECRET_A.removeprefix("whsec_") not in out
    [ep] = json.loads(out)
    assert ep["id"] == "crm" and ep["state"] == "enabled"
    assert ep["secret_env"] == "WH_SECRET_A" and ep["secrets_set"] == 1
    assert ep["deliveries"] == {"delivered": 1, "pending": 1}


def test_cli_deliver_exits_non_zero_when_the_pass_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(tmp_path, [endpoint("crm", "http://127.0.0.1:9/", "WH_UNSET")])
    argv = ["--config", str(settings.config_file), "--home", str(settings.home)]
    assert cli_main([*argv, "webhooks", "deliver"]) == 1
    err = capsys.readouterr().err
    assert "WH_UNSET" in err


# --- the documentation's examples ----------------------------------------------------------


def _doc_block(after: str, lang: str) -> str:
    text = (PROJECT_ROOT / "docs" / "webhooks.md").read_text()
    start = text.index(f"```{lang}\n", text.index(after)) + len(lang) + 4
    return text[start : text.index("```", start)]


def test_the_documented_example_request_verifies() -> None:
    lines = _doc_block("## The request", "").splitlines()
    blank = lines.index("")
    headers = dict(line.split(": ", 1) for line in lines[1:blank])
    body = "\n".join(lines[blank + 1 :]).strip().encode()
    stamp = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
    payload = webhooks.verify(headers, body, KAT_SECRET, now=stamp)
    assert payload["type"] == "billing.invoice.overdue"
    assert headers["webhook-id"] == outbox.event_id("billing.invoice.overdue", "inv_01jexample")


def test_the_documented_standalone_receiver_accepts_our_requests() -> None:
    namespace: dict[str, Any] = {}
    exec(_doc_block("### Without billing-batch", "python"), namespace)
    body = b'{"type": "billing.invoice.paid", "timestamp": "2026-03-02T09:30:00Z", "data": {}}'
    stamp = int(datetime.now(UTC).timestamp())
    headers = {
        "Webhook-Id": "evt_1",
        "Webhook-Timestamp": str(stamp),
        "Webhook-Signature": webhooks.signature_header([SECRET_A, SECRET_B], "evt_1", stamp, body),
    }
    assert namespace["verify"](headers, body, SECRET_B)["type"] == "billing.invoice.paid"
    with pytest.raises(ValueError):
        namespace["verify"](headers, body + b" ", SECRET_A)
