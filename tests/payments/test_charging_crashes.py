"""Never twice: the attempt is committed before the Stripe call, and an attempt whose fate
is unknown (a crash, a lost answer, a 5xx) is resolved before anything else."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from billing_batch import payments
from billing_batch._core.errors import StateError
from billing_batch.config.settings import Settings, load_settings
from billing_batch.invoicing import service as invoices
from billing_batch.payments.attempts import PaymentResult
from tests.fake_stripe import FakeStripe, FakeStripeHTTPClient, FakeStripeServer
from tests.payments.support import (
    DAY0,
    KEY,
    Crash,
    CrashAfterCharge,
    at,
    attempts,
    make_invoice,
    outbox,
    pay,
)


@pytest.mark.parametrize("how", ["search", "replay", "expired_key"])
def test_crash_between_charge_and_record_never_charges_twice(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient, how: str
) -> None:
    inv = make_invoice(psettings)
    with pytest.raises(Crash):
        pay(psettings, inv, CrashAfterCharge(fake))
    (a,) = attempts(psettings, inv.id)
    assert a.status == "pending"  # committed before the call, never completed
    assert len(fake.charges) == 1
    assert invoices.get_invoice(psettings, inv.id).status == "open"

    if how == "replay":
        fake.search_lag_seconds = 3600  # too fresh for search: the same key is resent
    elif how == "expired_key":
        fake.expire_idempotency_keys()  # a day later: only search can find it
    later = at(1, 5) if how == "expired_key" else at(0, 1)
    result = pay(psettings, inv, http, now=later)

    assert result.succeeded and result.attempt_no == 1
    assert len(fake.charges) == 1, "charged twice"
    assert invoices.get_invoice(psettings, inv.id).status == "paid"
    assert [x.status for x in attempts(psettings, inv.id)] == ["succeeded"]
    posts = fake.requests_to("POST", "/v1/payment_intents")
    if how == "replay":
        assert [r.replayed for r in posts] == [False, True]
    else:
        assert len(posts) == 1  # found by its metadata


def test_crash_after_a_decline_records_the_decline(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient
) -> None:
    inv = make_invoice(psettings, workspace="ws_declined")
    with pytest.raises(Crash):
        pay(psettings, inv, CrashAfterCharge(fake))
    assert [x.status for x in attempts(psettings, inv.id)] == ["pending"]
    result = pay(psettings, inv, http, now=at(0, 1))
    assert result.status == "declined" and result.attempt_no == 1
    assert result.decline_code == "generic_decline"
    assert len(fake.payment_intents) == 1 and fake.charges == []


@pytest.mark.parametrize("found", [True, False])
def test_pending_attempt_of_a_voided_invoice_is_looked_up_never_resent(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient, found: bool
) -> None:
    inv = make_invoice(psettings)
    with pytest.raises(Crash):
        pay(psettings, inv, CrashAfterCharge(fake))
    invoices.void_invoice(psettings, inv.id, reason="customer left", now=at(0, 1))
    if not found:
        fake.search_lag_seconds = 3600
    result = pay(psettings, inv, http, now=at(0, 2))
    assert result.invoice is not None and result.invoice.status == "void"
    assert len(fake.requests_to("POST", "/v1/payment_intents")) == 1  # never resent
    if found:
        assert result.status == "succeeded"  # the money did move: say so
        assert result.message and "refund" in result.message
    else:
        assert (result.status, result.error_code) == ("failed", "not_found")
    with pytest.raises(StateError, match="void"):
        pay(psettings, inv, http, now=at(0, 3))


@pytest.mark.parametrize("fault_on", ["search", "resend"])
def test_unresolved_attempt_stays_unknown_when_stripe_cannot_be_asked(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient, fault_on: str
) -> None:
    """A rate limit while looking up (or resending) a pending attempt says nothing about
    the first request: the attempt stays pending, and no attempt 2 starts beside it."""
    inv = make_invoice(psettings)
    with pytest.raises(Crash):
        pay(psettings, inv, CrashAfterCharge(fake))
    if fault_on == "search":
        fake.inject("rate_limit", times=10, path="/v1/payment_intents/search")
    else:
        fake.search_lag_seconds = 3600
        fake.inject("rate_limit", times=10, method="POST", path="/v1/payment_intents")
    result = pay(psettings, inv, http, now=at(0, 1), payment_method="pm_card_amex")
    assert (result.attempt_no, result.status) == (1, "pending")
    assert result.message and "still unresolved" in result.message
    assert [a.status for a in attempts(psettings, inv.id)] == ["pending"]
    assert outbox(psettings, "billing.invoice.payment_failed") == []
    fake.clear_faults()
    (later,) = payments.retry_due_payments(psettings, now=at(0, 2), http_client=http)
    assert isinstance(later, PaymentResult) and later.succeeded and later.attempt_no == 1
    assert len(fake.charges) == 1


def test_pending_attempt_blocks_a_new_attempt(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient
) -> None:
    """A pending attempt is resolved (same key) before anything else, even by a caller
    asking for another payment method, and attempt 2 never starts beside it."""
    inv = make_invoice(psettings)
    with pytest.raises(Crash):
        pay(psettings, inv, CrashAfterCharge(fake))
    fake.search_lag_seconds = 3600
    result = pay(psettings, inv, http, payment_method="pm_card_amex")
    assert result.attempt_no == 1 and result.payment_method == "pm_card_visa"
    assert len(fake.charges) == 1


def test_process_killed_between_charge_and_record(
    psettings: Settings, fake: FakeStripe, server: FakeStripeServer, home: Path
) -> None:
    """A real process: its HTTP layer gets Stripe's 200, then os._exit before the status
    write. The rerun records the charge; Stripe's ledger shows exactly one."""
    inv = make_invoice(psettings)
    script = textwrap.dedent(
        """
        import os, sys
        import stripe
        from billing_batch import payments
        from billing_batch.config import load_settings

        class Killed(stripe.RequestsClient):
            def request(self, method, url, headers, post_data=None):
                answer = super().request(method, url, headers, post_data)
                if method == "post" and url.endswith("/v1/payment_intents"):
                    os._exit(137)
                return answer

        payments.pay_invoice(load_settings(), sys.argv[1], http_client=Killed(timeout=10))
        sys.exit(0)
        """
    )
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, "-c", script, inv.id],
        env=env,
        cwd=str(home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 137, proc.stderr
    assert KEY not in proc.stdout + proc.stderr
    assert [x.status for x in attempts(psettings, inv.id)] == ["pending"]
    assert len(fake.charges) == 1

    result = payments.pay_invoice(psettings, inv.id)  # the rerun, over the same server
    assert result.succeeded and result.attempt_no == 1
    assert len(fake.charges) == 1
    assert invoices.get_invoice(psettings, inv.id).payment_intent_id == (
        fake.charges[0].payment_intent
    )


def test_connection_error_then_resolved_on_retry(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient
) -> None:
    inv = make_invoice(psettings)
    fake.inject("connection_error", times=3, path="/v1/payment_intents")  # 1 + 2 retries
    result = pay(psettings, inv, http)
    assert result.status == "failed" and result.error_code == "api_connection_error"
    assert result.next_retry_at == datetime(2024, 2, 2, tzinfo=UTC)
    assert fake.charges == []
    assert len(outbox(psettings, "billing.invoice.payment_failed", inv.id)) == 1
    # Unanswered: before any new attempt, attempt 1 is looked up, then sent again under
    # its own key; it never arrived, so it is performed now, as attempt 1.
    (retried,) = payments.retry_due_payments(psettings, now=at(1), http_client=http)
    assert isinstance(retried, PaymentResult)
    assert retried.succeeded and retried.attempt_no == 1
    assert len(fake.charges) == 1 and len(attempts(psettings, inv.id)) == 1
    assert invoices.get_invoice(psettings, inv.id).status == "paid"


def test_response_lost_after_the_charge_is_found_not_repeated(
    psettings: Settings,
    fake: FakeStripe,
    server: FakeStripeServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stripe charged, the connection dropped before the answer, no retries left: the
    attempt is failed (unanswered); the next pay finds the PaymentIntent by metadata."""
    monkeypatch.setenv("BILLING_PAYMENTS_MAX_NETWORK_RETRIES", "0")
    settings = load_settings()
    inv = make_invoice(settings)
    fake.inject("drop_after", path="/v1/payment_intents")
    first = payments.pay_invoice(settings, inv.id, now=DAY0)
    assert first.status == "failed" and first.error_code == "api_connection_error"
    assert len(fake.charges) == 1  # it did go through
    again = payments.pay_invoice(settings, inv.id, payment_method="pm_card_amex", now=at(0, 1))
    assert again.succeeded and again.attempt_no == 1
    assert again.payment_intent_id == fake.charges[0].payment_intent
    assert len(fake.charges) == 1 and len(attempts(settings, inv.id)) == 1
    assert fake.requests_to("POST", "/v1/payment_intents")[1:] == []  # found, not resent
