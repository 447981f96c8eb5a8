"""money: the one rounding rule (HALF_UP to the minor unit), parsing and formatting."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing_batch._core import money
from billing_batch._core.errors import InputError

D = Decimal

amounts = st.decimals(
    min_value=D("-1000000000"), max_value=D("1000000000"), allow_nan=False, places=6
)
currencies = st.sampled_from(["USD", "EUR", "JPY", "KRW", "KWD", "BHD"])


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("0.005", "USD", "0.01"),  # half up, not half even
        ("0.015", "USD", "0.02"),
        ("0.025", "USD", "0.03"),  # banker's rounding would give 0.02
        ("0.0049", "USD", "0.00"),
        ("-0.005", "USD", "-0.01"),  # half away from zero
        ("2.5", "JPY", "3"),
        ("3.5", "JPY", "4"),
        ("1500.4999", "JPY", "1500"),
        ("1.0005", "KWD", "1.001"),
        ("450", "USD", "450.00"),
    ],
)
def test_quantize_half_up(amount: str, currency: str, expected: str) -> None:
    q = money.quantize(D(amount), currency)
    assert q == D(expected)
    assert str(q) == expected  # and on the minor unit exactly


def test_minor_units_and_codes() -> None:
    assert money.minor_units("usd") == 2
    assert money.minor_units("JPY") == 0
    assert money.minor_units("KWD") == 3
    assert money.quantum("JPY") == D(1)
    for bad in ("US", "USDX", "12$", ""):
        with pytest.raises(InputError, match="ISO 4217"):
            money.minor_units(bad)


def test_to_and_from_minor() -> None:
    assert money.to_minor(D("550.00"), "USD") == 55000
    assert money.to_minor(D("550"), "JPY") == 550
    assert money.to_minor(D("1.234"), "KWD") == 1234
    assert money.from_minor(55000, "USD") == D("550.00")
    with pytest.raises(ValueError, match="minor units"):
        money.to_minor(D("0.005"), "USD")
    with pytest.raises(ValueError, match="minor units"):
        money.to_minor(D("10.5"), "JPY")


@pytest.mark.parametrize(
    ("value", "expected"), [("0.01", D("0.01")), (12, D(12)), ("-3.5", D("-3.5"))]
)
def test_parse_decimal_exact(value: object, expected: Decimal) -> None:
    assert money.parse_decimal(value, what="x") == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0.01, "write decimals as strings"),
        (True, "write decimals as strings"),
        ("abc", "not a decimal number"),
        ("NaN", "not a finite number"),
        ("Infinity", "not a finite number"),
        ([1], "not a decimal number"),
    ],
)
def test_parse_decimal_refuses(value: object, message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        money.parse_decimal(value, what="plans.x.unit_price")
    assert str(err.value).startswith("plans.x.unit_price: ")


def test_format_amount_and_quantity() -> None:
    assert money.format_amount(D("1234.5"), "USD") == "1,234.50"
    assert money.format_amount(D("550"), "USD") == "550.00"
    assert money.format_amount(D("1234567.5"), "JPY") == "1,234,568"
    assert money.format_quantity(D("45000")) == "45,000"
    assert money.format_quantity(D("12.50")) == "12.5"
    assert money.format_quantity(D("1234.125")) == "1,234.125"


@pytest.mark.parametrize(
    ("price", "currency", "expected"),
    [
        ("0.5", "USD", "0.50"),
        ("0.008", "USD", "0.008"),
        ("0.01", "USD", "0.01"),
        ("100", "USD", "100.00"),
        ("1E+3", "USD", "1,000.00"),
        ("1234.5", "JPY", "1,234.5"),
        ("75", "JPY", "75"),
        ("-0", "USD", "0.00"),
        ("3.08625", "USD", "3.08625"),
    ],
)
def test_format_price_keeps_every_decimal(price: str, currency: str, expected: str) -> None:
    assert money.format_price(D(price), currency) == expected


def test_format_money() -> None:
    assert money.format_money(D("550"), "usd") == "550.00 USD"
    assert money.format_money(D("28148.4"), "JPY") == "28,148 JPY"


@settings(deadline=None)
@given(amounts, currencies)
def test_quantize_idempotent_and_within_half_a_unit(amount: Decimal, currency: str) -> None:
    q = money.quantize(amount, currency)
    assert money.quantize(q, currency) == q
    assert abs(q - amount) <= money.quantum(currency) / 2
    assert q.as_tuple().exponent == -money.minor_units(currency)


@settings(deadline=None)
@given(st.integers(min_value=-(10**12), max_value=10**12), currencies)
def test_minor_round_trip(minor: int, currency: str) -> None:
    assert money.to_minor(money.from_minor(minor, currency), currency) == minor


@settings(deadline=None)
@given(amounts, currencies)
def test_half_up_is_symmetric(amount: Decimal, currency: str) -> None:
    assert money.quantize(-amount, currency) == -money.quantize(amount, currency)


def test_new_ids_sort_in_creation_order() -> None:
    from billing_batch._core.ids import new_id

    ids = [new_id("inv") for _ in range(20_000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
