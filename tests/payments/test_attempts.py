"""The attempt record and the result of a ``pay``: which attempts are still unknown, the
one mapping from an outcome to the project's error, and the row written before the
Stripe call and completed after it (a real state store)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest

from billing_batch._core.errors import (
    PaymentActionRequiredError,
    PaymentDeclinedError,
    PaymentError,
    PaymentRefusedError,
    PaymentTransientError,
    StateError,
)
from billing_batch.config.settings import Settings
from billing_batch.payments import attempts as records
from billing_batch.payments.attempts import PaymentAttempt, PaymentResult
from billing_batch.payments.keys import idempotency_key
from billing_batch.storage import state as store
from tests.payments.support import DAY0, make_invoice


def _attempt(status: str, error_code: str | None = None, pid: str | None = None) -> PaymentAttempt:
    return PaymentAttempt(
        id="pay_1",
        invoice_id="inv_1",
        attempt_no=1,
        idempotency_key=idempotency_key("inv_1", 1),
        status=status,
        amount_minor=55000,
        currency="USD",
        payment_method="pm_card_visa",
        payment_intent_id=pid,
        decline_code=None,
        error_code=error_code,
        message=None,
        created_at=DAY0,
        completed_at=None,
        next_retry_at=None,
    )


@pytest.mark.parametrize(
    ("status", "error_code", "pid", "unanswered", "unknown"),
    [
        ("pending", None, None, False, True),
        ("failed", "api_connection_error", None, True, True),
        ("failed", "api_error", None, True, True),
        ("failed", "api_error", "pi_1", False, False),  # its PaymentIntent is known
        ("failed", "rate_limit", None, False, False),  # a 429 was never executed
        ("declined", "card_declined", "pi_1", False, False),
        ("succeeded", None, "pi_1", False, False),
    ],
)
def test_which_attempts_could_still_become_a_charge(
    status: str, error_code: str | None, pid: str | None, unanswered: bool, unknown: bool
) -> None:
    a = _attempt(status, error_code, pid)
    assert (a.unanswered, a.unknown) == (unanswered, unknown)


@pytest.mark.parametrize(
    ("status", "failure", "expected"),
    [
        ("succeeded", None, None),
        ("pending", None, None),
        ("declined", None, PaymentDeclinedError),
        ("requires_action", None, PaymentActionRequiredError),
        ("failed", "refused", PaymentRefusedError),
        ("failed", "unavailable", PaymentTransientError),
        ("failed", None, PaymentError),
    ],
)
def test_error_of_each_outcome(
    status: str, failure: str | None, expected: type[PaymentError] | None
) -> None:
    result = PaymentResult(
        invoice_id="inv_1",
        attempt_no=1,
        status=status,
        payment_intent_id=None,
        decline_code="generic_decline" if status == "declined" else None,
        message="what happened",
        amount_minor=55000,
        currency="USD",
        error_code="resource_missing" if failure == "refused" else None,
        failure=failure,
        param="payment_method" if failure == "refused" else None,
    )
    err = result.error()
    if expected is None:
        assert err is None
        return
    assert type(err) is expected and "what happened" in str(err)
    if isinstance(err, PaymentRefusedError):
        assert (err.stripe_code, err.param) == ("resource_missing", "payment_method")
    if isinstance(err, PaymentDeclinedError):
        assert err.decline_code == "generic_decline"


def test_an_attempt_is_written_pending_then_completed(psettings: Settings) -> None:
    inv = make_invoice(psettings)
    attempt = records.new_attempt(inv, 1, "pm_card_visa", DAY0)
    assert (attempt.status, attempt.amount_minor, attempt.currency) == ("pending", 55000, "USD")
    assert attempt.idempotency_key == idempotency_key(inv.id, 1)
    with store.opened(psettings) as con, store.transaction(con):
        records.insert_pending(con, attempt)
    (stored,) = records.list_attempts(psettings, str(inv.number))
    assert stored == attempt  # every field back as written
    done = DAY0 + timedelta(minutes=1)
    with store.opened(psettings) as con, store.transaction(con):
        records.complete(
            con,
            attempt.id,
            status="declined",
            payment_intent_id="pi_1",
            decline_code="generic_decline",
            error_code="card_declined",
            message="Your card was declined.",
            completed_at=done,
            next_retry_at=DAY0 + timedelta(days=1),
        )
        assert records.first_attempt_at(con, inv.id) == DAY0
        # a second attempt numbered 1 is refused by the store itself
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            records.insert_pending(con, records.new_attempt(inv, 1, "pm_card_visa", done))
    (stored,) = records.list_attempts(psettings, inv.id)
    assert (stored.status, stored.payment_intent_id, stored.completed_at) == (
        "declined",
        "pi_1",
        done,
    )
    assert stored.next_retry_at == DAY0 + timedelta(days=1)
    # a declined attempt does not stop a new one; a succeeded one does
    records.check_payable(inv, [stored])
    with pytest.raises(StateError, match="already charged"):
        records.check_payable(inv, [_attempt("succeeded", pid="pi_2")])
