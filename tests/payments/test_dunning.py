"""Dunning: retries on the schedule, resolution of unknown attempts, the nightly charge
step, and the rerun rule (a rerun of the same business time makes no new attempt)."""

from __future__ import annotations

from datetime import date

import pytest

from billing_batch import payments
from billing_batch._core.errors import BillingError
from billing_batch.config.settings import Settings, load_settings
from billing_batch.invoicing import service as invoices
from billing_batch.payments.attempts import PaymentResult
from billing_batch.payments.keys import idempotency_key
from billing_batch.storage import state as store
from tests.fake_stripe import TEST_CARDS, FakeStripe, FakeStripeHTTPClient, FakeStripeServer
from tests.payments.support import (
    DAY0,
    at,
    attempts,
    count,
    make_invoice,
    outbox,
    pay,
    void_all_but,
)


def test_dunning_schedule(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient
) -> None:
    """Day 0 declined; retried on days 1, 3 and 7 (attempts 2-4), then never again."""
    inv = make_invoice(psettings, workspace="ws_declined")
    (first,) = payments.pay_invoices(psettings, [inv.id], now=at(0, 2), http_client=http)
    assert isinstance(first, PaymentResult) and first.status == "declined"
    assert first.next_retry_at == at(1)

    def retry(day: int, hour: int = 0) -> list[PaymentResult | BillingError]:
        return payments.retry_due_payments(psettings, now=at(day, hour), http_client=http)

    assert retry(0, 23) == []
    for day, n, next_retry in ((1, 2, at(3)), (3, 3, at(7)), (7, 4, None)):
        assert retry(day - 1, 12) == []  # not due yet the day before
        (r,) = retry(day, 4)
        assert isinstance(r, PaymentResult)
        assert (r.attempt_no, r.status, r.next_retry_at) == (n, "declined", next_retry)
    for day in (8, 14, 60):
        assert retry(day) == []

    rows = attempts(psettings, inv.id)
    assert [a.attempt_no for a in rows] == [1, 2, 3, 4]
    assert [a.idempotency_key for a in rows] == [idempotency_key(inv.id, n) for n in (1, 2, 3, 4)]
    assert [a.created_at for a in rows] == [at(0, 2), at(1, 4), at(3, 4), at(7, 4)]
    assert all(a.status == "declined" for a in rows)
    assert len(outbox(psettings, "billing.invoice.payment_failed", inv.id)) == 4
    assert len(fake.payment_intents) == 4 and fake.charges == []
    # the customer fixes it by hand, beyond the schedule
    manual = pay(psettings, inv, http, now=at(9), payment_method="pm_card_visa")
    assert manual.succeeded and manual.attempt_no == 5
    assert retry(10) == []


def test_dunning_retry_succeeds_with_the_updated_card(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient
) -> None:
    fake.add_payment_method("pm_customer_card", behaves_like="pm_card_chargeDeclinedExpiredCard")
    inv = make_invoice(psettings, workspace="ws_card")
    assert pay(psettings, inv, http).decline_code == "expired_card"
    fake.payment_methods["pm_customer_card"] = TEST_CARDS["pm_card_visa"]  # card renewed
    (r,) = payments.retry_due_payments(psettings, now=at(1), http_client=http)
    assert isinstance(r, PaymentResult) and r.succeeded and r.attempt_no == 2
    assert invoices.get_invoice(psettings, inv.id).status == "paid"
    assert payments.retry_due_payments(psettings, now=at(3), http_client=http) == []


