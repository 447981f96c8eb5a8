"""The Stripe boundary: the client and its configuration, amounts, the one error mapping,
secrets never leaking, rate limits and transport errors (the real SDK against
tests/fake_stripe.py, in process and over a loopback HTTP server)."""

from __future__ import annotations

import ast
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
import stripe

import billing_batch
from billing_batch import payments
from billing_batch._core.errors import (
    ConfigError,
    PaymentActionRequiredError,
    PaymentDeclinedError,
    PaymentRefusedError,
    PaymentTransientError,
    StripeNotConfiguredError,
)
from billing_batch._core.jsonutil import dumps, loads
from billing_batch.config.settings import Settings, load_settings
from billing_batch.invoicing import service as invoices
from billing_batch.payments import redaction
from billing_batch.payments.keys import idempotency_key
from billing_batch.storage import state as store
from tests.fake_stripe import FakeStripe, FakeStripeHTTPClient, FakeStripeServer, unused_local_url
from tests.payments.support import DAY0, KEY, at, attempts, count, make_invoice, outbox, pay


def test_stripe_amount_minor_units() -> None:
    assert payments.stripe_amount(55000, "USD") == 55000
    assert payments.stripe_amount(16500, "JPY") == 16500
    assert payments.stripe_amount(1234, "KWD") == 1234  # 1.234 KWD: three decimals
    assert payments.stripe_amount(500, "ISK") == 50000  # Stripe's two-decimal ISK


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
    assert "6789" not in redaction.redact(masked)
    assert redaction.redact(f"x {KEY} y", KEY) == "x [redacted] y"
    assert redaction.redact('"client_secret": "pi_fake01_secret_fake"') == (
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


def test_server_error_is_transient(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient
) -> None:
    inv = make_invoice(psettings)
    fake.inject("server_error", times=3, path="/v1/payment_intents")
    result = pay(psettings, inv, http)
    assert result.status == "failed" and result.error_code == "api_error"


def test_stripe_is_imported_only_by_the_gateway() -> None:
    """The one Stripe boundary: no other module of the library imports the SDK."""
    src = Path(billing_batch.__file__).parent
    importers = set()
    for path in src.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            if any(n == "stripe" or n.startswith("stripe.") for n in names):
                importers.add(path.relative_to(src).as_posix())
    assert importers == {"payments/stripe_gateway.py"}
