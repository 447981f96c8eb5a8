"""rating.prices: the arithmetic of each price model (per unit, graduated, volume,
package; included units; late usage), with golden JSON per model (``tests/rating/
support.py`` says how to regenerate them) and property tests."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from billing_batch._core import money
from billing_batch._core.errors import InputError
from billing_batch.rating.plans import PriceBook
from billing_batch.rating.prices import MetricPrice, Tier
from tests.rating.support import cases, check_golden

D = Decimal


# --- goldens per model ------------------------------------------------------------------


def test_golden_per_unit(book: PriceBook) -> None:
    basic = book.plan("basic")
    value = cases(basic.price("api_calls"), "USD", ["0", "1", "45000", "123456789"])
    # 12.345 × 0.25 = 3.08625 → 3.09; 0.02 × 0.25 = 0.005 → 0.01 (half up)
    value += cases(basic.price("storage"), "USD", ["12.345", "0.02", "0.019"])
    check_golden("per_unit", value)
    assert [c["charge"]["amount"] for c in value[-3:]] == [D("3.09"), D("0.01"), D("0.00")]


def test_golden_graduated(book: PriceBook) -> None:
    price = book.plan("tiered").price("api_calls")
    # included 1,000; tiers (0, 10,000] (10,000, 100,000] (100,000, ∞) on billable units
    quantities = ["0", "500", "1000", "1001", "11000", "11001", "101000", "101001", "2500000"]
    value = cases(price, "USD", quantities)
    check_golden("graduated", value)
    by_q = {c["quantity"]: c["charge"] for c in value}
    assert by_q[D(11000)]["amount"] == D("100.00")  # exactly the top of tier 1
    assert by_q[D(11001)]["amount"] == D("105.01")  # + 1 × 0.005 + 5.00 flat
    assert by_q[D(1000)]["amount"] == 0 and by_q[D(1000)]["included"] == 1000


def test_golden_volume(book: PriceBook) -> None:
    price = book.plan("tiered").price("contracts")
    value = cases(price, "USD", ["0", "1", "100", "101", "1000", "1001", "5000"])
    check_golden("volume", value)
    by_q = {c["quantity"]: c["charge"] for c in value}
    assert by_q[D(100)]["amount"] == D("50.00")  # 100 × 0.50 (tier 1 includes 100)
    assert by_q[D(101)]["amount"] == D("50.40")  # 101 × 0.40 + 10 flat
    assert by_q[D(1001)]["amount"] == D("250.25")  # 1,001 × 0.25


def test_golden_package(book: PriceBook) -> None:
    price = book.plan("tiered").price("storage")  # 2.00 per started 10, 5 included
    value = cases(price, "USD", ["0", "5", "5.001", "15", "15.5", "100"])
    check_golden("package", value)
    assert [c["charge"]["packages"] for c in value] == [0, 0, 1, 1, 2, 10]


def test_golden_jpy(book: PriceBook) -> None:
    yen = book.plan("yen")
    value = cases(yen.price("api_calls"), "JPY", ["1", "999", "1001", "1003"])
    value += cases(yen.price("storage"), "JPY", ["0.1", "0.3", "12.345"])
    check_golden("jpy", value)
    amounts = [c["charge"]["amount"] for c in value]
    # 1 × 1.5 = 1.5 → 2; 1,001 → 1,500.75 → 1,501; 0.1 × 35 = 3.5 → 4; 0.3 × 35 = 10.5 → 11
    assert amounts == [D(2), D(1499), D(1501), D(1502), D(4), D(11), D(432)]
    assert all(a == a.to_integral_value() for a in amounts)


def test_golden_late_usage(book: PriceBook) -> None:
    grad = book.plan("tiered").price("api_calls")
    per_unit = book.plan("basic").price("api_calls")
    value = [
        grad.rate_additional(D(10500), D(1000), "USD").to_detail(),  # crosses into tier 2
        grad.rate_additional(D(500), D(700), "USD").to_detail(),  # uses the last free units
        per_unit.rate_additional(D(45000), D(5000), "USD").to_detail(),
    ]
    check_golden("late_usage", value)
    assert [v["amount"] for v in value] == [D("12.50"), D("2.00"), D("50.00")]


# --- arithmetic details -------------------------------------------------------------------


def test_explain_lines(book: PriceBook) -> None:
    grad = book.plan("tiered").rate("api_calls", D(11001))
    assert grad.explain() == [
        "11,001 − 1,000 included = 10,001 billable",
        "tier 1 (0, 10,000]: 10,000 × 0.01 = 100.00",
        "tier 2 (10,000, 100,000]: 1 × 0.005 + 5.00 flat = 5.005",
        "100.00 + 5.005 = 105.005",
        "105.005 rounded half up to 105.01 USD",
    ]
    vol = book.plan("tiered").rate("contracts", D(1001))
    assert vol.explain() == ["all 1,001 at tier 3 (1,000, ∞): 1,001 × 0.25 = 250.25"]
    pkg = book.plan("tiered").rate("storage", D("15.5"))
    assert pkg.explain() == [
        "15.5 − 5 included = 10.5 billable",
        "ceil(10.5 / 10) = 2 package(s) × 2.00 = 4.00",
    ]
    late = book.plan("basic").price("api_calls").rate_additional(D(45000), D(5000), "USD")
    assert late.explain()[-1] == "500.00 − 450.00 already billed = 50.00"


def test_included_override_and_ints(book: PriceBook) -> None:
    price = book.plan("tiered").price("api_calls")
    assert price.rate(D(1500), "USD", included=D(0)).amount == D("15.00")
    assert price.rate(1500, "USD").amount == D("5.00")  # int quantities are accepted


@pytest.mark.parametrize("bad", [D(-1), D("NaN"), D("Infinity")])
def test_rate_refuses_bad_quantities(book: PriceBook, bad: Decimal) -> None:
    with pytest.raises(InputError, match="api_calls: quantity"):
        book.plan("basic").rate("api_calls", bad)


def test_rate_refuses_float(book: PriceBook) -> None:
    with pytest.raises(InputError, match="expected a Decimal"):
        book.plan("basic").rate("api_calls", 1.5)  # type: ignore[arg-type]


# --- properties ----------------------------------------------------------------------------

quantities = st.decimals(min_value=0, max_value=10**9, places=3, allow_nan=False)
prices = st.decimals(min_value=0, max_value=100, places=4, allow_nan=False)
currencies = st.sampled_from(["USD", "JPY", "KWD"])


@st.composite
def tier_lists(draw: st.DrawFn, *, flat: bool = True, prices_: Any = prices) -> tuple[Tier, ...]:
    bounds = sorted(set(draw(st.lists(st.integers(1, 10**7), min_size=0, max_size=4))))
    tiers = [
        Tier(
            D(b) if b is not None else None,
            draw(prices_),
            draw(st.sampled_from([D(0), D("5.00")])) if flat else D(0),
        )
        for b in [*bounds, None]
    ]
    return tuple(tiers)


@hsettings(deadline=None)
@given(tier_lists(), quantities, currencies, st.decimals(min_value=0, max_value=10**6, places=2))
def test_graduated_tiers_add_up(
    tiers: tuple[Tier, ...], qty: Decimal, currency: str, included: Decimal
) -> None:
    c = MetricPrice("m", "graduated", included, tiers=tiers).rate(qty, currency)
    assert sum((t.amount for t in c.tiers), D(0)) == c.exact_amount
    assert sum((t.quantity for t in c.tiers), D(0)) == c.billable
    assert c.billable == max(D(0), qty - included) and c.included + c.billable == qty
    assert c.amount == money.quantize(c.exact_amount, currency) and c.amount >= 0
    for t in c.tiers:
        assert t.quantity > 0
        assert t.up_to is None or t.from_ + t.quantity <= t.up_to


@hsettings(deadline=None)
@given(tier_lists(), st.data())
def test_graduated_boundaries_are_exact(tiers: tuple[Tier, ...], data: st.DataObject) -> None:
    bounded = [t for t in tiers if t.up_to is not None]
    assume(bounded)
    i = data.draw(st.integers(0, len(bounded) - 1))
    edge = bounded[i].up_to
    assert edge is not None
    price = MetricPrice("m", "graduated", tiers=tiers)
    at = price.rate(edge, "USD")
    assert len(at.tiers) == i + 1 and at.tiers[-1].up_to == edge  # the edge unit is in tier i
    above = price.rate(edge + 1, "USD")
    assert len(above.tiers) == i + 2 and above.tiers[-1].quantity == 1
    assert above.exact_amount - at.exact_amount == tiers[i + 1].unit_price + tiers[i + 1].flat_fee


@hsettings(deadline=None)
@given(tier_lists(flat=False), quantities)
def test_volume_vs_graduated(tiers: tuple[Tier, ...], qty: Decimal) -> None:
    volume = MetricPrice("m", "volume", tiers=tiers).rate(qty, "USD")
    graduated = MetricPrice("m", "graduated", tiers=tiers).rate(qty, "USD")
    reached = len(graduated.tiers)
    prices_reached = [t.unit_price for t in tiers[: max(reached, 1)]]
    if reached <= 1:  # inside the first tier both models agree
        assert volume.exact_amount == graduated.exact_amount
    if prices_reached == sorted(prices_reached, reverse=True):  # discounts: volume ≤
        assert volume.exact_amount <= graduated.exact_amount
    if prices_reached == sorted(prices_reached):  # surcharges: volume ≥
        assert volume.exact_amount >= graduated.exact_amount
    if qty:
        assert volume.exact_amount == qty * volume.tiers[0].unit_price
        assert volume.unit_price == volume.tiers[0].unit_price


@hsettings(deadline=None)
@given(
    st.decimals(min_value="0.001", max_value=10**4, places=3),
    prices,
    quantities,
    st.decimals(min_value=0, max_value=10**4, places=1),
)
def test_package_rounds_up(size: Decimal, price: Decimal, qty: Decimal, included: Decimal) -> None:
    c = MetricPrice("m", "package", included, package_size=size, package_price=price).rate(
        qty, "USD"
    )
    assert c.packages is not None
    assert c.packages == c.packages.to_integral_value()
    assert (
        c.packages * size >= c.billable > (c.packages - 1) * size or c.billable == 0 == c.packages
    )
    assert c.exact_amount == c.packages * price


@hsettings(deadline=None)
@given(
    st.sampled_from(["per_unit", "graduated", "volume", "package"]),
    tier_lists(),
    prices,
    quantities,
    st.decimals(min_value=0, max_value=10**9, places=3),
    currencies,
)
def test_included_units_never_go_negative(
    model: str,
    tiers: tuple[Tier, ...],
    price: Decimal,
    qty: Decimal,
    included: Decimal,
    currency: str,
) -> None:
    mp = MetricPrice(
        "m",
        model,  # type: ignore[arg-type]
        included,
        unit_price=price,
        tiers=tiers,
        package_size=D(10),
        package_price=price,
    )
    c = mp.rate(qty, currency)
    assert c.billable >= 0 and c.exact_amount >= 0 and c.amount >= 0
    if qty <= included:
        assert c.amount == 0 and c.billable == 0
    if model != "volume":  # more free units never cost more (volume has cliffs)
        assert mp.rate(qty, currency, included=included + 1).exact_amount <= c.exact_amount


@hsettings(deadline=None)
@given(tier_lists(), quantities, prices)
def test_jpy_amounts_are_whole(tiers: tuple[Tier, ...], qty: Decimal, price: Decimal) -> None:
    for mp in (
        MetricPrice("m", "per_unit", unit_price=price),
        MetricPrice("m", "graduated", tiers=tiers),
        MetricPrice("m", "volume", tiers=tiers),
    ):
        c = mp.rate(qty, "JPY")
        assert c.amount == c.amount.to_integral_value()
        assert c.amount.as_tuple().exponent == 0
        assert abs(c.amount - c.exact_amount) <= D("0.5")


@hsettings(deadline=None)
@given(tier_lists(), quantities, quantities, currencies)
def test_late_usage_adds_up(
    tiers: tuple[Tier, ...], billed: Decimal, late: Decimal, currency: str
) -> None:
    for mp in (
        MetricPrice("m", "graduated", D(1000), tiers=tiers),
        MetricPrice("m", "volume", tiers=tiers),
        MetricPrice("m", "package", D(3), package_size=D(7), package_price=D("1.25")),
    ):
        extra = mp.rate_additional(billed, late, currency)
        on_time = mp.rate(billed + late, currency)
        assert mp.rate(billed, currency).amount + extra.amount == on_time.amount
        assert extra.quantity == late and extra.included + extra.billable == late
        if mp.model == "graduated":
            assert sum((t.amount for t in extra.tiers), D(0)) == extra.exact_amount
