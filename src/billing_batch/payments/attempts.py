"""Payment attempts: the record of every try to charge an invoice, and what one ``pay``
returns.

A :class:`PaymentAttempt` is one row of ``payment_attempts`` (SQL in
``sql/state/payments/``): attempt n of an invoice, with its own idempotency key, committed
as ``pending`` before its Stripe request leaves (:func:`insert_pending`) and completed
after it (:func:`complete`, inside the transaction that records its consequence:
:mod:`.recording`). A :class:`PaymentResult` is the outcome of one ``pay`` call and the
invoice after it; :meth:`PaymentResult.error` is the one mapping from an outcome to the
project's error (the CLI and the HTTP API both use it). :func:`check_payable` is the rule
for whether an invoice may take a new attempt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from .._core import clock
from .._core.errors import (
    PaymentActionRequiredError,
    PaymentDeclinedError,
    PaymentError,
    PaymentRefusedError,
    PaymentTransientError,
    StateError,
)
from .._core.ids import stable_id
from .._core.money import from_minor
from ..config.settings import Settings
from ..invoicing import service as invoices
from ..invoicing.model import Invoice
from ..storage import state
from ..storage.state import Row, StateConnection
from .keys import idempotency_key
from .stripe_gateway import AMBIGUOUS_ERRORS

#: Invoice statuses that can be charged.
PAYABLE: tuple[str, ...] = ("open", "overdue")
ATTEMPT_STATUSES: tuple[str, ...] = (
    "pending",
    "succeeded",
    "declined",
    "requires_action",
    "failed",
)


@dataclass(frozen=True)
class PaymentAttempt:
    """One row of ``payment_attempts``."""

    id: str
    invoice_id: str
    attempt_no: int
    idempotency_key: str
    status: str
    amount_minor: int
    currency: str
    payment_method: str | None
    payment_intent_id: str | None
    decline_code: str | None
    error_code: str | None
    message: str | None
    created_at: datetime
    completed_at: datetime | None
    next_retry_at: datetime | None

    @property
    def amount(self) -> Decimal:
        return from_minor(self.amount_minor, self.currency)

    @property
    def unanswered(self) -> bool:
        """A failed attempt whose request may have been executed all the same (no
        answer, or a Stripe 5xx, and no PaymentIntent known): resolved before anything
        else is tried."""
        return (
            self.status == "failed"
            and self.error_code in AMBIGUOUS_ERRORS
            and self.payment_intent_id is None
        )

    @property
    def unknown(self) -> bool:
        """Whether this attempt could still turn into a charge: ``pending`` or
        :attr:`unanswered`. Attempt n+1 never starts beside it."""
        return self.status == "pending" or self.unanswered

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "payment_attempt",
            "invoiceId": self.invoice_id,
            "attempt": self.attempt_no,
            "idempotencyKey": self.idempotency_key,
            "status": self.status,
            "amount": self.amount,
            "amountMinor": self.amount_minor,
            "currency": self.currency,
            "paymentMethod": self.payment_method,
            "paymentIntentId": self.payment_intent_id,
            "declineCode": self.decline_code,
            "errorCode": self.error_code,
            "message": self.message,
            "createdAt": self.created_at,
            "completedAt": self.completed_at,
            "nextRetryAt": self.next_retry_at,
        }


@dataclass(frozen=True)
class PaymentResult:
    """What one ``pay`` did: the attempt's outcome and the invoice after it."""

    invoice_id: str
    attempt_no: int
    status: str
    payment_intent_id: str | None
    decline_code: str | None
    message: str | None
    amount_minor: int
    currency: str
    error_code: str | None = None
    payment_method: str | None = None
    attempted_at: datetime | None = None
    completed_at: datetime | None = None
    next_retry_at: datetime | None = None
    invoice: Invoice | None = None
    #: For a ``failed`` attempt, what kind of failure Stripe's answer was: ``refused``
    #: (Stripe refused the request as invalid, HTTP 400: the caller's mistake, e.g. an
    #: unknown payment method), ``unavailable`` (no verdict: rate limit, network, 5xx)
    #: or None (the payment itself failed).
    failure: str | None = None
    #: The request parameter a refusal names (``payment_method``), if any.
    param: str | None = None
    #: True when this call finalized the invoice (it was a draft) before charging it.
    finalized: bool = False

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def error(self) -> PaymentError | None:
        """The project's error this outcome stands for (None when paid or still pending):
        the one mapping from an attempt's outcome to an error, used by the CLI and the
        HTTP API alike (``docs/payments.md``, "Outcomes and answers")."""
        label = (self.invoice.number if self.invoice else None) or self.invoice_id
        text = self.message or f"payment {self.status}"
        if self.status in ("succeeded", "pending"):
            return None
        if self.status == "declined":
            return PaymentDeclinedError(
                text, decline_code=self.decline_code, stripe_code=self.error_code
            )
        if self.status == "requires_action":
            return PaymentActionRequiredError(text)
        if self.failure == "refused":
            return PaymentRefusedError(
                f"invoice {label}: Stripe refused the payment: {text} [{self.error_code}]",
                stripe_code=self.error_code,
                param=self.param,
            )
        if self.failure == "unavailable":
            return PaymentTransientError(f"invoice {label}: Stripe is unavailable: {text}")
        return PaymentError(f"invoice {label}: the payment failed: {text}")

    @property
    def amount(self) -> Decimal:
        return from_minor(self.amount_minor, self.currency)

    def to_json(self) -> dict[str, Any]:
        return {
            "object": "payment",
            "invoiceId": self.invoice_id,
            "invoiceNumber": self.invoice.number if self.invoice else None,
            "attempt": self.attempt_no,
            "status": self.status,
            "succeeded": self.succeeded,
            "paymentIntentId": self.payment_intent_id,
            "paymentMethod": self.payment_method,
            "amount": self.amount,
            "amountMinor": self.amount_minor,
            "currency": self.currency,
            "declineCode": self.decline_code,
            "errorCode": self.error_code,
            "message": self.message,
            "attemptedAt": self.attempted_at,
            "completedAt": self.completed_at,
            "nextRetryAt": self.next_retry_at,
            "finalized": self.finalized,
            "invoice": self.invoice.to_json() if self.invoice else None,
        }


