"""Payments through Stripe, offline: the real SDK against tests/fake_stripe.py (in process,
and over a loopback HTTP server for transport errors and STRIPE_API_BASE)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import stripe

from billing_batch._core.errors import (
    BillingError,
    ConfigError,
    InputError,
    NoPaymentMethodError,
    PaymentActionRequiredError,
    PaymentDeclinedError,
    PaymentRefusedError,
    PaymentTransientError,
    StateError,
    StripeNotConfiguredError,
)
from billing_batch._core.jsonutil import dumps, loads
from billing_batch.config import price_book as pricing
from billing_batch.config.settings import Settings, load_settings
from billing_batch.invoicing import service as invoices
from billing_batch.payments import charging as payments
from billing_batch.payments.charging import PaymentResult, idempotency_key
from billing_batch.storage import state as store

from .fake_stripe import (
    TEST_CARDS,
    FakeStripe,
    FakeStripeHTTPClient,
    FakeStripeServer,
    unused_local_url,
)

KEY = "sk_test_51NeverLogThisSecretKeyAbCdEf0123456789"
DAY0 = datetime(2024, 2, 1, tzinfo=UTC)  # the nightly run's business clock (00:00 UTC)

PRICE_BOOK_WORKSPACES = """
[workspaces.ws_123]
plan = "payg"
legal_name = "Example Corp."
email = "ap@example.com"
default_payment_method = "pm_card_visa"

[workspaces.ws_known]
stripe_customer_id = "cus_known"
default_payment_method = "pm_card_visa"

[workspaces.ws_nopm]
legal_name = "No Card Ltd."

[workspaces.ws_jpy]
plan = "growth_jpy"
default_payment_method = "pm_card_visa"

[workspaces.ws_declined]
default_payment_method = "pm_card_chargeDeclined"

[workspaces.ws_3ds]
default_payment_method = "pm_card_authenticationRequired"

[workspaces.ws_card]
default_payment_method = "pm_customer_card"
"""


# --- fixtures -------------------------------------------------------------------------------
#: Workspaces with usage in January and February 2024 (45,000 api_calls and 100
#: contracts a month: 550.00 USD on "payg", tax included); ws_empty has none (total 0).
WORKSPACES = ("ws_123", "ws_known", "ws_nopm", "ws_jpy", "ws_declined", "ws_3ds", "ws_card")


def _month(month: int) -> tuple[date, date]:
    start = date(2024, month, 1)
    return start, (start + timedelta(days=32)).replace(day=1) - timedelta(days=1)


def _env(home: Path, lake: Path) -> dict[str, str]:
    book = home / "price_book.toml"
    book.write_text(pricing.default_price_book_text() + PRICE_BOOK_WORKSPACES)
    return {
        "BILLING_HOME": str(home),
        "BILLING_PRICE_BOOK": str(book),
        "BILLING_PATHS_LAKE": str(lake),
        "BILLING_LAKE_MEMORY_LIMIT": "512MB",
    }


@pytest.fixture(scope="session")
def invoice_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once: usage ingested and rolled up into a lake, then real invoices through
    invoices.create_invoices + finalize (open, numbered, issued DAY0, due 30 days later)
    for January and February of every workspace, and March drafts. Each test gets a
    copy of the state store (the lake is only read, by rating, here)."""
    from billing_batch.ingest import ingest
    from billing_batch.usage.rollup import refresh_rollup

    from .conftest import event, write_log

    root = tmp_path_factory.mktemp("payments-template")
    settings = load_settings(env=_env(root, root / "lake"))
    lines = [
        event(
            id=f"{ws}-{month}-{metric}",
            workspace=ws,
            metric=metric,
            quantity=quantity,
            timestamp=f"2024-{month:02d}-15T10:00:00Z",
        )
        for ws in WORKSPACES
        for month in (1, 2)
        for metric, quantity in (("api_calls", 45000), ("contracts", 100))
    ]
    ingest(settings, [write_log(root / "landing" / "usage.jsonl", lines)])
    refresh_rollup(settings)
    finalized = invoices.create_invoices(
        settings,
        [(ws, *_month(m)) for ws in (*WORKSPACES, "ws_empty") for m in (1, 2)],
        now=DAY0,
        finalize=True,
    )
    drafts = invoices.create_invoices(settings, [(ws, *_month(3)) for ws in WORKSPACES], now=DAY0)
    bad = [r for r in (*finalized, *drafts) if not isinstance(r, invoices.Invoice)]
    assert not bad, bad
    with store.opened(settings) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return root


