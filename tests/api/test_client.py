"""BillingClient against the real app over a loopback server: the seed's SDK calls,
Decimals both ways, and errors mapped back into the library's classes."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from billing_batch._core.errors import (
    InputError,
    NotFoundError,
    PaymentDeclinedError,
    StateError,
    StripeNotConfiguredError,
    SubscriptionError,
    UsageQueryError,
)
from billing_batch.api import create_app
from billing_batch.client import (
    ApiConnectionError,
    ApiError,
    AuthenticationError,
    BillingClient,
    InvalidRequestError,
    PermissionDeniedError,
    error_from_response,
)
from billing_batch.config.settings import Settings
from billing_batch.usage.ingest import ingest
from billing_batch.usage.recording import InvalidUsageError
from billing_batch.usage.rollup import refresh_rollup
from tests.api.test_api import ADMIN, KEY_A, KEY_B, live_server, seed_usage, with_keys


@pytest.fixture
def server(settings: Settings) -> Iterator[tuple[str, Settings]]:
    s = with_keys(settings)
    with live_server(create_app(s, mirror=False)) as url:
        yield url, s


@pytest.fixture
def billing(server: tuple[str, Settings]) -> Iterator[BillingClient]:
    with BillingClient(server[0], KEY_A) as c:
        yield c


@pytest.fixture
def admin(server: tuple[str, Settings]) -> Iterator[BillingClient]:
    with BillingClient(server[0], ADMIN) as c:
        yield c


def test_seed_sdk_calls_end_to_end(
    server: tuple[str, Settings], billing: BillingClient, admin: BillingClient, tmp_path: Path
) -> None:
    _, settings = server
    rec = billing.record_usage(
        "ws_a", "api_calls", 45000, datetime(2024, 1, 15, 10, tzinfo=UTC), idempotency_key="k1"
    )
    assert rec["accepted"] == 1 and rec["ids"][0].startswith("usg_")
    again = billing.record_usage("ws_a", "api_calls", 45000, "2024-01-15T10:00:00Z", None, "k1")
    assert again["ids"] == rec["ids"]  # a retry with the same key: the same event
    batch = billing.record_usage_batch(
        [
            {"id": "c1", "workspaceId": "ws_a", "metric": "contracts", "quantity": 100,
             "timestamp": "2024-01-20T00:00:00+01:00"},
            {"id": "s1", "workspaceId": "ws_a", "metric": "storage",
             "quantity": Decimal("12.345678901"), "timestamp": "2024-01-20T00:00:00Z"},
        ]
    )  # fmt: skip
    assert batch == {"accepted": 2, "ids": ["c1", "s1"]}
    billing.record_usage("ws_a", "storage", 0.1, datetime(2024, 1, 21, tzinfo=UTC), id="s2")
    report = ingest(settings).to_dict()
    assert (report["accepted"], report["duplicates"]) == (4, 1)
    refresh_rollup(settings)

    usage = billing.get_usage("ws_a", "api_calls", date(2024, 1, 1), "2024-01-31")
    assert usage == {
        "metric": "api_calls",
        "total": 45000,
        "breakdown": [{"date": "2024-01-15", "quantity": 45000}],
    }
    storage = billing.get_usage("ws_a", "storage", "2024-01-01", "2024-01-31")
    days = {d["date"]: d["quantity"] for d in storage["breakdown"]}
    assert days == {"2024-01-20": Decimal("12.345678901"), "2024-01-21": Decimal("0.1")}
    assert isinstance(storage["total"], Decimal)
    every = billing.get_usage("ws_a", None, "2024-01-01", "2024-01-31")
    assert [m["metric"] for m in every["metrics"]] == [
        "api_calls",
        "contracts",
        "kyc_checks",
        "storage",
    ]

    inv = billing.create_invoice("ws_a", "2024-01-01", date(2024, 1, 31))
    lines = {x["description"]: x["amount"] for x in inv["lineItems"]}
    assert lines["API Calls (45,000)"] == 450 and lines["Contracts (100)"] == 50
    assert billing.get_invoice(inv["id"])["total"] == inv["total"]
    assert [i["id"] for i in billing.list_invoices()] == [inv["id"]]
    assert admin.list_invoices(status="draft")[0]["id"] == inv["id"]
    pdf = billing.download_invoice_pdf(inv["id"], path=tmp_path / "out" / "draft.pdf")
    assert pdf.startswith(b"%PDF-") and (tmp_path / "out" / "draft.pdf").read_bytes() == pdf

    with pytest.raises(PermissionDeniedError) as denied:
        billing.finalize_invoice(inv["id"])
    assert denied.value.code == "admin_required" and denied.value.status == 403
    final = admin.finalize_invoice(inv["id"])
    assert final["status"] == "open" and final["number"]
    with pytest.raises(StateError):
        admin.finalize_invoice(inv["id"])
    with pytest.raises(StripeNotConfiguredError):
        billing.pay_invoice(inv["id"], payment_method="pm_card_visa")
    assert admin.void_invoice(final["number"], reason="test")["status"] == "void"


def test_errors_come_back_as_library_classes(
    server: tuple[str, Settings], billing: BillingClient, admin: BillingClient, tmp_path: Path
) -> None:
    url, settings = server
    with pytest.raises(InvalidUsageError) as bad:
        billing.record_usage_batch(
            [
                {"workspaceId": "ws_a", "metric": "api_calls", "quantity": 1,
                 "timestamp": "2024-01-15T10:00:00Z"},
                {"workspaceId": "ws_a", "metric": "bandwidth", "quantity": 1,
                 "timestamp": "2024-01-15T10:00:00Z"},
            ]
        )  # fmt: skip
    assert [(e.index, e.reason) for e in bad.value.errors] == [(1, 'unknown metric "bandwidth"')]
    with pytest.raises(InputError, match="timezone-aware"):
        billing.record_usage("ws_a", "api_calls", 1, datetime(2024, 1, 15))
    with pytest.raises(InputError, match="must be a number"):
        billing.record_usage("ws_a", "api_calls", True, "2024-01-15T10:00:00Z")
    with pytest.raises(PermissionDeniedError) as forbidden:
        billing.record_usage("ws_b", "api_calls", 1, "2024-01-15T10:00:00Z")
    assert forbidden.value.code == "forbidden"
    with pytest.raises(UsageQueryError):
        billing.get_usage("ws_a", "api_calls", "2024-02-01", "2024-01-01")
    with pytest.raises(InvalidRequestError) as invalid:
        billing.get_usage("ws_a", "api_calls", "2024-02-30", "2024-03-01")
    assert invalid.value.status == 422 and isinstance(invalid.value, InputError)
    with pytest.raises(NotFoundError, match="no invoice 'inv_nope'"):
        billing.get_invoice("inv_nope")
    with pytest.raises(NotFoundError):
        billing.get_invoice("../../openapi.json")  # one path segment, whatever it holds
    with pytest.raises(NotFoundError):
        billing.get_usage("ws_b", "api_calls", "2024-01-01", "2024-01-31")
    with pytest.raises(NotFoundError):
        billing.get_subscription("ws_a")
    sub = admin.create_subscription("ws_a", "growth", "2024-01-01", anchor_day=1)
    assert sub["current"]["plan"] == "growth"
    assert billing.get_subscription("ws_a", on="2024-01-02")["current"]["status"] == "active"
    assert admin.change_subscription("ws_a", "payg", "2024-02-01")["current"]["plans"][-1] == {
        "plan": "payg",
        "effective": "2024-02-01",
    }
    with pytest.raises(SubscriptionError):
        admin.cancel_subscription("ws_a", "2023-01-01")
    assert admin.cancel_subscription("ws_a", "2024-03-01")["current"]["canceledFrom"] == (
        "2024-03-01"
    )
    with BillingClient(url, "bbk_wrong") as wrong:
        with pytest.raises(AuthenticationError) as auth:
            wrong.list_invoices()
    assert auth.value.status == 401 and auth.value.code == "unauthorized"
    with BillingClient(url, KEY_B) as other:
        seed_usage(settings, tmp_path)
        inv = billing.create_invoice("ws_a", "2024-01-01", "2024-01-31")
        with pytest.raises(NotFoundError):
            other.download_invoice_pdf(inv["id"])


def test_declines_map_to_payment_declined(
    server: tuple[str, Settings],
    billing: BillingClient,
    admin: BillingClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.fake_stripe import FakeStripe, FakeStripeServer

    _, settings = server
    seed_usage(settings, tmp_path)
    inv = admin.finalize_invoice(billing.create_invoice("ws_a", "2024-01-01", "2024-01-31")["id"])
    fake = FakeStripe(api_key="sk_test_fake")
    with FakeStripeServer(fake) as stripe_server:
        monkeypatch.setenv("STRIPE_API_KEY", "sk_test_fake")
        monkeypatch.setenv("STRIPE_API_BASE", stripe_server.url)
        with pytest.raises(PaymentDeclinedError) as declined:
            billing.pay_invoice(inv["id"], payment_method="pm_card_chargeDeclinedInsufficientFunds")
        assert declined.value.decline_code == "insufficient_funds"
        paid = billing.pay_invoice(inv["id"], payment_method="pm_card_visa")
    assert paid["succeeded"] is True and paid["amount"] == Decimal("550")
    assert len(fake.charges) == 1


def test_transport_failures_and_odd_answers() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with BillingClient(f"http://127.0.0.1:{port}", KEY_A, timeout=2) as c:
        with pytest.raises(ApiConnectionError):
            c.get_invoice("inv_x")

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/html"):
            return httpx.Response(502, text="<html>bad gateway</html>")
        return httpx.Response(409, json={"error": {"code": "something_new", "message": "m"}})

    with BillingClient("http://api.test", KEY_A, transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(StateError, match="^m$"):
            c.get_invoice("inv_x")
        with pytest.raises(ApiError) as odd:
            c.get_invoice("html")
    assert odd.value.status == 502 and odd.value.code == "http_502"
    r = httpx.Response(418, json={"error": {"code": "teapot", "message": "short and stout"}})
    err = error_from_response(r)
    assert isinstance(err, ApiError) and err.code == "teapot" and err.status == 418


def test_the_seeds_flow_through_the_sdk(
    server: tuple[str, Settings],
    billing: BillingClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """createInvoice (draft) then payInvoice with the workspace's own key: the draft is
    finalized and paid; the seed's pm_card_123 comes back as PaymentRefusedError with
    Stripe's code; the PDF's current and original copies differ after payment."""
    import subprocess

    from billing_batch._core.errors import PaymentRefusedError
    from tests.fake_stripe import FakeStripe, FakeStripeServer

    _, settings = server
    seed_usage(settings, tmp_path)
    draft = billing.create_invoice("ws_a", "2024-01-01", "2024-01-31")
    assert draft["status"] == "draft"
    fake = FakeStripe(api_key="sk_test_fake")
    with FakeStripeServer(fake) as stripe_server:
        monkeypatch.setenv("STRIPE_API_KEY", "sk_test_fake")
        monkeypatch.setenv("STRIPE_API_BASE", stripe_server.url)
        with pytest.raises(PaymentRefusedError) as refused:
            billing.pay_invoice(draft["id"], payment_method="pm_card_123")
        assert refused.value.stripe_code == "resource_missing"
        assert refused.value.param == "paymentMethod"
        paid = billing.pay_invoice(draft["id"], payment_method="pm_card_visa")
    assert paid["succeeded"] is True and paid["invoice"]["status"] == "paid"
    assert len(fake.charges) == 1

    def text(data: bytes) -> str:
        path = tmp_path / "x.pdf"
        path.write_bytes(data)
        out = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True)
        return " ".join(out.stdout.split())

    assert "paid on" in text(billing.download_invoice_pdf(draft["id"]))
    assert "awaiting payment" in text(billing.download_invoice_pdf(draft["id"], copy="original"))