def result_of(
    attempt: PaymentAttempt,
    invoice: Invoice,
    message: str | None = None,
    *,
    failure: str | None = None,
    param: str | None = None,
) -> PaymentResult:
    """The result of a ``pay`` that ended at ``attempt`` (``message`` replaces the
    attempt's own; ``failure`` and ``param`` only apply to a ``failed`` attempt)."""
    return PaymentResult(
        invoice_id=attempt.invoice_id,
        attempt_no=attempt.attempt_no,
        status=attempt.status,
        payment_intent_id=attempt.payment_intent_id,
        decline_code=attempt.decline_code,
        message=message if message is not None else attempt.message,
        amount_minor=attempt.amount_minor,
        currency=attempt.currency,
        error_code=attempt.error_code,
        payment_method=attempt.payment_method,
        attempted_at=attempt.created_at,
        completed_at=attempt.completed_at,
        next_retry_at=attempt.next_retry_at,
        invoice=invoice,
        failure=failure if attempt.status == "failed" else None,
        param=param if attempt.status == "failed" else None,
    )


def label(inv: Invoice) -> str:
    """How an invoice is named in messages: its number, else its id."""
    return inv.number or inv.id


def check_payable(inv: Invoice, attempts: Sequence[PaymentAttempt]) -> None:
    """Refuse (:class:`StateError`, saying why) to charge an invoice that is not open or
    overdue, that an earlier attempt already charged, or whose total is negative."""
    name = label(inv)
    if inv.status == "draft":
        raise StateError(
            f"invoice {name} is a draft: finalize it before paying it "
            f"(billing-batch invoice finalize {inv.id})"
        )
    if inv.status == "void":
        raise StateError(f"invoice {name} is void: a voided invoice cannot be paid")
    if inv.status == "paid":
        by = f" by PaymentIntent {inv.payment_intent_id}" if inv.payment_intent_id else ""
        when = f" on {inv.paid_at:%Y-%m-%d %H:%M} UTC" if inv.paid_at else ""
        raise StateError(f"invoice {name} is already paid{by}{when}: nothing to charge")
    if inv.status not in PAYABLE:
        raise StateError(f"invoice {name} is {inv.status}: only open or overdue invoices are paid")
    charged = [a for a in attempts if a.status == "succeeded"]
    if charged:
        a = charged[-1]
        raise StateError(
            f"invoice {name} is {inv.status} but attempt {a.attempt_no} already charged it "
            f"(PaymentIntent {a.payment_intent_id}); not charging again: reconcile it by hand"
        )
    if inv.due_minor < 0:
        raise StateError(f"invoice {name} has a negative amount due ({inv.due}): nothing to charge")


# --- persistence ---------------------------------------------------------------------------
def _dt(text: str | None) -> datetime | None:
    return clock.parse_ts(text) if text else None


