"""Paying one invoice (or a batch): the charge Stripe sees, the invoice paid, drafts
finalized first, refusals."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from billing_batch import payments
from billing_batch._core.errors import (
    BillingError,
    InputError,
    NoPaymentMethodError,
    PaymentRefusedError,
    PaymentTransientError,
    StateError,
    StripeNotConfiguredError,
)
from billing_batch._core.jsonutil import dumps, loads
from billing_batch.config.settings import Settings
from billing_batch.invoicing import service as invoices
from billing_batch.payments.attempts import PaymentResult
from billing_batch.payments.keys import idempotency_key
from billing_batch.storage import state as store
from tests.fake_stripe import FakeStripe, FakeStripeHTTPClient, FakeStripeServer
from tests.payments.support import (
    DAY0,
    at,
    attempts,
    make_invoice,
    outbox,
    pay,
    pdf_text,
    usage_draft,
)


def test_success_pays_the_invoice_once(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient
) -> None:
    inv = make_invoice(psettings)
    now = DAY0 + timedelta(hours=2, minutes=5)
    result = pay(psettings, inv, http, now=now)

    assert result.succeeded and result.status == "succeeded"
    assert result.attempt_no == 1
    assert result.amount_minor == 55000 and result.currency == "USD"
    assert result.payment_intent_id and result.payment_intent_id.startswith("pi_")
    # the invoice: paid, with the PaymentIntent and the time
    paid = invoices.get_invoice(psettings, inv.id)
    assert paid.status == "paid"
    assert paid.payment_intent_id == result.payment_intent_id
    assert paid.paid_at == now
    assert result.invoice is not None and result.invoice.status == "paid"
    # Stripe saw exactly one charge, as asked
    assert len(fake.charges) == 1
    charge = fake.charges[0]
    assert (charge.amount, charge.currency, charge.payment_method) == (55000, "usd", "pm_card_visa")
    assert charge.metadata == {
        "invoice_id": inv.id,
        "invoice_number": inv.number,
        "workspace_id": "ws_123",
        "attempt": "1",
    }
    (req,) = fake.requests_to("POST", "/v1/payment_intents")
    assert req.idempotency_key == f"invoice-{inv.id}-attempt-1" == idempotency_key(inv.id, 1)
    assert req.params["confirm"] == "true" and req.params["off_session"] == "true"
    assert req.params["description"] == f"Invoice {inv.number}"
    # the workspace's customer was created on first use, with its key, and recorded
    (cus_req,) = fake.requests_to("POST", "/v1/customers")
    assert cus_req.idempotency_key == "customer-ws_123"
    assert cus_req.params["metadata"] == {"workspace_id": "ws_123"}
    assert cus_req.params["email"] == "ap@example.com"
    customer = fake.payment_intents[result.payment_intent_id]["customer"]
    with store.opened(psettings) as con:
        row = con.execute("SELECT * FROM customers WHERE workspace_id = 'ws_123'").fetchone()
    assert row["stripe_customer_id"] == customer
    # the attempt row, and the paid event in the outbox
    (a,) = attempts(psettings, inv.id)
    assert (a.status, a.attempt_no, a.payment_intent_id) == (
        "succeeded",
        1,
        result.payment_intent_id,
    )
    assert a.created_at == now and a.completed_at == now and a.next_retry_at is None
    (event,) = outbox(psettings, "billing.invoice.paid", inv.id)
    assert event["data"]["payment"]["paymentIntentId"] == result.payment_intent_id
    assert event["data"]["status"] == "paid"
    assert outbox(psettings, "billing.invoice.payment_failed") == []
    # JSON out: the payment and the invoice after it
    doc = loads(dumps(result.to_json()))
    assert doc["status"] == "succeeded" and doc["amount"] == Decimal("550")
    assert doc["invoice"]["status"] == "paid"
    # paying again is refused and charges nothing
    with pytest.raises(StateError, match="already paid"):
        pay(psettings, inv, http)
    assert len(fake.charges) == 1


def test_explicit_payment_method_and_none_at_all(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient
) -> None:
    inv = make_invoice(psettings, workspace="ws_nopm")
    with pytest.raises(InputError, match="--payment-method"):
        pay(psettings, inv, http)
    assert attempts(psettings, inv.id) == [] and fake.requests == []
    result = pay(psettings, inv, http, payment_method="pm_card_mastercard")
    assert result.succeeded and result.payment_method == "pm_card_mastercard"
    assert fake.charges[0].payment_method == "pm_card_mastercard"


def test_jpy_is_charged_in_whole_yen(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient
) -> None:
    inv = make_invoice(psettings, workspace="ws_jpy")  # Growth (JPY): fee, minimum, tax
    assert inv.currency == "JPY" and inv.total == inv.total.to_integral_value()
    result = pay(psettings, inv, http)
    assert result.succeeded and result.amount_minor == int(inv.total) > 0
    assert (fake.charges[0].amount, fake.charges[0].currency) == (int(inv.total), "jpy")
    assert result.to_json()["amount"] == inv.total


def test_zero_total_is_paid_without_a_charge(
    psettings: Settings, fake: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRIPE_API_KEY")
    inv = make_invoice(psettings, workspace="ws_empty")
    assert inv.total == 0
    result = payments.pay_invoice(psettings, inv.id, now=DAY0)
    assert result.succeeded and result.attempt_no == 0 and result.payment_intent_id is None
    assert invoices.get_invoice(psettings, inv.id).status == "paid"
    assert attempts(psettings, inv.id) == []


@pytest.mark.parametrize("status", ["void", "paid"])
def test_paying_a_void_or_paid_invoice_is_refused(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient, status: str
) -> None:
    inv = make_invoice(psettings, status=status)
    words = {"void": "is void", "paid": "already paid"}
    with pytest.raises(StateError, match=words[status]):
        pay(psettings, inv, http)
    assert attempts(psettings, inv.id) == []
    assert fake.requests == []


def test_invalid_payment_method_is_a_failed_attempt(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient
) -> None:
    inv = make_invoice(psettings)
    result = pay(psettings, inv, http, payment_method="pm_does_not_exist")
    assert result.status == "failed" and result.error_code == "resource_missing"
    assert result.message and "pm_does_not_exist" in result.message
    assert fake.charges == []


def test_unknown_payment_method_is_the_callers_mistake(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient
) -> None:
    """The seed's own pm_card_123 does not exist: Stripe answers 400 resource_missing.
    That is a refusal with Stripe's code, not "Stripe is unavailable"."""
    inv = make_invoice(psettings)
    result = pay(psettings, inv, http, payment_method="pm_card_123")
    assert (result.status, result.failure, result.error_code) == (
        "failed",
        "refused",
        "resource_missing",
    )
    assert result.param == "payment_method"
    err = result.error()
    assert isinstance(err, PaymentRefusedError) and not isinstance(err, PaymentTransientError)
    assert err.stripe_code == "resource_missing" and "pm_card_123" in str(err)
    # a transient failure keeps its own kind
    fake.inject("connection_error", times=3)
    other = make_invoice(psettings, month=2)
    unavailable = pay(psettings, other, http)
    assert unavailable.failure == "unavailable"
    assert isinstance(unavailable.error(), PaymentTransientError)