@pytest.fixture
def psettings(home: Path, monkeypatch: pytest.MonkeyPatch, invoice_template: Path) -> Settings:
    env = _env(home, invoice_template / "lake")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("STRIPE_API_KEY", KEY)
    monkeypatch.delenv("STRIPE_API_BASE", raising=False)
    settings = load_settings(env=env)
    shutil.copyfile(invoice_template / "state.sqlite", settings.state_path)
    return settings


@pytest.fixture
def fake() -> FakeStripe:
    f = FakeStripe(api_key=KEY)
    f.add_customer("cus_known", name="Known Inc.")
    return f


@pytest.fixture
def http(fake: FakeStripe) -> FakeStripeHTTPClient:
    return FakeStripeHTTPClient(fake)


@pytest.fixture(autouse=True)
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Our rate-limit backoff sleeps are recorded, not slept."""
    slept: list[float] = []
    monkeypatch.setattr(payments, "_sleep", slept.append)
    return slept


@pytest.fixture
def no_sdk_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's own retry delays (>= 0.5 s) skipped for the real requests client."""
    monkeypatch.setattr(stripe.RequestsClient, "_sleep_time_seconds", lambda self, n: 0.0)


@pytest.fixture
def server(fake: FakeStripe, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeStripeServer]:
    with FakeStripeServer(fake) as srv:
        monkeypatch.setenv("STRIPE_API_BASE", srv.url)
        yield srv


def make_invoice(
    settings: Settings,
    *,
    workspace: str = "ws_123",
    month: int = 1,
    status: str = "open",
) -> invoices.Invoice:
    """The workspace's real invoice for ``month`` (2024) from the template: open as
    finalize left it (a March draft for ``status="draft"``), or moved on to paid, void or
    overdue through invoices.transition."""
    start, _ = _month(3 if status == "draft" else month)
    with store.opened(settings) as con, store.transaction(con):
        row = con.execute(
            "SELECT id FROM invoices WHERE workspace_id = ? AND period_start = ?",
            (workspace, start.isoformat()),
        ).fetchone()
        assert row is not None, (workspace, month)
        if status in ("paid", "void", "overdue"):
            invoices.transition(
                con,
                row["id"],
                status,
                at=DAY0,
                reason="test fixture",
                payment_intent_id="pi_paid_elsewhere" if status == "paid" else None,
            )
    inv = invoices.get_invoice(settings, row["id"])
    assert inv.status == status
    return inv


def attempts(settings: Settings, invoice_id: str) -> list[payments.PaymentAttempt]:
    return payments.list_attempts(settings, invoice_id)


def outbox(settings: Settings, type_: str, subject: str | None = None) -> list[dict[str, Any]]:
    with store.opened(settings) as con:
        rows = con.execute(
            "SELECT subject_id, payload FROM outbox WHERE type = ? ORDER BY created_at, id",
            (type_,),
        ).fetchall()
    return [loads(r["payload"]) for r in rows if subject is None or r["subject_id"] == subject]


def count(settings: Settings, table: str) -> int:
    with store.opened(settings) as con:
        return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def pay(
    settings: Settings,
    inv: invoices.Invoice,
    http: stripe.HTTPClient | None,
    *,
    now: datetime = DAY0,
    payment_method: str | None = None,
) -> PaymentResult:
    return payments.pay_invoice(
        settings, inv.id, payment_method=payment_method, now=now, http_client=http
    )


def at(day: int, hour: int = 0) -> datetime:
    return DAY0 + timedelta(days=day, hours=hour)


# --- success -------------------------------------------------------------------------------
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