def attempt_from_row(r: Row) -> PaymentAttempt:
    """A ``payment_attempts`` row (every column, by name) as a :class:`PaymentAttempt`."""
    return PaymentAttempt(
        id=r["id"],
        invoice_id=r["invoice_id"],
        attempt_no=int(r["attempt_no"]),
        idempotency_key=r["idempotency_key"],
        status=r["status"],
        amount_minor=int(r["amount_minor"]),
        currency=r["currency"],
        payment_method=r["payment_method"],
        payment_intent_id=r["payment_intent_id"],
        decline_code=r["decline_code"],
        error_code=r["error_code"],
        message=r["message"],
        created_at=clock.parse_ts(r["created_at"]),
        completed_at=_dt(r["completed_at"]),
        next_retry_at=_dt(r["next_retry_at"]),
    )


def load_attempts(con: StateConnection, invoice_id: str) -> list[PaymentAttempt]:
    """Every attempt of an invoice, oldest first."""
    rows = state.query(con, "payments/attempts_of_invoice", {"invoice_id": invoice_id})
    return [attempt_from_row(r) for r in rows.fetchall()]


def load_attempt(con: StateConnection, attempt_id: str) -> PaymentAttempt:
    row = state.query(con, "payments/attempt_by_id", {"attempt_id": attempt_id}).fetchone()
    return attempt_from_row(row)


def list_attempts(settings: Settings, invoice_id: str) -> list[PaymentAttempt]:
    """Every payment attempt of an invoice (by id or number), oldest first."""
    inv = invoices.get_invoice(settings, invoice_id)
    with state.opened(settings) as con:
        return load_attempts(con, inv.id)


def first_attempt_at(con: StateConnection, invoice_id: str) -> datetime | None:
    """When the invoice was first tried (None before any attempt)."""
    row = state.query(con, "payments/first_attempt_created_at", {"invoice_id": invoice_id})
    first = row.fetchone()
    return clock.parse_ts(first[0]) if first is not None else None


def new_attempt(
    invoice: Invoice, attempt_no: int, payment_method: str, now: datetime
) -> PaymentAttempt:
    """Attempt ``attempt_no`` of ``invoice``, not yet written: ``pending``, for the
    invoice's amount due, with its stable id and its own idempotency key."""
    return PaymentAttempt(
        id=stable_id("pay", invoice.id, attempt_no),
        invoice_id=invoice.id,
        attempt_no=attempt_no,
        idempotency_key=idempotency_key(invoice.id, attempt_no),
        status="pending",
        amount_minor=invoice.due_minor,
        currency=invoice.currency,
        payment_method=payment_method,
        payment_intent_id=None,
        decline_code=None,
        error_code=None,
        message=None,
        created_at=now,
        completed_at=None,
        next_retry_at=None,
    )


def insert_pending(con: StateConnection, attempt: PaymentAttempt) -> None:
    """Write a :func:`new_attempt` (inside the caller's transaction)."""
    state.query(
        con,
        "payments/insert_pending_attempt",
        {
            "id": attempt.id,
            "invoice_id": attempt.invoice_id,
            "attempt_no": attempt.attempt_no,
            "idempotency_key": attempt.idempotency_key,
            "amount_minor": attempt.amount_minor,
            "currency": attempt.currency,
            "payment_method": attempt.payment_method,
            "created_at": clock.ts(attempt.created_at),
        },
    )


def complete(
    con: StateConnection,
    attempt_id: str,
    *,
    status: str,
    payment_intent_id: str | None,
    decline_code: str | None,
    error_code: str | None,
    message: str | None,
    completed_at: datetime | None,
    next_retry_at: datetime | None,
) -> None:
    """Write an attempt's outcome (inside the caller's transaction)."""
    state.query(
        con,
        "payments/complete_attempt",
        {
            "attempt_id": attempt_id,
            "status": status,
            "payment_intent_id": payment_intent_id,
            "decline_code": decline_code,
            "error_code": error_code,
            "message": message,
            "completed_at": clock.ts(completed_at) if completed_at else None,
            "next_retry_at": clock.ts(next_retry_at) if next_retry_at else None,
        },
    )


__all__ = [
    "ATTEMPT_STATUSES",
    "PAYABLE",
    "PaymentAttempt",
    "PaymentResult",
    "attempt_from_row",
    "check_payable",
    "complete",
    "first_attempt_at",
    "insert_pending",
    "label",
    "list_attempts",
    "load_attempt",
    "load_attempts",
    "new_attempt",
    "result_of",
]
