"""The credit note arithmetic (pure): rounding once per line and once for the tax in
USD, JPY (no minor unit) and KWD (three decimals), cumulative credits adding up to the
invoice exactly, and the bounds."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from billing_batch._core.errors import InputError
from billing_batch._core.money import quantize
from billing_batch.invoicing.credit_note_model import (
    Computed,
    Credited,
    CreditLine,
    compute_credit,
)
from billing_batch.invoicing.model import Invoice
from billing_batch.rating import Line

D = Decimal
NOTHING = Credited({}, D(0), D(0))


def invoice(currency: str, amounts: list[tuple[str, str]], rate: str) -> Invoice:
    lines = tuple(
        Line(
            "usage",
            f"line {n}",
            D(a),
            date(2024, 1, 1),
            date(2024, 1, 31),
            "api_calls",
            quantity=D(q),
        )
        for n, (q, a) in enumerate(amounts, start=1)
    )
    subtotal = sum((x.amount for x in lines), D(0))
    tax = quantize(subtotal * D(rate), currency)
    now = datetime(2024, 2, 1, tzinfo=UTC)
    return Invoice(
        id="inv_x",
        workspace_id="ws",
        period_start=date(2024, 1, 1),
        period_end=date(2024, 1, 31),
        kind="regular",
        status="open",
        number="INV-2024-000001",
        currency=currency,
        subtotal=subtotal,
        tax_rate=D(rate),
        tax=tax,
        total=subtotal + tax,
        lines=lines,
        price_book_version="v",
        lake_snapshot_id=1,
        created_at=now,
        updated_at=now,
        issued_at=now,
        due_date=None,
        finalized_at=now,
        paid_at=None,
        voided_at=None,
        overdue_at=None,
        payment_intent_id=None,
        json_path=None,
        pdf_path=None,
        extra={},
    )


def after(credited: Credited, c: Computed) -> Credited:
    per = dict(credited.lines)
    for x in c.lines:
        if x.invoice_line_no is not None:
            q, a = per.get(x.invoice_line_no, (D(0), D(0)))
            per[x.invoice_line_no] = (q + (x.quantity or 0), a + x.amount)
    return Credited(per, credited.subtotal + c.subtotal, credited.tax + c.tax)


@pytest.mark.parametrize(
    ("currency", "line", "rate", "thirds", "taxes"),
    [
        # 3 units for 10.00 USD: 3.33 + 3.34 + 3.33; tax 8%: 0.27 + 0.26 + 0.27 = 0.80
        ("USD", ("3", "10.00"), "0.08", ["3.33", "3.34", "3.33"], ["0.27", "0.26", "0.27"]),
        # 3 units for 1000 JPY: 333 + 334 + 333 (whole yen); tax 10%: 33 + 34 + 33 = 100
        ("JPY", ("3", "1000"), "0.1", ["333", "334", "333"], ["33", "34", "33"]),
        # 3 units for 1.000 KWD: 0.333 + 0.334 + 0.333; tax 5%: 0.017 + 0.016 + 0.017 = 0.050
        ("KWD", ("3", "1.000"), "0.05", ["0.333", "0.334", "0.333"], ["0.017", "0.016", "0.017"]),
    ],
)
def test_thirds_add_up_exactly(
    currency: str, line: tuple[str, str], rate: str, thirds: list[str], taxes: list[str]
) -> None:
    inv = invoice(currency, [line], rate)
    credited = NOTHING
    notes = []
    for _ in range(3):
        c = compute_credit(inv, credited, lines=[CreditLine(1, quantity=1)], amount=None)
        notes.append(c)
        credited = after(credited, c)
    assert [c.subtotal for c in notes] == [D(x) for x in thirds]
    assert [c.tax for c in notes] == [D(x) for x in taxes]
    assert sum(c.total for c in notes) == inv.total
    with pytest.raises(InputError, match="nothing left|of its"):
        compute_credit(inv, credited, lines=None, amount=None)


def test_amounts_finer_than_the_currency_are_refused() -> None:
    jpy = invoice("JPY", [("10", "1000")], "0.1")
    with pytest.raises(InputError, match="finer than JPY"):
        compute_credit(jpy, NOTHING, lines=None, amount=D("0.5"))
    kwd = invoice("KWD", [("10", "1.000")], "0")
    with pytest.raises(InputError, match="finer than KWD"):
        compute_credit(kwd, NOTHING, lines=[CreditLine(1, amount=D("0.0005"))], amount=None)
    ok = compute_credit(kwd, NOTHING, lines=[CreditLine(1, amount=D("0.001"))], amount=None)
    assert ok.total == D("0.001")


def test_full_credit_after_partial_ones_is_the_rest_exactly() -> None:
    inv = invoice("USD", [("7", "10.00"), ("3", "0.99")], "0.0725")
    first = compute_credit(inv, NOTHING, lines=[CreditLine(1, quantity=D(2))], amount=None)
    credited = after(NOTHING, first)
    second = compute_credit(inv, credited, lines=[CreditLine(2, amount=D("0.50"))], amount=None)
    credited = after(credited, second)
    rest = compute_credit(inv, credited, lines=None, amount=None)
    assert first.subtotal == D("2.86")  # 10.00 x 2/7 = 2.857... rounded once
    assert [(x.invoice_line_no, x.quantity, x.amount) for x in rest.lines] == [
        (1, D(5), D("7.14")),
        (2, None, D("0.49")),
    ]
    assert first.total + second.total + rest.total == inv.total
    assert first.tax + second.tax + rest.tax == inv.tax
