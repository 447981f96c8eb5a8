"""Re-rating a finalized invoice: the diff line by line (old book = the invoice's own,
stored; new book = today's or a file), and `--issue`: a debit invoice for exactly an
undercharge (numbered, ledger deltas so later late usage still adds up, refused twice),
a credit note for exactly an overcharge (money only: the usage stays billed)."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from billing_batch._core.errors import StateError
from billing_batch._core.jsonutil import loads
from billing_batch.invoicing.audit import audit
from billing_batch.invoicing.rerate import issue_difference, rerate_invoice
from billing_batch.invoicing.service import (
    create_invoice,
    create_invoices,
    finalize_invoice,
    list_invoices,
)
from billing_batch.storage.lake import Lake
from tests.invoicing.helpers import NOW, api_calls, load, seed_usage
from tests.invoicing.pricing_support import book_settings, change_prices

D = Decimal
JAN = (date(2024, 1, 1), date(2024, 1, 31))
FEB = (date(2024, 2, 1), date(2024, 2, 29))
PRICE = 'unit_price = "0.01"'


@pytest.fixture
def invoiced(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    """ws_123's January (seed usage, 10% launch discount): 450.00 + 45.00 tax, INV-1."""
    settings = book_settings(home, monkeypatch)
    load(settings, tmp_path, seed_usage())
    draft = create_invoice(settings, "ws_123", *JAN, now=NOW)
    inv = finalize_invoice(settings, draft.id, now=NOW, render=False)
    assert inv.number == "INV-2024-000001" and inv.total == D("495.00")
    return settings


def test_undercharge_gives_the_exact_debit_invoice(invoiced: object, tmp_path: Path) -> None:
    settings = invoiced
    change_prices(settings, PRICE, 'unit_price = "0.012"', "2024.2")  # type: ignore[arg-type]
    diff = rerate_invoice(settings, "INV-2024-000001")  # type: ignore[arg-type]
    assert diff.old_book_stored and diff.old_book.version == "default-2024.1"
    assert diff.new_book.version == "2024.2"
    assert [(x.kind, x.old, x.new, x.difference) for x in diff.lines] == [
        ("usage", D("450.00"), D("540.00"), D("90.00")),
        ("usage", D("50.00"), D("50.00"), D("0.00")),
        ("discount", D("-50.00"), D("-59.00"), D("-9.00")),
    ]
    assert (diff.subtotal_difference, diff.tax_difference, diff.total_difference) == (
        D("81.00"),
        D("8.10"),
        D("89.10"),
    )
    issued = issue_difference(settings, diff, now=NOW)  # type: ignore[arg-type]
    debit = issued["debitInvoice"]
    assert (debit["kind"], debit["status"], debit["number"]) == ("debit", "open", "INV-2024-000002")
    assert (debit["subtotal"], debit["tax"], debit["total"]) == (D("81.00"), D("8.10"), D("89.10"))
    assert [(x["kind"], x["amount"]) for x in debit["lineItems"]] == [
        ("adjustment", D("90.00")),
        ("adjustment", D("-9.00")),
    ]
    assert debit["lineItems"][0]["description"] == "Price adjustment: API Calls (45,000)"
    with pytest.raises(StateError, match="already re-rated .* debit invoice INV-2024-000002"):
        issue_difference(settings, diff, now=NOW)  # type: ignore[arg-type]
    # the original and its debit now add up to the new price: rerating again shows nothing
    # new for the period's later late usage: 1,000 more January calls at 0.012 = 12.00
    load(settings, tmp_path, api_calls("ws_123", 1, "2024-01-30", prefix="late"))  # type: ignore[arg-type]
    load(settings, tmp_path, api_calls("ws_123", 1, "2024-02-03", prefix="feb"))  # type: ignore[arg-type]
    (feb,) = create_invoices(settings, [("ws_123", *FEB)], now=NOW, finalize=True)  # type: ignore[arg-type]
    late = [x for x in feb.lines if x.kind.startswith("late_")]  # type: ignore[union-attr]
    assert [(x.kind, x.amount) for x in late] == [
        ("late_usage", D("12.00")),
        ("late_discount", D("-1.20")),
    ]
    # prices changed money, not usage: the audit finds nothing unexplained
    report = audit(settings, as_of=date(2024, 3, 1))  # type: ignore[arg-type]
    assert report.unexplained == [], report.unexplained


