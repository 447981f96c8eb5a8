"""Stored price-book versions and discounts on real invoices: the book that priced an
invoice is kept by digest (once), `explain` re-rates with it after a price change, and a
discount is its own line before tax (golden JSON, the PDF read back)."""

from __future__ import annotations

import subprocess
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from billing_batch._core.jsonutil import dumps
from billing_batch.invoicing.explain import explain_invoice
from billing_batch.invoicing.price_books import list_books, stored_book
from billing_batch.invoicing.service import create_invoice, finalize_invoice
from billing_batch.storage import state
from tests.invoicing.helpers import NOW, load, seed_usage
from tests.invoicing.pricing_support import book_settings, change_prices, golden
from tests.invoicing.test_service import GOLDEN, normalized

D = Decimal
JAN = (date(2024, 1, 1), date(2024, 1, 31))


def test_discounted_invoice_golden_and_pdf(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = book_settings(home, monkeypatch)
    load(settings, tmp_path, seed_usage())
    draft = create_invoice(settings, "ws_123", *JAN, now=NOW)
    inv = finalize_invoice(settings, draft.id, now=NOW)
    assert [(x.kind, x.amount) for x in inv.lines] == [
        ("usage", D("450.00")),
        ("usage", D("50.00")),
        ("discount", D("-50.00")),
    ]
    # applied before tax: 10% of 500.00 off, tax on 450.00
    assert (inv.subtotal, inv.tax, inv.total) == (D("450.00"), D("45.00"), D("495.00"))
    doc = normalized(inv.to_json())
    golden(GOLDEN / "invoice_discount.json", dumps(doc, indent=2) + "\n")
    assert inv.pdf_path is not None
    text = subprocess.run(
        ["pdftotext", "-layout", str(settings.home / inv.pdf_path), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Discount: Launch discount (10% off subtotal)" in text
    assert "-50.00" in text or "−50.00" in text
    assert "495.00" in text


def test_the_pricing_book_is_stored_once_and_explain_uses_it(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = book_settings(home, monkeypatch)
    load(settings, tmp_path, seed_usage())
    draft = create_invoice(settings, "ws_123", *JAN, now=NOW)
    create_invoice(settings, "ws_123", *JAN, now=NOW)  # a refresh stores nothing new
    inv = finalize_invoice(settings, draft.id, now=NOW, render=False)
    digest = inv.extra["priceBookDigest"]
    with state.opened(settings) as con:
        books = list_books(con)
        assert [(b.digest, b.version) for b in books] == [(digest, "default-2024.1")]
        kept = stored_book(settings, con, digest)
    assert kept is not None and kept.plan("payg").price("api_calls").unit_price == D("0.01")
    assert kept.account("ws_123").discounts[0].name == "launch"

    change_prices(settings, 'unit_price = "0.01"', 'unit_price = "0.02"', "2024.2")
    out = explain_invoice(settings, inv.id)
    assert out["priceBookUsed"] == "stored"
    assert out["priceBookChanged"] is True and out["priceBookVersionNow"] == "2024.2"
    again = out["recomputedAtSnapshot"]
    assert again["agrees"] is True, again  # priced with its own book, discount included
    assert again["subtotal"] == D("450.00")
    assert out["lines"][0]["arithmetic"] == ["45,000 × 0.01 = 450.00"]


def test_an_edited_book_file_is_never_stored_under_the_old_digest(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from billing_batch._core.errors import PriceBookError
    from billing_batch.config.price_book import load_price_book
    from billing_batch.invoicing.price_books import book_text

    settings = book_settings(home, monkeypatch)
    book = load_price_book(settings)
    assert "launch" in book_text(book)
    change_prices(settings, 'unit_price = "0.01"', 'unit_price = "0.02"', "2024.2")
    with pytest.raises(PriceBookError, match="changed while it was in use"):
        book_text(book)
