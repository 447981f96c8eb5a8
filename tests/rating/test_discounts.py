"""Discounts (rating.discounts, pure): percentage and fixed amounts, on the subtotal or on
named metrics, for N periods or forever, never below zero, rounded once HALF_UP in USD,
JPY and KWD; and their syntax in the price book."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from billing_batch._core.errors import PriceBookError
from billing_batch.config.metrics import DEFAULT_METRICS
from billing_batch.config.price_book import parse_price_book
from billing_batch.periods import Period
from billing_batch.rating import Line
from billing_batch.rating.discounts import Discount, add_months, discount_lines

D = Decimal
JAN = Period(date(2024, 1, 1), date(2024, 1, 31), date(2024, 1, 1), date(2024, 1, 31))


def usage(amount: str, metric: str = "api_calls") -> Line:
    return Line("usage", metric, D(amount), JAN.start, JAN.end, metric=metric, plan="p")


def fee(amount: str) -> Line:
    return Line("base_fee", "fee", D(amount), JAN.start, JAN.end, plan="p")


def pct(value: str, *metrics: str, name: str = "d") -> Discount:
    return Discount(name, "percent", D(value), metrics)


def off(value: str, *metrics: str, name: str = "d") -> Discount:
    return Discount(name, "amount", D(value), metrics)


def amounts(lines: list[Line]) -> list[Decimal]:
    return [x.amount for x in lines]


@pytest.mark.parametrize(
    ("currency", "base", "percent", "expected"),
    [
        ("USD", "100.05", "10", "-10.01"),  # 10.005 -> 10.01 (HALF_UP; banker's: 10.00)
        ("USD", "0.05", "12.5", "-0.01"),  # 0.00625 -> 0.01
        ("USD", "0.04", "12.5", "-0.01"),  # 0.005 -> 0.01
        ("USD", "0.03", "12.5", "0.00"),  # 0.00375 -> 0.00: no line
        ("JPY", "1005", "10", "-101"),  # 100.5 -> 101
        ("JPY", "1003", "15", "-150"),  # 150.45 -> 150
        ("KWD", "1.005", "10", "-0.101"),  # 0.1005 -> 0.101
        ("KWD", "2.345", "33.3", "-0.781"),  # 0.780885 -> 0.781
    ],
)
def test_percentage_rounds_once_half_up(
    currency: str, base: str, percent: str, expected: str
) -> None:
    lines = discount_lines(JAN, [usage(base)], [pct(percent)], currency)
    assert amounts(lines) == ([] if D(expected) == 0 else [D(expected)])
    if lines:
        assert lines[0].kind == "discount"
        assert lines[0].detail["exactAmount"] == -(D(base) * D(percent) / 100)


@pytest.mark.parametrize(
    ("currency", "value", "base", "expected"),
    [
        ("USD", "25.00", "30.00", "-25.00"),
        ("JPY", "500", "300", "-300"),
        ("KWD", "1.250", "9.999", "-1.250"),
    ],
)
def test_fixed_amount_never_below_zero(currency: str, value: str, base: str, expected: str) -> None:
    assert amounts(discount_lines(JAN, [usage(base)], [off(value)], currency)) == [D(expected)]


def test_discounts_apply_in_name_order_on_what_is_left() -> None:
    lines = [usage("60.00"), fee("40.00")]
    got = discount_lines(JAN, lines, [off("80.00", name="b"), pct("50", name="a")], "USD")
    assert amounts(got) == [D("-50.00"), D("-50.00")]  # 50% of 100, then 80 capped at 50
    assert sum(x.amount for x in lines) + sum(amounts(got)) == 0


def test_metric_discount_only_takes_its_metrics() -> None:
    lines = [usage("10.00"), usage("50.00", "contracts"), fee("99.00")]
    got = discount_lines(JAN, lines, [pct("20", "contracts")], "USD")
    assert amounts(got) == [D("-10.00")]
    assert got[0].detail["appliesTo"] == ["contracts"] and got[0].detail["base"] == D("50.00")
    assert got[0].description == "Discount: d (20% off contracts)"


def test_nothing_to_discount_gives_no_line() -> None:
    assert discount_lines(JAN, [], [pct("10"), off("5.00")], "USD") == []
    assert discount_lines(JAN, [usage("10.00")], [off("5.00", "storage")], "USD") == []


def test_n_periods_from_start() -> None:
    d = Discount("launch", "percent", D(10), (), date(2024, 1, 15), 2)
    starts = [date(2024, m, 1) for m in range(1, 6)]
    periods = [Period(s, add_months(s, 1), s, add_months(s, 1)) for s in starts]
    assert [d.applies_to(p) for p in periods] == [False, True, True, False, False]
    forever = Discount("x", "percent", D(10), (), date(2024, 1, 1))
    assert all(forever.applies_to(p) for p in periods)
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)


def test_late_lines_get_percentages_on_the_signed_difference_only() -> None:
    late = [Line("late_usage", "late", D("-20.00"), JAN.start, JAN.end, metric="storage")]
    got = discount_lines(JAN, late, [pct("10"), off("5.00", name="z")], "USD", late=True)
    assert amounts(got) == [D("2.00")]  # gives back 10% of a 20.00 decrease; no fixed amount
    assert got[0].kind == "late_discount" and got[0].detail["latePeriod"]["start"] == JAN.start
    assert got[0].description.startswith("Late discount for 2024-01: ")


BOOK = """
version = "t"
default_plan = "basic"
default_currency = "USD"
[plans.basic.prices.api_calls]
model = "per_unit"
unit_price = "0.01"
[plans.yen]
currency = "JPY"
[plans.yen.prices.api_calls]
model = "per_unit"
unit_price = "1"
"""


def parse(extra: str) -> object:
    return parse_price_book(BOOK + extra, source="p.toml", metrics=DEFAULT_METRICS)


def test_discount_syntax_in_the_book() -> None:
    book = parse(
        '[workspaces.ws_a.discounts.launch]\npercent = "12.5"\nmetrics = ["api_calls"]\n'
        'start = 2024-01-01\nperiods = 3\ndescription = "Launch"\n'
        '[workspaces.ws_a.discounts.loyal]\namount = "5.00"\n'
    )
    acc = book.account("ws_a")  # type: ignore[attr-defined]
    assert [d.name for d in acc.discounts] == ["launch", "loyal"]
    launch = acc.discounts[0]
    assert (launch.kind, launch.value, launch.metrics) == ("percent", D("12.5"), ("api_calls",))
    assert (launch.start, launch.periods, launch.description) == (date(2024, 1, 1), 3, "Launch")
    plain = parse("[workspaces.ws_a]\n")
    assert plain.digest != book.digest  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('percent = "10"\namount = "1.00"', "give exactly one of percent or amount"),
        ('percent = "0"', "percent: must be greater than 0"),
        ('percent = "101"', "percent: must be at most 100"),
        ('amount = "1.005"', "amount: '1.005' is not a whole number of USD minor units"),
        ('percent = "10"\nmetrics = ["seats"]', "metrics[0]: the plans price no metric 'seats'"),
        ('percent = "10"\nperiods = 2', "periods: needs a start date"),
        ('percent = "10"\nstart = "2024-13-01"', "start: expected a date"),
        ('percent = "10"\nfoo = 1', "discounts.d.foo: unknown key"),
    ],
)
def test_discount_errors_name_the_key(extra: str, message: str) -> None:
    with pytest.raises(PriceBookError, match="p.toml: workspaces.ws_a.discounts.d") as err:
        parse(f"[workspaces.ws_a.discounts.d]\n{extra}\n")
    assert message in str(err.value)


def test_a_yen_workspace_discount_is_in_yen() -> None:
    with pytest.raises(PriceBookError, match="not a whole number of JPY"):
        parse('[workspaces.ws_y]\nplan = "yen"\n[workspaces.ws_y.discounts.d]\namount = "0.5"\n')
