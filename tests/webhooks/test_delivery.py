"""Delivery: at-least-once to a real receiver on 127.0.0.1, retries across passes (time
driven with ``now=``), 410, per-endpoint event filters, a dead endpoint, configuration
errors, and a crash between the HTTP call and recording its outcome."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import textwrap
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from billing_batch._core import clock
from billing_batch._core.errors import ConfigError, WebhookVerificationError
from billing_batch.storage import state as store
from billing_batch.webhooks import admin, delivery, outbox
from billing_batch.webhooks.signing import verify
from tests.webhooks.support import (
    SECRET_A,
    SECRET_B,
    T0,
    Receiver,
    attempts,
    deliveries,
    endpoint,
    make_settings,
    record,
    run,
)


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
        assert verify(got.headers, got.body, secret, now=T0)["type"] == "billing.invoice.paid"
    with pytest.raises(WebhookVerificationError):
        other = "whsec_" + base64.b64encode(b"x" * 32).decode()
        verify(got.headers, got.body, other, now=T0)


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
    [state] = [e for e in admin.list_endpoints(settings) if e["id"] == "gone"]
    assert state["state"] == "disabled"
    assert "410" in state["disabled_reason"]

    # later events are never sent to the disabled endpoint
    e3 = record(settings, subject="inv_3", at=T0 + timedelta(hours=1))
    later = run(settings, receiver, T0 + timedelta(hours=2))
    assert later.delivered == 1
    assert (e3, "gone") not in deliveries(settings)
    assert len([r for r in receiver.received if r.path == "/gone"]) == 1

    # re-enabled, it receives the events recorded from then on (not the ones it missed)
    enabled = admin.enable_endpoint(settings, "gone", now=T0 + timedelta(hours=3))
    assert enabled["state"] == "enabled" and enabled["disabled_reason"] is None
    e4 = record(settings, subject="inv_4", at=T0 + timedelta(hours=4))
    run(settings, receiver, T0 + timedelta(hours=5))
    assert [r.headers["webhook-id"] for r in receiver.received if r.path == "/gone"][-1] == e4
    assert (e3, "gone") not in deliveries(settings)


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
    [state] = admin.list_endpoints(settings)
    assert state["first_seen_at"] == clock.ts(T0)
    assert state["deliver_since"] == clock.ts(T0 - timedelta(hours=72))

    # every event recorded after the endpoint appeared is delivered
    later = record(settings, subject="inv_later", at=T0 + timedelta(days=1))
    run(settings, receiver, T0 + timedelta(days=1, minutes=1))
    assert receiver.ids == [recent, later]


def test_a_dead_endpoint_does_not_hold_the_pass(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    settings = make_settings(tmp_path, [endpoint("dead", f"http://127.0.0.1:{dead_port}/")])
    for i in range(5):
        record(settings, subject=f"inv_{i}", at=T0 + timedelta(seconds=i))
    report = delivery.deliver(settings, now=T0 + timedelta(minutes=1))
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
        delivery.deliver(settings, now=T0)
    monkeypatch.setenv("WH_MISSING", "not-a-secret!")
    with pytest.raises(ConfigError, match="whsec_"):
        delivery.deliver(settings, now=T0)
    bad = make_settings(tmp_path, [endpoint("crm", "ftp://example.com/hooks")])
    with pytest.raises(ConfigError, match="http"):
        delivery.deliver(bad, now=T0)
    assert receiver.received == [] and attempts(settings) == []


# --- at-least-once across a crash ----------------------------------------------------------

CRASHING_PASS = textwrap.dedent(
    """
    import os, sys
    from datetime import datetime
    from billing_batch import config
    from billing_batch.storage import state as store
    from billing_batch.webhooks import delivery, outbox

    settings = config.load_settings(sys.argv[1], env={"BILLING_HOME": sys.argv[2]})
    now = datetime.fromisoformat(sys.argv[3])
    # the state change and its event, in one transaction
    with store.opened(settings) as con, store.transaction(con):
        outbox.record_event(con, "billing.invoice.paid", subject_id="inv_crash",
                            data={"id": "inv_crash"}, at=now, workspace_id="ws_123")

    def crash(*args, **kwargs):
        os._exit(17)  # killed after the HTTP call returned, before its outcome is recorded

    delivery._record_outcome = crash
    delivery.deliver(settings, now=now)
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


def test_narrowing_an_endpoints_events_stops_its_pending_deliveries_of_other_types(
    tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(tmp_path, [endpoint("crm", receiver.url())])
    paid = record(settings, "billing.invoice.paid", "inv_1")
    overdue = record(settings, "billing.invoice.overdue", "inv_2")
    voided = record(settings, "billing.invoice.voided", "inv_3")
    receiver.actions = [500, 500, 500]
    assert run(settings, receiver, T0).retry_scheduled == 3

    types = ["billing.invoice.paid", "billing.invoice.voided"]
    narrowed = make_settings(tmp_path, [endpoint("crm", receiver.url(), events=types)])
    report = run(narrowed, receiver, T0 + timedelta(minutes=1))

    assert report.delivered == 2 and report.attempted == 2
    rows = deliveries(settings)
    assert rows[(paid, "crm")]["status"] == rows[(voided, "crm")]["status"] == "delivered"
    assert rows[(overdue, "crm")]["status"] == "failed"
    assert rows[(overdue, "crm")]["last_error"] == (
        "stopped: the endpoint no longer subscribes to this event type"
    )
    assert receiver.ids.count(overdue) == 1  # only the attempt before the change


def test_due_deliveries_go_in_the_order_they_fell_due_across_endpoints_up_to_the_limit(
    tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(
        tmp_path, [endpoint("b", receiver.url("/b")), endpoint("a", receiver.url("/a"))]
    )
    events = [record(settings, subject=f"inv_{i}", at=T0 + timedelta(seconds=i)) for i in range(3)]
    receiver.now = T0 + timedelta(minutes=1)

    first = delivery.deliver(settings, now=T0 + timedelta(minutes=1), limit=3)
    rest = delivery.deliver(settings, now=T0 + timedelta(minutes=1), limit=-1)  # no limit

    # oldest event first; the same event to its endpoints by endpoint id
    expected = [(e, ep) for e in events for ep in ("a", "b")]
    assert [(r.event_id, r.endpoint_id) for r in first.results] == expected[:3]
    assert [(r.event_id, r.endpoint_id) for r in rest.results] == expected[3:]
    assert first.scheduled == 6 and rest.scheduled == 0
    assert all(r.verified for r in receiver.received) and len(receiver.received) == 6
