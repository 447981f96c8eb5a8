"""What Stripe's answers become: declines (retried on the schedule) and 3-D Secure
(recorded, never retried automatically; the first PaymentIntent canceled before a new
one), end to end; and the pure mapping from a PaymentIntent's state or a Stripe failure
to an outcome."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing_batch import payments
from billing_batch._core.errors import PaymentError
from billing_batch.config.settings import Settings
from billing_batch.invoicing import service as invoices
from billing_batch.payments.attempts import PaymentResult
from billing_batch.payments.outcomes import outcome_from_failure, outcome_from_intent
from billing_batch.payments.stripe_gateway import StripeFailure
from tests.fake_stripe import FakeStripe, FakeStripeHTTPClient
from tests.payments.support import DAY0, at, attempts, make_invoice, outbox, pay


@pytest.mark.parametrize(
    ("payment_method", "decline_code", "error_code", "message"),
    [
        ("pm_card_chargeDeclined", "generic_decline", "card_declined", "Your card was declined."),
        (
            "pm_card_chargeDeclinedInsufficientFunds",
            "insufficient_funds",
            "card_declined",
            "Your card has insufficient funds.",
        ),
        (
            "pm_card_chargeDeclinedExpiredCard",
            "expired_card",
            "expired_card",
            "Your card has expired.",
        ),
        (
            "pm_card_chargeDeclinedIncorrectCvc",
            "incorrect_cvc",
            "incorrect_cvc",
            "Your card's security code is incorrect.",
        ),
    ],
)
def test_decline_is_recorded_and_retry_scheduled(
    psettings: Settings,
    fake: FakeStripe,
    http: FakeStripeHTTPClient,
    payment_method: str,
    decline_code: str,
    error_code: str,
    message: str,
) -> None:
    inv = make_invoice(psettings)
    now = DAY0 + timedelta(hours=9)
    result = pay(psettings, inv, http, now=now, payment_method=payment_method)

    assert not result.succeeded and result.status == "declined"
    assert (result.decline_code, result.error_code, result.message) == (
        decline_code,
        error_code,
        message,
    )
    assert result.payment_intent_id in fake.payment_intents  # Stripe made one, failed
    assert fake.charges == []
    assert invoices.get_invoice(psettings, inv.id).status == "open"
    (a,) = attempts(psettings, inv.id)
    assert a.status == "declined" and a.completed_at == now
    assert a.next_retry_at == datetime(2024, 2, 2, tzinfo=UTC)  # day 1 of the schedule
    (event,) = outbox(psettings, "billing.invoice.payment_failed", inv.id)
    assert event["data"]["code"] == decline_code
    assert event["data"]["attempt"] == 1 and event["data"]["automaticRetry"] is True


@pytest.mark.parametrize("mode", ["decline", "requires_action"])
def test_requires_action_is_recorded_and_not_retried(
    psettings: Settings, mode: str, http: FakeStripeHTTPClient, fake: FakeStripe
) -> None:
    """Off-session, Stripe answers an authentication-required card with a 402
    ``authentication_required`` (mode "decline"), or a PaymentIntent in
    ``requires_action``; both are recorded as requires_action, never retried."""
    fake.off_session_authentication = mode
    inv = make_invoice(psettings, workspace="ws_3ds")
    result = pay(psettings, inv, http)
    assert result.status == "requires_action" and not result.succeeded
    assert result.decline_code == "authentication_required"
    assert result.message and "not retried automatically" in result.message
    assert result.next_retry_at is None
    assert invoices.get_invoice(psettings, inv.id).status == "open"
    assert fake.charges == []
    (event,) = outbox(psettings, "billing.invoice.payment_failed", inv.id)
    assert event["data"]["status"] == "requires_action"
    assert event["data"]["automaticRetry"] is False
    for day in (1, 3, 7, 30):
        assert payments.retry_due_payments(psettings, now=at(day), http_client=http) == []
    assert len(attempts(psettings, inv.id)) == 1


def test_requires_action_then_customer_authenticates(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient
) -> None:
    fake.off_session_authentication = "requires_action"
    inv = make_invoice(psettings, workspace="ws_3ds")
    pid = pay(psettings, inv, http).payment_intent_id
    assert pid is not None
    # the customer completes 3-D Secure on Stripe's side
    fake.payment_intents[pid]["status"] = "succeeded"
    (result,) = payments.retry_due_payments(psettings, now=at(1), http_client=http)
    assert isinstance(result, PaymentResult)
    assert result.succeeded and result.attempt_no == 1 and result.payment_intent_id == pid
    assert invoices.get_invoice(psettings, inv.id).status == "paid"


def test_pay_again_after_requires_action_cancels_the_first_intent(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient
) -> None:
    """The first PaymentIntent could still be authenticated later: it is canceled before
    a second one is charged, so the invoice can never be paid twice."""
    fake.off_session_authentication = "requires_action"
    inv = make_invoice(psettings, workspace="ws_3ds")
    first = pay(psettings, inv, http)
    second = pay(psettings, inv, http, now=at(0, 3), payment_method="pm_card_visa")
    assert second.succeeded and second.attempt_no == 2
    assert fake.payment_intents[str(first.payment_intent_id)]["status"] == "canceled"
    (cancel,) = fake.requests_to("POST", f"/v1/payment_intents/{first.payment_intent_id}/cancel")
    assert cancel.idempotency_key == f"invoice-{inv.id}-attempt-1-cancel"
    assert len(fake.charges) == 1


# --- the pure mapping ----------------------------------------------------------------------
def _intent(status: str, **extra: Any) -> dict[str, Any]:
    return {"id": "pi_1", "status": status, **extra}


@pytest.mark.parametrize(
    ("intent", "status", "error_code", "decline_code"),
    [
        (_intent("succeeded"), "succeeded", None, None),
        (_intent("requires_action"), "requires_action", "authentication_required", None),
        (_intent("requires_source_action"), "requires_action", "authentication_required", None),
        (_intent("processing"), "pending", None, None),
        (
            _intent(
                "requires_payment_method",
                last_payment_error={
                    "type": "card_error",
                    "code": "card_declined",
                    "decline_code": "insufficient_funds",
                    "message": "Your card has insufficient funds.",
                },
            ),
            "declined",
            "card_declined",
            "insufficient_funds",
        ),
        (
            _intent(
                "requires_payment_method",
                last_payment_error={"type": "card_error", "code": "authentication_required"},
            ),
            "requires_action",
            "authentication_required",
            None,
        ),
        (
            _intent(
                "requires_payment_method",
                last_payment_error={"type": "invalid_request_error", "code": "amount_too_small"},
            ),
            "failed",
            "amount_too_small",
            None,
        ),
        (_intent("canceled", cancellation_reason="abandoned"), "failed", "canceled", None),
        (_intent("requires_confirmation"), "failed", "unexpected_status", None),
    ],
)
def test_outcome_of_each_payment_intent_state(
    intent: dict[str, Any], status: str, error_code: str | None, decline_code: str | None
) -> None:
    out = outcome_from_intent(intent)
    assert (out.status, out.payment_intent_id, out.error_code) == (status, "pi_1", error_code)
    if status == "requires_action":
        assert out.decline_code == "authentication_required"
        assert out.message and "not retried automatically" in out.message
    else:
        assert out.decline_code == decline_code
    assert out.definitive and out.notify and out.error is None


@pytest.mark.parametrize(
    ("kind", "status", "definitive", "failure", "notify"),
    [
        ("declined", "declined", True, None, True),
        ("requires_action", "requires_action", True, None, True),
        ("transient", "failed", False, "unavailable", True),
        ("invalid", "failed", True, "refused", True),
        ("auth", "failed", False, None, False),
        ("other", "failed", True, None, True),
    ],
)
def test_outcome_of_each_kind_of_failure(
    kind: str, status: str, definitive: bool, failure: str | None, notify: bool
) -> None:
    """Only a verdict closes an unknown attempt (``definitive``); our own configuration
    error (``auth``) is raised once recorded and sends no payment_failed event."""
    err = PaymentError("what Stripe said")
    f = StripeFailure(kind, "some_code", None, "what Stripe said", {"id": "pi_9"}, 400, "param")
    out = outcome_from_failure(f, err)
    assert (out.status, out.definitive, out.failure, out.notify) == (
        status,
        definitive,
        failure,
        notify,
    )
    assert out.error is (err if kind == "auth" else None)
    assert out.param == ("param" if kind == "invalid" else None)
    assert out.payment_intent_id == (None if kind == "auth" else "pi_9")