def test_known_customer_and_recorded_customer_are_reused(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient
) -> None:
    # the price book's customer id wins: nothing created
    known = make_invoice(psettings, workspace="ws_known")
    assert pay(psettings, known, http).succeeded
    assert fake.charges[0].customer == "cus_known"
    assert fake.requests_to("POST", "/v1/customers") == []
    # a second invoice of a workspace reuses the recorded customer
    first = make_invoice(psettings)
    second = make_invoice(psettings, month=2)
    assert pay(psettings, first, http).succeeded
    assert pay(psettings, second, http).succeeded
    assert len(fake.requests_to("POST", "/v1/customers")) == 1
    assert fake.charges[1].customer == fake.charges[2].customer


def test_existing_stripe_customer_found_by_metadata(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient
) -> None:
    """Created earlier (say, by a run that crashed before recording it): found, not
    created twice."""
    fake.add_customer("cus_earlier", metadata={"workspace_id": "ws_123"})
    assert pay(psettings, make_invoice(psettings), http).succeeded
    assert fake.requests_to("POST", "/v1/customers") == []
    assert fake.charges[0].customer == "cus_earlier"


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


def test_stripe_amount_minor_units() -> None:
    assert payments.stripe_amount(55000, "USD") == 55000
    assert payments.stripe_amount(16500, "JPY") == 16500
    assert payments.stripe_amount(1234, "KWD") == 1234  # 1.234 KWD: three decimals
    assert payments.stripe_amount(500, "ISK") == 50000  # Stripe's two-decimal ISK


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


# --- declines and 3-D Secure ---------------------------------------------------------------
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


# --- rate limits and network errors --------------------------------------------------------
def test_rate_limit_then_success(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient, sleeps: list[float]
) -> None:
    inv = make_invoice(psettings)
    fake.inject("rate_limit", times=2, path="/v1/payment_intents")
    result = pay(psettings, inv, http)
    assert result.succeeded and result.attempt_no == 1
    assert sleeps == [1.0, 2.0]  # our bounded exponential backoff
    posts = fake.requests_to("POST", "/v1/payment_intents")
    assert [r.status for r in posts] == [429, 429, 200]
    assert {r.idempotency_key for r in posts} == {idempotency_key(inv.id, 1)}
    assert len(fake.charges) == 1


def test_rate_limit_exhausted_is_a_failed_attempt(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient, sleeps: list[float]
) -> None:
    inv = make_invoice(psettings)
    fake.inject("rate_limit", times=10, path="/v1/payment_intents")
    result = pay(psettings, inv, http)
    assert result.status == "failed" and result.error_code == "rate_limit"
    assert len(sleeps) == psettings.payments.max_network_retries
    (a,) = attempts(psettings, inv.id)
    assert a.next_retry_at == datetime(2024, 2, 2, tzinfo=UTC)
    assert outbox(psettings, "billing.invoice.payment_failed", inv.id)[0]["data"]["code"] == (
        "rate_limit"
    )
    # a 429 was never executed: the next try is simply attempt 2
    fake.clear_faults()
    again = pay(psettings, inv, http, now=at(1))
    assert again.succeeded and again.attempt_no == 2 and len(fake.charges) == 1


def test_sdk_network_retries_reuse_the_key(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient
) -> None:
    """A response lost after Stripe executed the charge: the SDK's retry (same key) gets
    the stored result back instead of charging again."""
    inv = make_invoice(psettings)
    fake.inject("drop_after", path="/v1/payment_intents")
    result = pay(psettings, inv, http)
    assert result.succeeded and len(fake.charges) == 1
    posts = fake.requests_to("POST", "/v1/payment_intents")
    assert [(r.fault, r.replayed) for r in posts] == [("drop_after", False), (None, True)]


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


def test_connection_refused(
    psettings: Settings,
    fake: FakeStripe,
    monkeypatch: pytest.MonkeyPatch,
    no_sdk_sleep: None,
) -> None:
    monkeypatch.setenv("STRIPE_API_BASE", unused_local_url())
    inv = make_invoice(psettings, workspace="ws_known")
    result = payments.pay_invoice(psettings, inv.id, now=DAY0)
    assert result.status == "failed" and result.error_code == "api_connection_error"
    assert result.message and "no answer from Stripe" in result.message
    assert result.next_retry_at == datetime(2024, 2, 2, tzinfo=UTC)
    assert invoices.get_invoice(psettings, inv.id).status == "open"


