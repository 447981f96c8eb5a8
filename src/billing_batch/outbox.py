"""The write side of the webhook outbox.

A state change and its event are written in the same SQLite transaction (the caller
passes its open transaction's connection): no change without its event, no event
without its change. Event ids are derived from what happened (type, subject, and a
discriminator such as the attempt number), so recomputing a change never mints a second
event with a new id. Delivery is :mod:`billing_batch.webhooks`.

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

import sqlite3
from datetime import datetime
from typing import Any

from .ids import stable_id
from .jsonutil import dumps
from .store import ts

EVENT_TYPES: tuple[str, ...] = (
    "billing.usage.recorded",
    "billing.invoice.created",
    "billing.invoice.finalized",
    "billing.invoice.paid",
    "billing.invoice.payment_failed",
    "billing.invoice.overdue",
    "billing.invoice.voided",
)


def event_id(type_: str, subject_id: str, discriminator: str = "") -> str:
    return stable_id("evt", type_, subject_id, discriminator)


def record_event(
    con: sqlite3.Connection,
    type_: str,
    *,
    subject_id: str,
    data: dict[str, Any],
    at: datetime,
    workspace_id: str | None = None,
    discriminator: str = "",
) -> str:
    """Append an event to the outbox inside the caller's transaction; idempotent (the
    same type, subject and discriminator record nothing new). Returns the event id."""
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type_!r}")
    eid = event_id(type_, subject_id, discriminator)
    payload = dumps({"type": type_, "timestamp": at, "data": data})
    con.execute(
        "INSERT OR IGNORE INTO outbox (id, type, workspace_id, subject_id, created_at, payload) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (eid, type_, workspace_id, subject_id, ts(at), payload),
    )
    return eid