def test_overcharge_gives_the_exact_credit_note(invoiced: object) -> None:
    settings = invoiced
    change_prices(settings, PRICE, 'unit_price = "0.008"', "2024.3")  # type: ignore[arg-type]
    diff = rerate_invoice(settings, "INV-2024-000001")  # type: ignore[arg-type]
    assert diff.total_difference == D("-89.10")  # (360 - 450) * 0.9 = -81.00, tax -8.10
    issued = issue_difference(settings, diff, now=NOW)  # type: ignore[arg-type]
    note = issued["creditNote"]
    assert note["number"].startswith("CN-2024-")
    assert (note["subtotal"], note["tax"], note["total"]) == (D("81.00"), D("8.10"), D("89.10"))
    (inv,) = list_invoices(settings)  # type: ignore[arg-type]
    assert inv.due == D("495.00") - D("89.10")  # open invoice: its amount due drops
    # money only: usage stays billed, the audit finds nothing unexplained
    report = audit(settings, as_of=date(2024, 2, 1))  # type: ignore[arg-type]
    assert report.unexplained == [], report.unexplained


def test_rerate_with_a_book_file_at_another_snapshot_and_the_cli(
    invoiced: object, home: Path, tmp_path: Path
) -> None:
    settings = invoiced
    book = tmp_path / "new.toml"
    text = (home / "prices.toml").read_text().replace(PRICE, 'unit_price = "0.02"', 1)
    book.write_text(text.replace('version = "default-2024.1"', 'version = "x"'))
    load(settings, tmp_path, api_calls("ws_123", 5, "2024-01-30", prefix="late"))  # type: ignore[arg-type]
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "billing_batch",
            "invoice",
            "rerate",
            "INV-2024-000001",
            "--price-book",
            str(book),
        ],
        capture_output=True,
        text=True,
        env={"BILLING_HOME": str(home), "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 0, run.stderr
    out = run.stdout.splitlines()
    assert out[0].startswith("invoice INV-2024-000001 (USD): price book default-2024.1 -> x")
    assert out[2].split()[-3:] == ["450.00", "900.00", "450.00"]  # the invoice's snapshot
    assert out[-1].split()[-1] == "445.50"  # (450 - 45 discount) + 10% tax
    con = Lake(settings).connect(read_only=True)  # type: ignore[arg-type]
    try:
        latest = Lake.current_snapshot(con)
    finally:
        con.close()
    now = rerate_invoice(settings, "INV-2024-000001", book_path=book, as_of=latest)  # type: ignore[arg-type]
    # at a later snapshot both sides include the 5,000 late calls: still prices only
    assert [(x.old, x.new) for x in now.lines][0] == (D("500.00"), D("1000.00"))
    draft = create_invoice(settings, "ws_123", *FEB, now=NOW)  # type: ignore[arg-type]
    with pytest.raises(StateError, match="only a finalized period invoice"):
        rerate_invoice(settings, draft.id)  # type: ignore[arg-type]
    j = subprocess.run(
        [
            sys.executable,
            "-m",
            "billing_batch",
            "invoice",
            "rerate",
            "INV-2024-000001",
            "--price-book",
            str(book),
            "--json",
        ],
        capture_output=True,
        text=True,
        env={"BILLING_HOME": str(home), "PATH": "/usr/bin:/bin"},
    )
    assert loads(j.stdout)["totalDifference"] == D("445.50")
