"""The outbox's write side: an event goes in the transaction of its change, once per
(type, subject, discriminator); usage events reconcile the lake's ingests with the
outbox, emitting exactly the missing ones."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from billing_batch._core import clock
from billing_batch.config.settings import Settings
from billing_batch.storage import state as store
from billing_batch.usage.ingest import ingest
from billing_batch.webhooks import outbox
from tests.conftest import event, write_log
from tests.webhooks.support import T0


def _outbox(settings: Settings) -> list[dict[str, Any]]:
    with store.opened(settings) as con:
        rows = con.execute("SELECT * FROM outbox ORDER BY created_at, id").fetchall()
    return [dict(r) for r in rows]


def test_an_event_is_recorded_once_per_type_subject_and_discriminator(
    settings: Settings,
) -> None:
    def paid(total: Any, at: Any, discriminator: str = "") -> str:
        with store.opened(settings) as con, store.transaction(con):
            return outbox.record_event(
                con,
                "billing.invoice.paid",
                subject_id="inv_1",
                data={"id": "inv_1", "total": total},
                at=at,
                workspace_id="ws_1",
                discriminator=discriminator,
            )

    first = paid(Decimal("550.00"), T0)
    again = paid(Decimal("1"), T0 + timedelta(hours=1))  # recomputed: nothing new
    other = paid(Decimal("2"), T0, discriminator="attempt-2")

    assert first == again == outbox.event_id("billing.invoice.paid", "inv_1")
    assert other == outbox.event_id("billing.invoice.paid", "inv_1", "attempt-2") != first
    rows = {r["id"]: r for r in _outbox(settings)}
    assert set(rows) == {first, other}
    kept = rows[first]
    assert (kept["type"], kept["subject_id"], kept["workspace_id"]) == (
        "billing.invoice.paid",
        "inv_1",
        "ws_1",
    )
    assert kept["created_at"] == clock.ts(T0)
    assert json.loads(kept["payload"]) == {
        "type": "billing.invoice.paid",
        "timestamp": "2026-03-02T09:30:00Z",
        "data": {"id": "inv_1", "total": 550},  # the first one's, exact
    }


def test_an_event_is_written_with_its_change_or_not_at_all(settings: Settings) -> None:
    with pytest.raises(RuntimeError, match="the change failed"):
        with store.opened(settings) as con, store.transaction(con):
            outbox.record_event(con, "billing.invoice.voided", subject_id="inv_9", data={}, at=T0)
            raise RuntimeError("the change failed")
    assert _outbox(settings) == []
    with store.opened(settings) as con, store.transaction(con):
        with pytest.raises(ValueError, match="unknown event type"):
            outbox.record_event(con, "billing.invoice.lost", subject_id="inv_9", data={}, at=T0)
    assert _outbox(settings) == []


def test_recorded_at_is_the_outbox_time_and_the_payload_keeps_the_change_time(
    settings: Settings,
) -> None:
    later = T0 + timedelta(days=3)
    with store.opened(settings) as con, store.transaction(con):
        outbox.record_event(
            con, "billing.invoice.overdue", subject_id="inv_2", data={}, at=T0, recorded_at=later
        )
    [row] = _outbox(settings)
    assert row["created_at"] == clock.ts(later)
    assert json.loads(row["payload"])["timestamp"] == "2026-03-02T09:30:00Z"
    assert row["workspace_id"] is None


def test_usage_events_are_emitted_once_per_workspace_and_ingest(
    settings: Settings, tmp_path: Path
) -> None:
    first = ingest(
        settings,
        [
            write_log(
                tmp_path / "a.jsonl",
                [
                    event("e1", "ws_a", "api_calls", 10, "2024-01-15T10:00:00Z"),
                    event("e2", "ws_a", "api_calls", 5, "2024-01-16T11:00:00Z"),
                    event("e3", "ws_a", "kyc_checks", 1, "2024-01-16T12:00:00Z"),
                    event("e4", "ws_b", "api_calls", 7, "2024-01-20T09:00:00Z"),
                ],
            )
        ],
    )
    ids = outbox.record_usage_events(settings, now=T0)

    assert sorted(ids) == sorted(
        outbox.event_id("billing.usage.recorded", str(first.ingest_id), ws)
        for ws in ("ws_a", "ws_b")
    )
    data = {r["workspace_id"]: json.loads(r["payload"])["data"] for r in _outbox(settings)}
    assert data["ws_a"] == {
        "workspaceId": "ws_a",
        "ingestId": first.ingest_id,
        "events": 3,
        "quantities": {
            "api_calls": {"events": 2, "total": 15, "max": 10},
            "kyc_checks": {"events": 1, "total": 1, "max": 1},
        },
        "days": {"first": "2024-01-15", "last": "2024-01-16"},
    }
    assert data["ws_b"]["events"] == 1
    assert data["ws_b"]["quantities"] == {"api_calls": {"events": 1, "total": 7, "max": 7}}
    assert data["ws_b"]["days"] == {"first": "2024-01-20", "last": "2024-01-20"}

    # run again: nothing is missing, nothing is emitted twice
    assert outbox.record_usage_events(settings, now=T0) == []
    # an ingest that accepts nothing (only duplicates) has no event
    dup = ingest(settings, [write_log(tmp_path / "b.jsonl", [event("e1", "ws_a")])])
    assert dup.total("accepted") == 0
    assert outbox.record_usage_events(settings, now=T0) == []
    # a later ingest: exactly its own events
    later = ingest(
        settings,
        [write_log(tmp_path / "c.jsonl", [event("e9", "ws_c", timestamp="2024-02-01T00:00:00Z")])],
    )
    [new] = outbox.record_usage_events(settings, now=T0 + timedelta(hours=1))
    assert new == outbox.event_id("billing.usage.recorded", str(later.ingest_id), "ws_c")
    assert len(_outbox(settings)) == 3
