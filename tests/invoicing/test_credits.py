"""Prepaid credits on real invoices: drawn down at finalization after discount and tax,
the "Credits applied" line (golden JSON, the PDF read back), the amount due, the balance
ledger (and its lake mirror), the nightly's expiry (idempotent), the CLI."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from billing_batch._core.errors import InputError
from billing_batch._core.jsonutil import dumps, loads
from billing_batch.config.settings import Settings
from billing_batch.invoicing.credits import (
    balances,
    expire_credits,
    grant_credit,
    list_grants,
)
from billing_batch.invoicing.service import create_invoice, finalize_invoice
from billing_batch.storage import mirror
from billing_batch.storage.lake import Lake
from tests.invoicing.helpers import NOW, load, seed_usage
from tests.invoicing.pricing_support import book_settings, golden
from tests.invoicing.test_service import GOLDEN, normalized

D = Decimal
JAN = (date(2024, 1, 1), date(2024, 1, 31))


def test_credits_pay_the_total_after_discount_and_tax(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = book_settings(home, monkeypatch)
    load(settings, tmp_path, seed_usage())
    big = grant_credit(
        settings, "ws_123", D("400.00"), "usd", effective_on=date(2024, 1, 1), priority=1, now=NOW
    )
    small = grant_credit(
        settings,
        "ws_123",
        D("100.00"),
        "USD",
        effective_on=date(2024, 1, 1),
        expires_on=date(2024, 1, 31),
        now=NOW,
    )
    grant_credit(settings, "ws_123", D("5000"), "JPY", effective_on=date(2024, 1, 1), now=NOW)
    draft = create_invoice(settings, "ws_123", *JAN, now=NOW)
    assert "creditsApplied" not in draft.to_json()  # drawn at finalization only
    inv = finalize_invoice(settings, draft.id, now=NOW)
    # 500.00 - 10% = 450.00, + 10% tax = 495.00; the expiring grant first, then 395.00
    assert (inv.subtotal, inv.tax, inv.total) == (D("450.00"), D("45.00"), D("495.00"))
    assert inv.to_json()["creditsApplied"] == [
        {"grantId": small.id, "amount": D("100.00")},
        {"grantId": big.id, "amount": D("395.00")},
    ]
    assert inv.due == 0 and inv.due_minor == 0
    golden(
        GOLDEN / "invoice_discount_credits.json", dumps(normalized_credits(inv), indent=2) + "\n"
    )
    assert inv.pdf_path is not None
    text = subprocess.run(
        ["pdftotext", "-layout", str(settings.home / inv.pdf_path), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Discount: Launch discount (10% off subtotal)" in text
    assert "Credits applied" in text and "-495.00 USD" in text
    assert "Amount due" in text and "0.00 USD" in text
    left = {g.id: g.balance for g in list_grants(settings, "ws_123")}
    assert (left[small.id], left[big.id]) == (D("0.00"), D("5.00"))
    assert balances(settings, "ws_123", date(2024, 2, 1)) == {"JPY": D(5000), "USD": D("5.00")}
    # finalizing again changes nothing (refused), the ledger has one drawdown per grant
    with pytest.raises(Exception, match="only a draft"):
        finalize_invoice(settings, draft.id, now=NOW)
    mirror.mirror_to_lake(settings)
    con = Lake(settings).connect(read_only=True)
    try:
        rows = con.execute(
            "SELECT kind, CAST(SUM(amount) AS VARCHAR), COUNT(*) FROM credit_ledger "
            "WHERE currency = 'USD' GROUP BY kind ORDER BY kind"
        ).fetchall()
    finally:
        con.close()
    assert rows == [("drawdown", "-495.000000000", 2), ("grant", "500.000000000", 2)]


def normalized_credits(inv: object) -> dict[str, object]:
    doc = normalized(inv.to_json())  # type: ignore[attr-defined]
    for c in doc["creditsApplied"]:
        c["grantId"] = "cg_<id>"
    return doc


def test_expiry_takes_what_is_left_once(settings: object, tmp_path: Path) -> None:
    g = grant_credit(
        settings,  # type: ignore[arg-type]
        "ws_a",
        D("1.250"),
        "KWD",
        effective_on=date(2024, 1, 1),
        expires_on=date(2024, 1, 31),
        now=NOW,
    )
    assert expire_credits(settings, date(2024, 1, 31), now=NOW) == []  # type: ignore[arg-type]
    gone = expire_credits(settings, date(2024, 2, 1), now=NOW)  # type: ignore[arg-type]
    assert [x.id for x in gone] == [g.id]
    assert expire_credits(settings, date(2024, 3, 1), now=NOW) == []  # type: ignore[arg-type]
    (after,) = list_grants(settings)  # type: ignore[arg-type]
    assert after.balance == 0
    assert balances(settings, "ws_a", date(2024, 1, 15)) == {"KWD": D("1.250")}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [
        ("10.001", "USD", "not a whole number of USD minor units"),
        ("0.5", "JPY", "not a whole number of JPY minor units"),
        ("0", "USD", "must be positive"),
        ("1", "US", "not an ISO 4217 currency code"),
    ],
)
def test_grants_are_checked(settings: object, amount: str, currency: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        grant_credit(settings, "ws_a", D(amount), currency, effective_on=date(2024, 1, 1))  # type: ignore[arg-type]


def test_cli_grant_list_balance(home: Path, settings: object) -> None:
    def cli(*args: str) -> object:
        out = subprocess.run(
            [sys.executable, "-m", "billing_batch", "credit", *args],
            capture_output=True,
            text=True,
            env={"BILLING_HOME": str(home), "PATH": "/usr/bin:/bin"},
        )
        assert out.returncode == 0, out.stderr
        return loads(out.stdout)

    g = cli(
        "grant",
        "--workspace",
        "ws_a",
        "--amount",
        "25.00",
        "--currency",
        "USD",
        "--effective",
        "2024-01-01",
        "--expires",
        "2024-06-30",
        "--reason",
        "promo",
    )
    assert g["balance"] == D("25.00") and g["expiresOn"] == "2024-06-30"  # type: ignore[index]
    assert [x["id"] for x in cli("list", "--workspace", "ws_a")] == [g["id"]]  # type: ignore[index,union-attr]
    assert cli("balance", "ws_a", "--on", "2024-07-01")["balances"] == {}  # type: ignore[index]
    assert cli("balance", "ws_a", "--on", "2024-06-30")["balances"] == {"USD": D("25.00")}  # type: ignore[index]


KEY = "sk_test_credits"


@pytest.mark.parametrize(("granted", "charged_minor"), [("100.00", 39500), ("495.00", None)])
def test_stripe_charges_the_amount_due(
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    granted: str,
    charged_minor: int | None,
) -> None:
    from billing_batch.payments.charging import pay_invoice
    from tests.fake_stripe import FakeStripe, FakeStripeHTTPClient

    settings = book_settings(home, monkeypatch)
    monkeypatch.setenv("STRIPE_API_KEY", KEY)
    load(settings, tmp_path, seed_usage())
    grant_credit(settings, "ws_123", D(granted), "USD", effective_on=date(2024, 1, 1), now=NOW)
    draft = create_invoice(settings, "ws_123", *JAN, now=NOW)
    inv = finalize_invoice(settings, draft.id, now=NOW, render=False)
    assert inv.total == D("495.00") and inv.due == D("495.00") - D(granted)
    fake = FakeStripe(api_key=KEY)
    result = pay_invoice(
        settings, inv.id, payment_method="pm_card_visa", http_client=FakeStripeHTTPClient(fake)
    )
    assert result.succeeded and result.invoice is not None
    assert result.invoice.status == "paid"
    charges = fake.charges_for(inv.id)
    if charged_minor is None:  # paid by credits: Stripe is never called
        assert charges == [] and result.amount_minor == 0
    else:
        assert [(c.amount, c.currency) for c in charges] == [(charged_minor, "usd")]


def test_a_grant_with_an_idempotency_key_is_made_once(settings: object) -> None:
    def grant(amount: str) -> object:
        return grant_credit(
            settings,  # type: ignore[arg-type]
            "ws_k",
            D(amount),
            "USD",
            effective_on=date(2024, 1, 1),
            idempotency_key="order-77",
            now=NOW,
        )

    first = grant("40.00")
    assert grant("40.00") == first  # the same order again: the same grant, nothing added
    with pytest.raises(InputError, match="order-77.*other terms \\(amount\\)"):
        grant("41.00")
    grants = list_grants(settings, "ws_k")  # type: ignore[arg-type]
    assert [(g.id, g.balance) for g in grants] == [(first.id, D("40.00"))]  # type: ignore[attr-defined]


def test_the_nightly_stores_each_invoice_amount_due_with_its_row(
    settings: Settings, tmp_path: Path
) -> None:
    """The amount due is written with the finalized row (one statement): the total for a
    workspace with nothing on account (read once per run, not per invoice), the total
    less the grant drawn for one with a grant. Read back from the state's column."""
    from billing_batch.invoicing.service import invoice_closed_periods
    from billing_batch.storage import state
    from tests.invoicing.helpers import api_calls

    load(
        settings,
        tmp_path,
        [*api_calls("funded", 3, "2024-01-10"), *api_calls("bare", 3, "2024-01-10")],
    )
    grant_credit(settings, "funded", D("1.25"), "USD", effective_on=date(2024, 1, 1), now=NOW)
    _, results = invoice_closed_periods(settings, date(2024, 2, 1), now=NOW)
    totals = {p.workspace_id: r.total for p, r in results}  # type: ignore[union-attr]
    assert totals["funded"] > D("1.25") and totals["bare"] > 0
    with state.opened(settings) as con:
        stored = dict(
            con.execute("SELECT workspace_id, amount_due FROM invoices WHERE status = 'open'")
        )
    assert {ws: D(v) for ws, v in stored.items()} == {
        "funded": totals["funded"] - D("1.25"),
        "bare": totals["bare"],
    }
