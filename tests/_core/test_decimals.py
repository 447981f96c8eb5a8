"""Price book decimals (issue 15): plain decimals only, one home (money.parse_decimal),
used by the price book reader."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing_batch._core import money
from billing_batch._core.errors import InputError, PriceBookError
from billing_batch.config import price_book as pricing

REFUSED = [
    ("1e-2", "not a plain decimal"),
    ("1E2", "not a plain decimal"),
    ("1_000", "not a plain decimal"),
    (" 0.01 ", "not a plain decimal"),
    ("0.01 ", "not a plain decimal"),
    ("\t5", "not a plain decimal"),
    ("+1", "not a plain decimal"),
    (".5", "not a plain decimal"),
    ("5.", "not a plain decimal"),
    ("007", "not a plain decimal"),
    ("١٢", "not a plain decimal"),  # Arabic-Indic digits: Decimal() takes them
    ("１", "not a plain decimal"),  # a full-width digit
    ("-0", "negative zero"),
    ("-0.00", "negative zero"),
    ("NaN", "not a finite number"),
    ("-Infinity", "not a finite number"),
    ("", "not a decimal number"),
    ("0x10", "not a decimal number"),
]


@pytest.mark.parametrize(("text", "message"), REFUSED)
def test_parse_decimal_accepts_plain_decimals_only(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        money.parse_decimal(text, what="plans.p.unit_price")
    assert str(err.value).startswith("plans.p.unit_price: ")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", Decimal(0)),
        ("0.01", Decimal("0.01")),
        ("0.000", Decimal("0.000")),
        ("1000", Decimal(1000)),
        ("-3.5", Decimal("-3.5")),
        ("10.50", Decimal("10.50")),
        (1_000, Decimal(1000)),  # a TOML integer (its own "1_000" syntax is TOML's)
        (-0, Decimal(0)),
    ],
)
def test_parse_decimal_plain(value: object, expected: Decimal) -> None:
    got = money.parse_decimal(value, what="x")
    assert got == expected and str(got) == str(expected)


def _book(unit_price: str) -> str:
    return pricing.default_price_book_text().replace(
        'unit_price = "0.01"', f"unit_price = {unit_price}", 1
    )


@pytest.mark.parametrize("text", ['"1e-2"', '"1_000"', '" 0.01 "', '"-0"'])
def test_price_book_refuses_what_issue_15_found(text: str) -> None:
    source = _book(text)
    assert source != pricing.default_price_book_text()
    with pytest.raises(PriceBookError) as err:
        pricing.parse_price_book(source, source="book.toml")
    message = str(err.value)
    assert message.startswith("book.toml: plans.payg.prices.api_calls.unit_price: ")
    assert text.strip('"') in message


def test_price_book_still_reads_plain_decimals() -> None:
    book = pricing.parse_price_book(_book('"0.010"'), source="book.toml")
    assert book.plan("payg").prices["api_calls"].unit_price == Decimal("0.010")
    # TOML's own integer syntax stays TOML's: 1_000 is the integer 1000
    text = pricing.default_price_book_text().replace('included = "100000"', "included = 100_000", 1)
    assert pricing.parse_price_book(text, source="b").plan("growth").prices[
        "api_calls"
    ].included == Decimal(100000)