def test_server_closes_the_connection(
    psettings: Settings, fake: FakeStripe, server: FakeStripeServer, no_sdk_sleep: None
) -> None:
    inv = make_invoice(psettings)
    fake.inject("connection_error", times=3, path="/v1/payment_intents")
    result = payments.pay_invoice(psettings, inv.id, now=DAY0)
    assert result.status == "failed" and result.error_code == "api_connection_error"
    assert len(fake.requests_to("POST", "/v1/payment_intents")) == 3  # 1 + 2 SDK retries
    assert fake.charges == []


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


def test_server_error_is_transient(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient
) -> None:
    inv = make_invoice(psettings)
    fake.inject("server_error", times=3, path="/v1/payment_intents")
    result = pay(psettings, inv, http)
    assert result.status == "failed" and result.error_code == "api_error"


# --- never twice: crashes ------------------------------------------------------------------
class _Crash(BaseException):
    """A process dying right after Stripe answered (BaseException: nothing catches it)."""


class CrashAfterCharge(FakeStripeHTTPClient):
    """Forwards to the fake, then dies as soon as a PaymentIntent POST got its answer."""

    def request(  # type: ignore[override]
        self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        answer = super().request(method, url, headers, post_data)
        if method == "post" and url.endswith("/v1/payment_intents"):
            raise _Crash
        return answer


@pytest.mark.parametrize("how", ["search", "replay", "expired_key"])
def test_crash_between_charge_and_record_never_charges_twice(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient, how: str
) -> None:
    inv = make_invoice(psettings)
    with pytest.raises(_Crash):
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
    with pytest.raises(_Crash):
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
    with pytest.raises(_Crash):
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
    with pytest.raises(_Crash):
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
    with pytest.raises(_Crash):
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
        from billing_batch.payments import charging as payments
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


# --- refusals and configuration ------------------------------------------------------------
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


def test_without_a_key_nothing_is_charged_or_recorded(
    psettings: Settings, monkeypatch: pytest.MonkeyPatch, http: FakeStripeHTTPClient
) -> None:
    monkeypatch.delenv("STRIPE_API_KEY")
    assert not payments.stripe_configured(psettings)
    inv = make_invoice(psettings, workspace="ws_nopm")
    with pytest.raises(StripeNotConfiguredError, match="STRIPE_API_KEY") as info:
        payments.pay_invoice(psettings, inv.id, http_client=http)
    assert "not configured" in str(info.value)
    assert count(psettings, "payment_attempts") == 0
    assert count(psettings, "customers") == 0
    assert invoices.get_invoice(psettings, inv.id).status == "open"
    with pytest.raises(StripeNotConfiguredError):
        payments.stripe_client(psettings)
    # the batch: one error per invoice, nothing stops; dunning: nothing due, no key needed
    other = make_invoice(psettings, month=2)
    out = payments.pay_invoices(psettings, [inv.id, other.id], http_client=http)
    assert [type(x) for x in out] == [StripeNotConfiguredError] * 2
    assert payments.retry_due_payments(psettings, now=at(1)) == []


def test_cli_pay_without_key_exits_non_zero(
    psettings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from billing_batch.cli import main

    monkeypatch.delenv("STRIPE_API_KEY")
    inv = make_invoice(psettings)
    assert main(["invoice", "pay", inv.id]) != 0
    assert "Stripe is not configured" in capsys.readouterr().err
    assert count(psettings, "payment_attempts") == 0


def test_stripe_client_configuration(
    psettings: Settings, monkeypatch: pytest.MonkeyPatch, fake: FakeStripe
) -> None:
    client = payments.stripe_client(psettings, http_client=FakeStripeHTTPClient(fake))
    assert isinstance(client, stripe.StripeClient)
    monkeypatch.setenv("STRIPE_API_BASE", "ftp://example.com")
    with pytest.raises(ConfigError, match="STRIPE_API_BASE"):
        payments.stripe_client(psettings)
    monkeypatch.setenv("BILLING_PAYMENTS_MAX_NETWORK_RETRIES", "-1")
    monkeypatch.delenv("STRIPE_API_BASE")
    with pytest.raises(ConfigError, match="max_network_retries"):
        payments.stripe_client(load_settings())
    http_client = payments.default_http_client(psettings)
    assert isinstance(http_client, stripe.RequestsClient)
    assert http_client._timeout == (10.0, 30.0)


def test_stripe_api_base_points_at_a_stripe_compatible_server(
    psettings: Settings,
    fake: FakeStripe,
    server: FakeStripeServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """End to end through the CLI and a real HTTP hop (the way stripe-mock is used)."""
    from billing_batch.cli import main

    inv = make_invoice(psettings)
    assert main(["invoice", "pay", inv.id, "--payment-method", "pm_card_visa"]) == 0
    out = loads(capsys.readouterr().out)
    assert out["status"] == "succeeded" and out["invoice"]["status"] == "paid"
    assert len(fake.charges) == 1
    declined = make_invoice(psettings, workspace="ws_declined")
    assert main(["invoice", "pay", str(declined.number)]) == 1
    assert loads(capsys.readouterr().out)["declineCode"] == "generic_decline"


def test_rejected_key_stops_the_batch_and_is_never_quoted(
    psettings: Settings,
    fake: FakeStripe,
    http: FakeStripeHTTPClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake.api_key = "sk_test_theRightOne"
    caplog.set_level(logging.DEBUG)
    a = make_invoice(psettings, workspace="ws_known")
    b = make_invoice(psettings, workspace="ws_known", month=2)
    out = payments.pay_invoices(psettings, [a.id, b.id], now=DAY0, http_client=http)
    assert all(isinstance(x, StripeNotConfiguredError) for x in out)
    assert len(fake.requests) == 1  # the second invoice did not hit Stripe again
    assert "rejected the API key" in str(out[0])
    (attempt,) = attempts(psettings, a.id)
    assert attempt.status == "failed" and attempt.error_code == "authentication_error"
    assert outbox(psettings, "billing.invoice.payment_failed") == []  # our fault, not theirs
    texts = [str(out[0]), caplog.text, str(attempt.message)]
    assert not any(KEY in t or KEY[-4:] in t for t in texts)


def test_api_key_never_in_logs_errors_or_records(
    psettings: Settings,
    fake: FakeStripe,
    http: FakeStripeHTTPClient,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)  # the SDK's own request logging included
    ok = pay(psettings, make_invoice(psettings), http)
    declined = pay(psettings, make_invoice(psettings, workspace="ws_declined"), http)
    fake.inject("connection_error", times=3)
    failed = pay(psettings, make_invoice(psettings, workspace="ws_known"), http)
    monkeypatch.setenv("STRIPE_API_BASE", "not a url " + KEY)
    with pytest.raises(ConfigError) as bad_base:
        payments.stripe_client(psettings)
    assert ok.succeeded and declined.status == "declined" and failed.status == "failed"
    with store.opened(psettings) as con:
        stored = dumps([dict(r) for r in con.execute("SELECT * FROM payment_attempts")])
        stored += dumps([dict(r) for r in con.execute("SELECT * FROM outbox")])
    for text in (caplog.text, stored, dumps([ok.to_json(), failed.to_json()])):
        assert KEY not in text
    assert "_secret_fake" not in caplog.text  # PaymentIntent client secrets: debug bodies
    assert "Request to Stripe api" in caplog.text  # the SDK did log, without the key
    # a key pasted into STRIPE_API_BASE by mistake is not echoed back either
    assert "STRIPE_API_BASE" in str(bad_base.value) and KEY not in str(bad_base.value)


def test_scrub_removes_keys() -> None:
    masked = "Invalid API Key provided: sk_test_****************************6789"
    assert "6789" not in payments._scrub(masked)
    assert payments._scrub(f"x {KEY} y", KEY) == "x [redacted] y"
    assert payments._scrub('"client_secret": "pi_fake01_secret_fake"') == (
        '"client_secret": "[redacted]"'
    )


def test_error_mapping_is_one_boundary() -> None:
    def card(code: str, decline: str | None) -> stripe.CardError:
        body = {"error": {"type": "card_error", "code": code, "decline_code": decline}}
        return stripe.CardError("declined", None, code, json_body=body, http_status=402)

    declined = payments.map_stripe_error(card("card_declined", "insufficient_funds"))
    assert isinstance(declined, PaymentDeclinedError)
    assert declined.decline_code == "insufficient_funds"
    assert declined.stripe_code == "card_declined"
    assert isinstance(
        payments.map_stripe_error(card("authentication_required", "authentication_required")),
        PaymentActionRequiredError,
    )
    assert isinstance(
        payments.map_stripe_error(stripe.RateLimitError("slow down", http_status=429)),
        PaymentTransientError,
    )
    assert isinstance(
        payments.map_stripe_error(stripe.APIConnectionError("down")), PaymentTransientError
    )
    assert isinstance(
        payments.map_stripe_error(stripe.AuthenticationError(f"bad key {KEY}")),
        StripeNotConfiguredError,
    )
    invalid = payments.map_stripe_error(
        stripe.InvalidRequestError("No such PaymentMethod", "payment_method", "resource_missing")
    )
    # a refused request (the caller's mistake) is not "Stripe is unavailable"
    assert isinstance(invalid, PaymentRefusedError) and "resource_missing" in str(invalid)
    assert (invalid.stripe_code, invalid.param) == ("resource_missing", "payment_method")
    assert not isinstance(invalid, PaymentTransientError)
    assert KEY not in str(payments.map_stripe_error(stripe.APIError(f"boom {KEY}")))


def test_invalid_payment_method_is_a_failed_attempt(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient
) -> None:
    inv = make_invoice(psettings)
    result = pay(psettings, inv, http, payment_method="pm_does_not_exist")
    assert result.status == "failed" and result.error_code == "resource_missing"
    assert result.message and "pm_does_not_exist" in result.message
    assert fake.charges == []


# --- overdue and dunning -------------------------------------------------------------------
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


# --- issue 15: the seed's flows as an integrator runs them ----------------------------------
def _pdf_text(path: Path) -> str:
    out = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    )
    return out.stdout


def usage_draft(settings: Settings, workspace: str = "ws_123") -> invoices.Invoice:
    """A draft with usage: the workspace's January invoice voided, January drafted again
    (45,000 api_calls and 100 contracts: 550.00 USD on payg)."""
    jan = make_invoice(settings, workspace=workspace, month=1)
    invoices.void_invoice(settings, jan.id, reason="test: drafted again", now=DAY0)
    start, end = _month(1)
    draft = invoices.create_invoice(settings, workspace, start, end, now=DAY0)
    assert draft.status == "draft" and draft.number is None
    return draft


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
    assert inv.pdf_path is not None and "Open" in _pdf_text(Path(inv.pdf_path))
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


def _void_all_but(settings: Settings, keep: set[str]) -> None:
    with store.opened(settings) as con, store.transaction(con):
        ids = [
            r[0]
            for r in con.execute(
                "SELECT id FROM invoices WHERE status = 'open' AND workspace_id NOT IN "
                f"({', '.join('?' for _ in keep)})",
                sorted(keep),
            )
        ]
        for i in ids:
            invoices.transition(con, i, "void", at=DAY0, reason="test: not in this scenario")


def test_nightly_charge_without_payment_method_is_not_a_failure(
    psettings: Settings, fake: FakeStripe, server: FakeStripeServer
) -> None:
    """Workspaces without default_payment_method are listed ("not charged: no payment
    method", count and invoice numbers) and are not failures; a real decline still is."""
    from billing_batch.nightly.steps import RunSummary, charge

    _void_all_but(psettings, {"ws_123", "ws_nopm"})
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
    _void_all_but(settings, {"ws_declined"})  # its January and February invoices
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
