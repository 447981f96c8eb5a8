"""Refunds through Stripe: a credit note on a paid invoice, refunded against the
invoice's PaymentIntent, never twice (docs/payments.md, "Refunds").

* :func:`record_pending_refund` writes the refund (``pending``, idempotency key
  ``refund-<credit note id>``) in the transaction that issues the credit note: before
  any request leaves.
* :func:`send_refund` settles a pending refund: it first asks Stripe for the
  PaymentIntent's refunds and takes the one whose metadata names the credit note (a
  crash, or a lost answer, after Stripe refunded); only when there is none does it send
  the refund, under the same key (a resend within Stripe's 24 hours is a replay). Then
  it records Stripe's status: ``succeeded``, ``failed`` (refused, or Stripe's refund
  failed) or still ``pending`` (Stripe is processing it, or could not be asked: the
  next :func:`resolve_pending_refunds` asks again).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .._core import clock
from .._core.errors import InputError, NotFoundError, PaymentError, StripeNotConfiguredError
from .._core.ids import stable_id
from ..config.settings import Settings
from ..invoicing.credit_note_model import CreditNote
from ..invoicing.model import Invoice
from ..storage import state
from ..storage.state import Row, StateConnection
from .keys import refund_idempotency_key
from .stripe_gateway import HTTPClient, StripeGateway

log = logging.getLogger(__name__)

REFUND_STATUSES = ("pending", "succeeded", "failed")


@dataclass(frozen=True)
class Refund:
    id: str
    credit_note_id: str
    invoice_id: str
    payment_intent_id: str
    idempotency_key: str
    status: str
    amount_minor: int
    currency: str
    stripe_refund_id: str | None
    error_code: str | None
    message: str | None
    created_at: datetime
    completed_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "refund",
            "creditNoteId": self.credit_note_id,
            "invoiceId": self.invoice_id,
            "paymentIntentId": self.payment_intent_id,
            "idempotencyKey": self.idempotency_key,
            "status": self.status,
            "amountMinor": self.amount_minor,
            "currency": self.currency,
            "stripeRefundId": self.stripe_refund_id,
            "errorCode": self.error_code,
            "message": self.message,
            "createdAt": self.created_at,
            "completedAt": self.completed_at,
        }


def _from_row(r: Row) -> Refund:
    done = r["completed_at"]
    return Refund(
        id=r["id"],
        credit_note_id=r["credit_note_id"],
        invoice_id=r["invoice_id"],
        payment_intent_id=r["payment_intent_id"],
        idempotency_key=r["idempotency_key"],
        status=r["status"],
        amount_minor=int(r["amount_minor"]),
        currency=r["currency"],
        stripe_refund_id=r["stripe_refund_id"],
        error_code=r["error_code"],
        message=r["message"],
        created_at=clock.parse_ts(r["created_at"]),
        completed_at=clock.parse_ts(done) if done else None,
    )


def refund_of(con: StateConnection, credit_note_id: str) -> Refund | None:
    row = state.query(con, "refunds/refund_by_credit_note", {"credit_note_id": credit_note_id})
    found = row.fetchone()
    return _from_row(found) if found is not None else None


def refunds_of_invoice(con: StateConnection, invoice_id: str) -> list[Refund]:
    rows = state.query(con, "refunds/refunds_of_invoice", {"invoice_id": invoice_id})
    return [_from_row(r) for r in rows.fetchall()]


def record_pending_refund(
    con: StateConnection, note: CreditNote, inv: Invoice, now: datetime
) -> Refund:
    """Write the credit note's refund, ``pending`` (inside the transaction issuing it).
    Refused when the invoice was not charged through Stripe or the refunds would exceed
    what was charged (its amount due when paid)."""
    name = inv.number or inv.id
    if not inv.payment_intent_id:
        raise InputError(f"invoice {name} was not paid through Stripe: nothing to refund")
    amount = note.total_minor
    refunded = sum(r.amount_minor for r in refunds_of_invoice(con, inv.id) if r.status != "failed")
    if refunded + amount > inv.due_minor:
        left = inv.due_minor - refunded
        raise InputError(
            f"invoice {name}: a refund of {note.total} {inv.currency} is more than the "
            f"{left} (minor units) left of its charge; credit the rest to the balance "
            "(refund=False)"
        )
    refund = Refund(
        id=stable_id("rfd", note.id),
        credit_note_id=note.id,
        invoice_id=inv.id,
        payment_intent_id=inv.payment_intent_id,
        idempotency_key=refund_idempotency_key(note.id),
        status="pending",
        amount_minor=amount,
        currency=inv.currency,
        stripe_refund_id=None,
        error_code=None,
        message=None,
        created_at=now,
        completed_at=None,
    )
    params = {
        "id": refund.id,
        "credit_note_id": refund.credit_note_id,
        "invoice_id": refund.invoice_id,
        "payment_intent_id": refund.payment_intent_id,
        "idempotency_key": refund.idempotency_key,
        "amount_minor": refund.amount_minor,
        "currency": refund.currency,
        "created_at": clock.ts(now),
    }
    state.query(con, "refunds/insert_pending_refund", params)
    return refund


def _status(stripe_status: str) -> str:
    """A Stripe Refund's status as ours (``requires_action`` and ``pending`` wait)."""
    if stripe_status == "succeeded":
        return "succeeded"
    if stripe_status in ("failed", "canceled"):
        return "failed"
    return "pending"


