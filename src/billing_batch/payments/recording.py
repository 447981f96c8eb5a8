"""Recording an attempt's outcome: the attempt row together with its consequence, in
one transaction.

* ``succeeded``: the invoice moves to ``paid`` (with the PaymentIntent id and the time,
  and ``billing.invoice.paid``, through ``invoices.transition``); a charge of an
  invoice that is no longer payable (voided meanwhile) is kept, and its message says to
  refund it by hand.
* ``declined`` / ``failed``: ``next_retry_at`` from :mod:`.retry_schedule`;
  ``declined``, ``requires_action``, ``failed``: one ``billing.invoice.payment_failed``
  event per attempt (not for our own configuration errors).

Guarded: the attempt is only written if it is still as the caller saw it, so another
process that recorded it first is never overwritten, and nothing is written twice.
"""

from __future__ import annotations

import logging
from datetime import datetime

from .._core import clock
from ..config.settings import Settings
from ..invoicing import service as invoices
from ..invoicing.model import Invoice
from ..storage import state
from ..storage.state import StateConnection
from ..webhooks.outbox import record_event
from .attempts import (
    PAYABLE,
    PaymentAttempt,
    PaymentResult,
    complete,
    first_attempt_at,
    label,
    load_attempt,
    result_of,
)
from .outcomes import Outcome
from .redaction import redact
from .retry_schedule import next_retry_at

log = logging.getLogger(__name__)


def record(
    settings: Settings,
    now: datetime,
    inv: Invoice,
    attempt: PaymentAttempt,
    outcome: Outcome,
    *,
    expected: str,
) -> PaymentResult:
    """Write an attempt's outcome, with the invoice's move to ``paid`` or the
    ``payment_failed`` event, in one transaction; a no-op if another process
    recorded this attempt first (it is no longer ``expected`` with the error code the
    caller saw). Raises ``outcome.error`` once recorded (configuration errors)."""
    message = redact(outcome.message, settings.stripe_api_key) if outcome.message else None
    recorded = False
    with state.opened(settings) as con:
        with state.transaction(con):
            current = load_attempt(con, attempt.id)
            if current.status == expected and current.error_code == attempt.error_code:
                recorded = True
                message = _apply(con, settings, now, inv, current, outcome, message)
            final = load_attempt(con, attempt.id)
            after = invoices.load_invoice(con, inv.id)
    if not recorded:
        return result_of(final, after)
    log.info(
        "invoice %s: attempt %d %s%s",
        label(inv),
        final.attempt_no,
        final.status,
        f": {final.message}" if final.message else "",
    )
    if outcome.error is not None:
        raise outcome.error
    return result_of(final, after, failure=outcome.failure, param=outcome.param)


def _apply(
    con: StateConnection,
    settings: Settings,
    now: datetime,
    inv: Invoice,
    attempt: PaymentAttempt,
    outcome: Outcome,
    message: str | None,
) -> str | None:
    """The writes of :func:`record` (inside its transaction); returns the message kept."""
    status = outcome.status
    pid = outcome.payment_intent_id or attempt.payment_intent_id
    if status == "succeeded":
        message = _settle_paid(con, now, inv, attempt, pid, message)
    next_retry = _next_retry(con, settings, attempt) if status in ("declined", "failed") else None
    complete(
        con,
        attempt.id,
        status=status,
        payment_intent_id=pid,
        decline_code=outcome.decline_code,
        error_code=outcome.error_code,
        message=message,
        completed_at=None if status == "pending" else now,
        next_retry_at=next_retry,
    )
    if status in ("declined", "requires_action", "failed") and outcome.notify:
        _announce_failure(con, now, inv, attempt, outcome, message, pid, next_retry)
    return message


def _settle_paid(
    con: StateConnection,
    now: datetime,
    inv: Invoice,
    attempt: PaymentAttempt,
    pid: str | None,
    message: str | None,
) -> str | None:
    """The invoice is paid by ``pid``: moved to ``paid`` if it is still payable;
    otherwise (voided, or paid by another PaymentIntent) the charge is kept and its
    message says to refund or reconcile it by hand."""
    current = invoices.load_invoice(con, inv.id)
    if current.status in PAYABLE:
        assert pid is not None
        invoices.transition(
            con,
            inv.id,
            "paid",
            at=now,
            reason=f"paid by Stripe PaymentIntent {pid} (attempt {attempt.attempt_no})",
            payment_intent_id=pid,
        )
    elif not (current.status == "paid" and current.payment_intent_id == pid):
        other = current.payment_intent_id
        message = (
            f"charged by PaymentIntent {pid}, but the invoice is {current.status}"
            f"{f' (paid by {other})' if other else ''}"
            ": refund or reconcile this payment by hand"
        )
        log.error("invoice %s: %s", label(inv), message)
    return message


def _next_retry(
    con: StateConnection, settings: Settings, attempt: PaymentAttempt
) -> datetime | None:
    first_try = first_attempt_at(con, attempt.invoice_id) or attempt.created_at
    return next_retry_at(
        settings.payments.dunning_schedule_days,
        first_try=first_try,
        attempt_no=attempt.attempt_no,
        attempted_at=attempt.created_at,
    )


def _announce_failure(
    con: StateConnection,
    now: datetime,
    inv: Invoice,
    attempt: PaymentAttempt,
    outcome: Outcome,
    message: str | None,
    pid: str | None,
    next_retry: datetime | None,
) -> None:
    """``billing.invoice.payment_failed``, one per attempt (its id derives from the
    invoice and the attempt number)."""
    record_event(
        con,
        "billing.invoice.payment_failed",
        subject_id=inv.id,
        discriminator=str(attempt.attempt_no),
        workspace_id=inv.workspace_id,
        data={
            "invoiceId": inv.id,
            "invoiceNumber": inv.number,
            "workspaceId": inv.workspace_id,
            "attempt": attempt.attempt_no,
            "status": outcome.status,
            "code": outcome.decline_code or outcome.error_code,
            "declineCode": outcome.decline_code,
            "errorCode": outcome.error_code,
            "message": message,
            "amount": attempt.amount,
            "currency": attempt.currency,
            "paymentIntentId": pid,
            "nextRetryAt": next_retry,
            "automaticRetry": next_retry is not None,
        },
        at=now,
        recorded_at=clock.utcnow(),
    )


__all__ = ["record"]
