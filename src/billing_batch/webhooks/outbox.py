"""The write side of the webhook outbox.

A state change and its event are written in the same SQLite transaction (the caller
passes its open transaction's connection): no change without its event, no event
without its change. Event ids are derived from what happened (type, subject, and a
discriminator such as the attempt number), so recomputing a change never mints a second
event with a new id. Delivery is :mod:`.delivery`.

Events (``type`` → ``data``):

* ``billing.usage.recorded``: usage recorded for one workspace by one ingest run
  (``workspaceId``, ``ingestId``, ``events``, ``quantities`` per metric, ``days``).
* ``billing.invoice.created``: a draft invoice was created (the invoice JSON).
* ``billing.invoice.finalized``: the invoice is open, numbered and frozen.
* ``billing.invoice.paid``: paid (the invoice JSON, with ``payment``).
* ``billing.invoice.payment_failed``: an attempt failed (invoice id, attempt, code).
* ``billing.invoice.overdue``: past its due date and unpaid.
* ``billing.invoice.voided``: cancelled.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from .._core import clock
from .._core.clock import ts
from .._core.ids import stable_id
from .._core.jsonutil import dumps
from ..config.settings import Settings
from ..storage import state as store
from ..storage.lake import Lake
from ..storage.sqlfiles import run_sql
from ..storage.state import StateConnection

EVENT_TYPES: tuple[str, ...] = (
    "billing.usage.recorded",
    "billing.invoice.created",
    "billing.invoice.finalized",
    "billing.invoice.paid",
    "billing.invoice.payment_failed",
    "billing.invoice.overdue",
    "billing.invoice.voided",
    "billing.credit_note.created",
)

_USAGE_RECORDED = "billing.usage.recorded"


def event_id(type_: str, subject_id: str, discriminator: str = "") -> str:
    return stable_id("evt", type_, subject_id, discriminator)


def record_event(
    con: StateConnection,
    type_: str,
    *,
    subject_id: str,
    data: dict[str, Any],
    at: datetime,
    workspace_id: str | None = None,
    discriminator: str = "",
    recorded_at: datetime | None = None,
) -> str:
    """Append an event to the outbox inside the caller's transaction; idempotent (the
    same type, subject and discriminator record nothing new). Returns the event id.
    ``recorded_at`` (default ``at``) is the outbox time delivery counts from."""
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type_!r}")
    eid = event_id(type_, subject_id, discriminator)
    payload = dumps({"type": type_, "timestamp": at, "data": data})
    # The payload's timestamp is when the change happened (for a backfilled nightly run,
    # its business time); created_at is when it entered the outbox, which delivery
    # schedules its retries and gives up by.
    store.query(
        con,
        "outbox/insert_event",
        {
            "id": eid,
            "type": type_,
            "workspace_id": workspace_id,
            "subject_id": subject_id,
            "created_at": ts(recorded_at or at),
            "payload": payload,
        },
    )
    return eid


def record_usage_events(
    settings: Settings,
    *,
    lake: Lake | None = None,
    now: datetime | None = None,
) -> list[str]:
    """Emit ``billing.usage.recorded`` (one per workspace per ingest) for every committed
    ingest that has not had its events yet.

    An ingest commits to the lake and its events go to the state store: two stores, so
    this is a reconciliation rather than one transaction. It is driven by the lake's
    manifest (the source of truth) and keyed by ingest id: run after every ingest, it
    emits exactly the missing events, also after a crash between the two writes, and
    never an event twice (ids are derived from the ingest id and the workspace).
    """
    lake = lake or Lake(settings)
    now = now or clock.utcnow()
    with store.opened(settings) as con:
        done = {
            str(r["subject_id"])
            for r in store.query(con, "outbox/subjects_of_type", {"type": _USAGE_RECORDED})
        }
        rows = _recorded_usage(lake, done)
        if not rows:
            return []
        ids: list[str] = []
        with store.transaction(con):
            for (ingest_id, workspace_id), data in sorted(_usage_summaries(rows).items()):
                ids.append(
                    record_event(
                        con,
                        _USAGE_RECORDED,
                        subject_id=ingest_id,
                        discriminator=workspace_id,
                        workspace_id=workspace_id,
                        data=data,
                        at=now,
                    )
                )
        return ids


def _recorded_usage(lake: Lake, done: set[str]) -> list[tuple[Any, ...]]:
    """What the ingests not in ``done`` recorded, per ingest, workspace and metric
    (``sql/usage_recorded_by_ingest.sql``); nothing when every ingest is done."""
    lake_con = lake.connect(read_only=True)
    try:
        pending = [
            (str(r[0]), list(r[1] or []))
            for r in run_sql(lake_con, "usage_recorded_ingests").fetchall()
            if r[0] not in done
        ]
        if not pending:
            return []
        days: set[date] = {d for _, touched in pending for d in touched}
        return run_sql(
            lake_con,
            "usage_recorded_by_ingest",
            {"ingest_ids": [p[0] for p in pending], "days": sorted(days)},
        ).fetchall()
    finally:
        lake_con.close()


def _usage_summaries(rows: Iterable[tuple[Any, ...]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The ``data`` of each ``billing.usage.recorded`` event, by (ingest, workspace)."""
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for ingest_id, workspace_id, metric, events, total, peak, first_day, last_day in rows:
        entry = by_key.setdefault(
            (ingest_id, workspace_id),
            {
                "workspaceId": workspace_id,
                "ingestId": ingest_id,
                "events": 0,
                "quantities": {},
                "days": {"first": first_day, "last": last_day},
            },
        )
        entry["events"] += int(events)
        entry["quantities"][metric] = {"events": int(events), "total": total, "max": peak}
        entry["days"]["first"] = min(entry["days"]["first"], first_day)
        entry["days"]["last"] = max(entry["days"]["last"], last_day)
    return by_key


__all__ = ["EVENT_TYPES", "event_id", "record_event", "record_usage_events"]