def test_cli_pay_unknown_payment_method_exits_2_with_stripes_code(
    psettings: Settings,
    fake: FakeStripe,
    server: FakeStripeServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from billing_batch.cli import main

    inv = make_invoice(psettings)
    assert main(["invoice", "pay", inv.id, "--payment-method", "pm_card_123"]) == 2
    out = capsys.readouterr()
    assert "resource_missing" in out.err and "pm_card_123" in out.err
    assert loads(out.out)["errorCode"] == "resource_missing"
    assert fake.charges == []


def test_paying_a_draft_finalizes_it_then_charges(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient
) -> None:
    """Stripe's convention: pay on a draft finalizes it (numbered, frozen, files written,
    billing.invoice.finalized), then charges it, in one call."""
    draft = usage_draft(psettings)
    assert draft.total == Decimal("550")
    now = DAY0 + timedelta(days=40)
    result = pay(psettings, draft, http, now=now)
    assert result.succeeded and result.finalized and result.attempt_no == 1
    inv = invoices.get_invoice(psettings, draft.id)
    assert inv.status == "paid" and inv.number and inv.finalized_at == now
    assert result.invoice is not None and result.invoice.number == inv.number
    assert result.to_json()["finalized"] is True
    # charged the frozen total, once, with the invoice number in the metadata
    (charge,) = fake.charges
    assert charge.amount == inv.total_minor > 0
    (intent,) = fake.requests_to("POST", "/v1/payment_intents")
    assert intent.params["metadata"]["invoice_number"] == inv.number
    assert len(outbox(psettings, "billing.invoice.finalized", inv.id)) == 1
    assert len(outbox(psettings, "billing.invoice.paid", inv.id)) == 1
    # the archival copy was written at finalization (status open then)
    assert inv.pdf_path is not None and "Open" in pdf_text(Path(inv.pdf_path))
    # paying it again: already paid, nothing charged
    with pytest.raises(StateError, match="already paid"):
        pay(psettings, inv, http, now=now)
    assert len(fake.charges) == 1


@pytest.mark.parametrize("missing", ["key", "payment_method"])
def test_a_draft_that_cannot_be_paid_stays_a_draft(
    psettings: Settings,
    fake: FakeStripe,
    http: FakeStripeHTTPClient,
    monkeypatch: pytest.MonkeyPatch,
    missing: str,
) -> None:
    """What can be checked before finalizing is: no key, or no payment method, leaves
    the draft a draft (no number consumed, no event)."""
    if missing == "key":
        monkeypatch.delenv("STRIPE_API_KEY")
        draft = usage_draft(psettings)
        expected: type[BillingError] = StripeNotConfiguredError
    else:
        draft = usage_draft(psettings, "ws_nopm")
        expected = NoPaymentMethodError
    with pytest.raises(expected):
        pay(psettings, draft, http)
    after = invoices.get_invoice(psettings, draft.id)
    assert after.status == "draft" and after.number is None
    assert outbox(psettings, "billing.invoice.finalized", draft.id) == []
    assert fake.requests == []


def test_cli_pay_a_draft_finalizes_and_pays(
    psettings: Settings,
    fake: FakeStripe,
    server: FakeStripeServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from billing_batch.cli import main

    draft = usage_draft(psettings)
    assert main(["invoice", "pay", draft.id]) == 0
    shown = loads(capsys.readouterr().out)
    assert shown["succeeded"] is True and shown["finalized"] is True
    assert shown["invoice"]["status"] == "paid" and shown["invoice"]["number"]
    assert len(fake.charges) == 1


def test_overdue_once_then_paid(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient
) -> None:
    inv = make_invoice(psettings)  # issued Feb 1 (DAY0), net 30: due Mar 2
    assert inv.due_date == date(2024, 3, 2)
    assert invoices.mark_overdue(psettings, as_of=date(2024, 3, 2), now=at(30)) == []
    late = invoices.mark_overdue(psettings, as_of=date(2024, 3, 3), now=at(31))
    assert inv.id in {i.id for i in late}  # with every other open invoice of the template
    assert {i.status for i in late} == {"overdue"}
    mine = invoices.get_invoice(psettings, inv.id)
    assert mine.status == "overdue" and mine.overdue_at == at(31)
    assert invoices.mark_overdue(psettings, as_of=date(2024, 3, 10), now=at(38)) == []
    assert len(outbox(psettings, "billing.invoice.overdue", inv.id)) == 1
    result = pay(psettings, inv, http, now=at(40))
    assert result.succeeded
    assert invoices.get_invoice(psettings, inv.id).status == "paid"


def test_pay_invoices_one_failure_never_stops_the_others(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient
) -> None:
    ok = make_invoice(psettings)
    declined = make_invoice(psettings, workspace="ws_declined")
    nopm = make_invoice(psettings, workspace="ws_nopm")
    draft = make_invoice(psettings, workspace="ws_known", status="draft")
    ok2 = make_invoice(psettings, workspace="ws_known", month=2)
    out = payments.pay_invoices(
        psettings, [ok.id, declined.id, nopm.id, draft.id, ok2.id], now=DAY0, http_client=http
    )
    assert isinstance(out[0], PaymentResult) and out[0].succeeded
    assert isinstance(out[1], PaymentResult) and out[1].status == "declined"
    assert isinstance(out[2], NoPaymentMethodError) and out[2].invoice_id == nopm.id
    # a draft is finalized, then charged (Stripe's convention)
    assert isinstance(out[3], PaymentResult) and out[3].succeeded and out[3].finalized
    assert isinstance(out[4], PaymentResult) and out[4].succeeded
    assert out[3].amount_minor == 0  # the template's March drafts have no usage
    assert len(fake.charges) == 2
    assert not http.closed  # an injected client belongs to the caller