def test_dunning_schedule_is_configurable(
    psettings: Settings,
    fake: FakeStripe,
    http: FakeStripeHTTPClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BILLING_PAYMENTS_DUNNING_SCHEDULE_DAYS", "2,5")
    settings = load_settings()
    inv = make_invoice(settings, workspace="ws_declined")
    assert pay(settings, inv, http).next_retry_at == at(2)
    assert payments.retry_due_payments(settings, now=at(1), http_client=http) == []
    (r,) = payments.retry_due_payments(settings, now=at(2), http_client=http)
    assert isinstance(r, PaymentResult) and r.next_retry_at == at(5)
    (r,) = payments.retry_due_payments(settings, now=at(5), http_client=http)
    assert isinstance(r, PaymentResult) and r.attempt_no == 3 and r.next_retry_at is None


def test_nightly_charge_without_payment_method_is_not_a_failure(
    psettings: Settings, fake: FakeStripe, server: FakeStripeServer
) -> None:
    """Workspaces without default_payment_method are listed ("not charged: no payment
    method", count and invoice numbers) and are not failures; a real decline still is."""
    from billing_batch.nightly.steps import RunSummary, charge

    void_all_but(psettings, {"ws_123", "ws_nopm"})
    nopm = [
        i for i in invoices.list_invoices(psettings, workspace_id="ws_nopm") if i.status == "open"
    ]
    numbers = sorted(i.number for i in nopm if i.number)
    assert len(numbers) == 2
    step = charge(psettings, date(2024, 2, 1))
    assert step.failures == []
    assert step.counts["succeeded"] == 2 and step.counts["failed"] == 0
    assert step.counts["not_charged_no_payment_method"] == 2
    assert sorted(step.counts["not_charged_no_payment_method_invoices"]) == numbers
    (note,) = [n for n in step.notes if n.startswith("not charged: no payment method")]
    assert all(n in note for n in numbers)
    summary = RunSummary("run_x", date(2024, 2, 1), DAY0, steps=[step])
    assert summary.status == "succeeded"  # the run exits 0
    assert len(fake.charges) == 2
    assert all(invoices.get_invoice(psettings, i.id).status == "open" for i in nopm)

    # a real failure keeps the run failed
    with store.opened(psettings) as con, store.transaction(con):
        (declined,) = con.execute(
            "UPDATE invoices SET status = 'open', voided_at = NULL "
            "WHERE workspace_id = 'ws_declined' AND period_start = '2024-01-01' RETURNING id"
        ).fetchone()
    step = charge(psettings, date(2024, 2, 2))
    assert [f["invoice"] for f in step.failures] == [declined]
    assert RunSummary("run_y", date(2024, 2, 2), DAY0, steps=[step]).status == "failed"


@pytest.mark.parametrize("schedule", ["1,3,7", "0", "0,0,0", "30"])
def test_rerun_is_noop_for_dunning(
    psettings: Settings,
    fake: FakeStripe,
    server: FakeStripeServer,
    monkeypatch: pytest.MonkeyPatch,
    schedule: str,
) -> None:
    """Issue 13, defect 7: rerunning the nightly charge step for the same run date (same
    business time) makes no new attempt and records no new event, whatever the dunning
    schedule; a later run does retry once a retry is due, once."""
    from billing_batch.nightly.steps import charge

    monkeypatch.setenv("BILLING_PAYMENTS_DUNNING_SCHEDULE_DAYS", schedule)
    settings = load_settings()
    void_all_but(settings, {"ws_declined"})  # its January and February invoices
    inv = make_invoice(settings, workspace="ws_declined", month=1)

    def state() -> tuple[list[tuple[int, str]], int, int, int]:
        return (
            [(a.attempt_no, a.status) for a in attempts(settings, inv.id)],
            count(settings, "payment_attempts"),
            count(settings, "outbox"),
            len(fake.requests_to("POST", "/v1/payment_intents")),
        )

    charge(settings, date(2024, 2, 1))  # first try: declined
    first = state()
    assert first[0] == [(1, "declined")] and first[1] == 2
    charge(settings, date(2024, 2, 1))  # rerun of the same date
    assert state() == first
    # a catch-up run weeks later: one retry per invoice (due whatever the schedule) ...
    charge(settings, date(2024, 3, 5))
    after = state()
    assert after[0] == [(1, "declined"), (2, "declined")]
    assert after[1:] == (4, first[2] + 2, first[3] + 2)  # 2 attempts, 2 payment_failed
    # ... and rerunning that date, again and again, changes nothing
    for _ in range(2):
        charge(settings, date(2024, 3, 5))
        assert state() == after
    assert fake.charges == []
