"""Shared by the payments tests: the workspaces of the template invoices, and helpers to
pick an invoice, pay it (the real SDK against tests/fake_stripe.py), read its attempts and
events, and crash between Stripe's answer and the record."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import stripe

from billing_batch import payments
from billing_batch._core.jsonutil import loads
from billing_batch.config import price_book as pricing
from billing_batch.config.settings import Settings
from billing_batch.invoicing import service as invoices
from billing_batch.payments.attempts import PaymentResult
from billing_batch.storage import state as store
from tests.fake_stripe import FakeStripeHTTPClient

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


#: Workspaces with usage in January and February 2024 (45,000 api_calls and 100
#: contracts a month: 550.00 USD on "payg", tax included); ws_empty has none (total 0).
WORKSPACES = ("ws_123", "ws_known", "ws_nopm", "ws_jpy", "ws_declined", "ws_3ds", "ws_card")


def month_bounds(month: int) -> tuple[date, date]:
    start = date(2024, month, 1)
    return start, (start + timedelta(days=32)).replace(day=1) - timedelta(days=1)


def payments_env(home: Path, lake: Path) -> dict[str, str]:
    book = home / "price_book.toml"
    book.write_text(pricing.default_price_book_text() + PRICE_BOOK_WORKSPACES)
    return {
        "BILLING_HOME": str(home),
        "BILLING_PRICE_BOOK": str(book),
        "BILLING_PATHS_LAKE": str(lake),
        "BILLING_LAKE_MEMORY_LIMIT": "512MB",
    }


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
    start, _ = month_bounds(3 if status == "draft" else month)
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


class Crash(BaseException):
    """A process dying right after Stripe answered (BaseException: nothing catches it)."""


class CrashAfterCharge(FakeStripeHTTPClient):
    """Forwards to the fake, then dies as soon as a PaymentIntent POST got its answer."""

    def request(  # type: ignore[override]
        self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        answer = super().request(method, url, headers, post_data)
        if method == "post" and url.endswith("/v1/payment_intents"):
            raise Crash
        return answer


def pdf_text(path: Path) -> str:
    out = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    )
    return out.stdout


def usage_draft(settings: Settings, workspace: str = "ws_123") -> invoices.Invoice:
    """A draft with usage: the workspace's January invoice voided, January drafted again
    (45,000 api_calls and 100 contracts: 550.00 USD on payg)."""
    jan = make_invoice(settings, workspace=workspace, month=1)
    invoices.void_invoice(settings, jan.id, reason="test: drafted again", now=DAY0)
    start, end = month_bounds(1)
    draft = invoices.create_invoice(settings, workspace, start, end, now=DAY0)
    assert draft.status == "draft" and draft.number is None
    return draft


def void_all_but(settings: Settings, keep: set[str]) -> None:
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
