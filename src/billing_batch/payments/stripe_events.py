"""Stripe → us: the events Stripe posts to ``POST /v1/billing/stripe/webhook``
(docs/payments.md, "Stripe's webhooks").

:func:`receive_stripe_event` verifies the ``Stripe-Signature`` header with the official
SDK (``stripe_gateway.verify_stripe_event``: the secret ``STRIPE_WEBHOOK_SECRET``, a
tolerance of :data:`TOLERANCE_SECONDS`), then records the event once per Stripe event
id (a replay changes nothing) and acts on it, in one state transaction:

* ``payment_intent.succeeded``: a payment confirmed out of band (3-D Secure completed
  later, on-session): its attempt becomes ``succeeded`` and the open or overdue invoice
  ``paid`` (with ``billing.invoice.paid``), when the amount is the invoice's amount due;
* ``payment_intent.payment_failed``: recorded (dunning decides what follows);
* ``charge.refunded``: a pending refund its metadata names becomes ``succeeded``;
* ``charge.dispute.created``: the dispute is recorded and shown on the invoice
  (``dispute`` in its JSON);
* any other type: recorded, ``ignored``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .._core import clock
from .._core.errors import NotFoundError, StripeNotConfiguredError
from .._core.jsonutil import dumps
from ..config.settings import Settings
from ..invoicing import store
from ..invoicing.lifecycle import transition
from ..storage import state
from ..storage.state import StateConnection
from .stripe_gateway import stripe_amount, verify_stripe_event

#: Seconds a signature's timestamp may be from now (the SDK's default; Stripe's advice).
TOLERANCE_SECONDS = 300
HANDLED = (
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "charge.refunded",
    "charge.dispute.created",
)


@dataclass(frozen=True)
class StripeEventResult:
    id: str
    type: str
    duplicate: bool
    outcome: str
    invoice_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "duplicate": self.duplicate,
            "outcome": self.outcome,
            "invoiceId": self.invoice_id,
        }


def _invoice_of(con: StateConnection, payment_intent_id: str | None) -> str | None:
    if not payment_intent_id:
        return None
    params = {"payment_intent_id": payment_intent_id}
    row = state.query(con, "stripe_events/invoice_of_payment_intent", params).fetchone()
    return str(row["invoice_id"]) if row is not None else None


def _succeeded(
    con: StateConnection, pi: dict[str, Any], event_id: str, now: datetime
) -> tuple[str, str | None]:
    invoice_id = _invoice_of(con, pi.get("id")) or (pi.get("metadata") or {}).get("invoice_id")
    if not invoice_id:
        return "ignored: no invoice of ours", None
    try:
        inv = store.load_invoice(con, str(invoice_id))
    except NotFoundError:  # metadata naming no invoice of ours
        return "ignored: no invoice of ours", None
    message = f"succeeded out of band (Stripe event {event_id})"
    state.query(
        con,
        "stripe_events/complete_attempt_of_intent",
        {"payment_intent_id": pi["id"], "completed_at": clock.ts(now), "message": message},
    )
    if inv.status == "paid":
        return "already paid", inv.id
    if inv.status not in ("open", "overdue"):
        return f"not applied: the invoice is {inv.status} (refund it by hand)", inv.id
    received = int(pi.get("amount_received") or pi.get("amount") or 0)
    if received != stripe_amount(inv.due_minor, inv.currency):
        return f"not applied: {received} received, {inv.due_minor} due", inv.id
    transition(
        con,
        inv.id,
        "paid",
        at=now,
        reason=f"payment {pi['id']} confirmed out of band (Stripe event {event_id})",
        payment_intent_id=str(pi["id"]),
    )
    return "invoice paid", inv.id


def _refunded(con: StateConnection, charge: dict[str, Any], now: datetime) -> str:
    settled = 0
    for refund in (charge.get("refunds") or {}).get("data") or []:
        note = (refund.get("metadata") or {}).get("credit_note_id")
        status = {"succeeded": "succeeded", "failed": "failed", "canceled": "failed"}.get(
            str(refund.get("status"))
        )
        if note and status:
            params = {
                "credit_note_id": note,
                "status": status,
                "stripe_refund_id": refund.get("id"),
                "completed_at": clock.ts(now),
            }
            settled += state.query(con, "stripe_events/settle_refund_by_stripe_id", params).rowcount
    return f"{settled} refund(s) settled"


def _disputed(
    con: StateConnection, dispute: dict[str, Any], invoice_id: str | None, now: datetime
) -> str:
    params = {
        "id": dispute["id"],
        "invoice_id": invoice_id,
        "payment_intent_id": dispute.get("payment_intent"),
        "charge_id": dispute.get("charge"),
        "amount_minor": int(dispute.get("amount") or 0),
        "currency": str(dispute.get("currency") or "").upper(),
        "reason": str(dispute.get("reason") or ""),
        "status": str(dispute.get("status") or ""),
        "created_at": clock.ts(now),
    }
    state.query(con, "stripe_events/insert_dispute", params)
    if invoice_id is None:
        return "dispute recorded: no invoice of ours"
    state.query(
        con,
        "stripe_events/set_invoice_dispute",
        {
            "id": invoice_id,
            "dispute_id": dispute["id"],
            "dispute_status": params["status"],
            "at": clock.ts(now),
        },
    )
    return "dispute shown on the invoice"


def _act(con: StateConnection, event: dict[str, Any], now: datetime) -> tuple[str, str | None]:
    type_, obj = event["type"], event["data"]["object"]
    if type_ == "payment_intent.succeeded":
        return _succeeded(con, obj, event["id"], now)
    if type_ == "payment_intent.payment_failed":
        return "recorded", _invoice_of(con, obj.get("id"))
    if type_ == "charge.refunded":
        return _refunded(con, obj, now), _invoice_of(con, obj.get("payment_intent"))
    if type_ == "charge.dispute.created":
        invoice_id = _invoice_of(con, obj.get("payment_intent"))
        return _disputed(con, obj, invoice_id, now), invoice_id
    return "ignored", None


def _object_ids(event: dict[str, Any]) -> tuple[str, str | None]:
    obj = event["data"]["object"]
    oid = str(obj.get("id") or "")
    pi = obj.get("payment_intent") if obj.get("object") != "payment_intent" else oid
    return oid, str(pi) if pi else None


def receive_stripe_event(
    settings: Settings, payload: bytes, signature: str | None, *, now: datetime | None = None
) -> StripeEventResult:
    """Verify, record (once per Stripe event id) and act on one Stripe event. Raises
    :class:`WebhookVerificationError` (signature, timestamp outside the tolerance, not an
    event) and :class:`StripeNotConfiguredError` (no ``STRIPE_WEBHOOK_SECRET``)."""
    secret = settings.stripe_webhook_secret
    if not secret:
        raise StripeNotConfiguredError(
            "Stripe's webhook is not configured: set STRIPE_WEBHOOK_SECRET (whsec_...)"
        )
    event = verify_stripe_event(payload, signature, secret, tolerance=TOLERANCE_SECONDS)
    now = clock.aware(now)
    object_id, pi = _object_ids(event)
    with state.opened(settings) as con, state.transaction(con):
        params = {
            "id": event["id"],
            "type": event["type"],
            "object_id": object_id,
            "payment_intent_id": pi,
            "invoice_id": None,
            "stripe_created": clock.ts(datetime.fromtimestamp(int(event["created"]), UTC)),
            "received_at": clock.ts(now),
            "outcome": "received",
            "payload": dumps(event),
        }
        if state.query(con, "stripe_events/insert_stripe_event", params).rowcount == 0:
            row = state.query(con, "stripe_events/stripe_event_by_id", {"id": event["id"]})
            seen = row.fetchone()
            return StripeEventResult(
                event["id"], event["type"], True, seen["outcome"], seen["invoice_id"]
            )
        outcome, invoice_id = _act(con, event, now)
        params = {"id": event["id"], "outcome": outcome, "invoice_id": invoice_id}
        state.query(con, "stripe_events/set_event_outcome", params)
    return StripeEventResult(event["id"], event["type"], False, outcome, invoice_id)


__all__ = ["HANDLED", "TOLERANCE_SECONDS", "StripeEventResult", "receive_stripe_event"]