def _complete(
    settings: Settings,
    refund: Refund,
    *,
    status: str,
    stripe_refund_id: str | None,
    error_code: str | None,
    message: str | None,
    now: datetime,
) -> Refund:
    with state.opened(settings) as con, state.transaction(con):
        params = {
            "id": refund.id,
            "status": status,
            "stripe_refund_id": stripe_refund_id,
            "error_code": error_code,
            "message": message,
            "completed_at": clock.ts(now) if status != "pending" else None,
        }
        state.query(con, "refunds/complete_refund", params)
        found = refund_of(con, refund.credit_note_id)
    assert found is not None
    return found


def _ask_stripe(gw: StripeGateway, refund: Refund) -> dict[str, Any]:
    """The Stripe Refund of this credit note: found among the PaymentIntent's refunds by
    its metadata, else created under the refund's key."""
    for found in gw.list_refunds(refund.payment_intent_id):
        if (found.get("metadata") or {}).get("credit_note_id") == refund.credit_note_id:
            return found
    return gw.create_refund(
        payment_intent_id=refund.payment_intent_id,
        amount_minor=refund.amount_minor,
        currency=refund.currency,
        metadata={"credit_note_id": refund.credit_note_id, "invoice_id": refund.invoice_id},
        idempotency_key=refund.idempotency_key,
    )


def send_refund(
    settings: Settings,
    credit_note_id: str,
    *,
    now: datetime | None = None,
    http_client: HTTPClient | None = None,
) -> Refund:
    """Settle the credit note's pending refund with Stripe (see the module docstring).
    Returns the refund as recorded; raises only :class:`StripeNotConfiguredError`."""
    now = clock.aware(now)
    with state.opened(settings) as con:
        refund = refund_of(con, credit_note_id)
    if refund is None:
        raise NotFoundError(f"credit note {credit_note_id!r} has no refund")
    if refund.status != "pending":
        return refund
    with StripeGateway(settings, http_client) as gw:
        try:
            answer = _ask_stripe(gw, refund)
        except StripeNotConfiguredError:
            raise
        except PaymentError as exc:
            failure = gw.failure(exc)
            if failure.kind in ("transient", "idempotency"):
                log.warning("refund %s stays pending: %s", refund.id, exc.message)
                return _complete(
                    settings,
                    refund,
                    status="pending",
                    stripe_refund_id=None,
                    error_code=failure.error_code,
                    message=f"{exc.message} (retried by the next run)",
                    now=now,
                )
            return _complete(
                settings,
                refund,
                status="failed",
                stripe_refund_id=None,
                error_code=failure.error_code,
                message=exc.message,
                now=now,
            )
    status = _status(str(answer.get("status")))
    reason = answer.get("failure_reason")
    return _complete(
        settings,
        refund,
        status=status,
        stripe_refund_id=str(answer.get("id")),
        error_code=str(reason) if status == "failed" and reason else None,
        message=None if status == "succeeded" else f"Stripe refund {answer.get('status')}",
        now=now,
    )


def resolve_pending_refunds(
    settings: Settings, *, now: datetime | None = None, http_client: HTTPClient | None = None
) -> list[Refund]:
    """Settle every pending refund (the nightly, and ``credit-note refunds``)."""
    with state.opened(settings) as con:
        pending = [_from_row(r) for r in state.query(con, "refunds/pending_refunds").fetchall()]
    return [
        send_refund(settings, r.credit_note_id, now=now, http_client=http_client) for r in pending
    ]


def list_refunds(settings: Settings) -> list[dict[str, Any]]:
    """Every refund with its credit note's number (for reconciliation and listings)."""
    with state.opened(settings) as con:
        rows = state.query(con, "refunds/all_refunds").fetchall()
    out = []
    for r in rows:
        item = _from_row(r).to_json()
        item["creditNoteNumber"] = r["credit_note_number"]
        item["creditNoteTotalMinor"] = r["credit_note_total_minor"]
        out.append(item)
    return out


__all__ = [
    "REFUND_STATUSES",
    "Refund",
    "list_refunds",
    "record_pending_refund",
    "refund_of",
    "refunds_of_invoice",
    "resolve_pending_refunds",
    "send_refund",
]
