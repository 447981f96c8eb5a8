"""Prepaid credits (rating.credits, pure): draw order, amounts in USD, JPY and KWD (never
more than the total, never below zero), usability dates and expiry."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from billing_batch.rating.credits import Grant, applied_total, draw_order, drawdown, expired

D = Decimal
DAY = date(2024, 1, 31)


def grant(
    gid: str,
    balance: str,
    currency: str = "USD",
    *,
    priority: int = 0,
    effective: date = date(2024, 1, 1),
    expires: date | None = None,
) -> Grant:
    return Grant(gid, "ws_a", currency, D(balance), effective, expires, priority, D(balance))


@pytest.mark.parametrize(
    ("currency", "balances", "total", "expected"),
    [
        ("USD", ["30.00", "100.00"], "99.99", [("g0", "30.00"), ("g1", "69.99")]),
        ("USD", ["30.01"], "30.00", [("g0", "30.00")]),
        ("JPY", ["1500", "2000"], "3001", [("g0", "1500"), ("g1", "1501")]),
        ("JPY", ["1500"], "1499", [("g0", "1499")]),
        ("KWD", ["1.005", "0.250"], "1.111", [("g0", "1.005"), ("g1", "0.106")]),
        ("KWD", ["0.001"], "0.000", []),
    ],
)
def test_drawdown_pays_at_most_the_total_in_whole_minor_units(
    currency: str, balances: list[str], total: str, expected: list[tuple[str, str]]
) -> None:
    grants = [grant(f"g{i}", b, currency, priority=i) for i, b in enumerate(balances)]
    draws = drawdown(grants, D(total), currency, DAY)
    assert [(d.grant_id, d.amount) for d in draws] == [(g, D(a)) for g, a in expected]
    assert applied_total(draws) <= max(D(total), D(0))
    for d in draws:  # the exponent of the currency: no rounding was needed
        assert d.amount == d.amount.quantize(D(1).scaleb(-{"USD": 2, "JPY": 0, "KWD": 3}[currency]))


def test_a_negative_total_draws_nothing() -> None:
    assert drawdown([grant("g", "10.00")], D("-5.00"), "USD", DAY) == []


def test_draw_order_priority_then_expiry_then_start_then_id() -> None:
    grants = [
        grant("late", "1", priority=1),
        grant("never", "1"),
        grant("soon", "1", expires=date(2024, 2, 1)),
        grant("sooner", "1", expires=date(2024, 1, 31)),
        grant("b_new", "1", expires=date(2024, 1, 31), effective=date(2024, 1, 2)),
        grant("other_currency", "1", "EUR"),
        grant("not_yet", "1", effective=date(2024, 2, 1)),
        grant("gone", "1", expires=date(2024, 1, 30)),
        grant("empty", "0"),
    ]
    assert [g.id for g in draw_order(grants, "USD", DAY)] == [
        "sooner",
        "b_new",
        "soon",
        "never",
        "late",
    ]


def test_usable_through_the_expiry_day_and_expired_after_it() -> None:
    g = grant("g", "5.00", expires=DAY)
    assert g.usable_on(DAY) and not g.usable_on(date(2024, 2, 1))
    assert expired([g], DAY) == []
    assert expired([g], date(2024, 2, 1)) == [g]
    spent = Grant("s", "ws_a", "USD", D(5), DAY, DAY, 0, D(0))
    assert expired([spent], date(2024, 3, 1)) == []
