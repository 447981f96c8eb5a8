"""Rating invoices: late usage carried by the next invoice (and explained), tiers, whole
yen; and subscriptions priced day by day (issue 5): prorated fees and minimums, plan
changes mid-period, cancellation, anchor days."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from billing_batch.config.price_book import default_price_book_text
from billing_batch.config.settings import Settings
from billing_batch.invoicing.explain import explain_invoice
from billing_batch.invoicing.service import (
    create_invoice,
    finalize_invoice,
    get_invoice,
    plan_closed_periods,
)
from billing_batch.subscriptions.service import (
    cancel_subscription,
    change_subscription,
    create_subscription,
)
from tests.invoicing.helpers import NOW, api_calls, load, seed_usage


def test_late_usage_goes_on_the_next_invoice(settings: Settings, tmp_path: Path) -> None:
    load(settings, tmp_path, api_calls("ws_l", 10, "2024-01-10"))
    jan = finalize_invoice(
        settings,
        create_invoice(settings, "ws_l", date(2024, 1, 1), date(2024, 1, 31), now=NOW).id,
        now=NOW,
        render=False,
    )
    assert jan.total == Decimal("110.00")
    # January events arrive after January was invoiced, then February usage
    load(settings, tmp_path, api_calls("ws_l", 3, "2024-01-25", prefix="late"))
    load(settings, tmp_path, api_calls("ws_l", 2, "2024-02-05"))
    feb_now = datetime(2024, 3, 1, tzinfo=UTC)
    feb = create_invoice(settings, "ws_l", date(2024, 2, 1), date(2024, 2, 29), now=feb_now)
    lines = [(x.kind, x.description, x.amount) for x in feb.lines]
    assert lines == [
        ("usage", "API Calls (2,000)", Decimal("20.00")),
        ("late_usage", "Late usage for 2024-01: API Calls (3,000)", Decimal("30.00")),
    ]
    assert get_invoice(settings, jan.id).total == Decimal("110.00")  # January never changes
    feb = finalize_invoice(settings, feb.id, now=feb_now, render=False)
    # once billed, the late usage is not billed again
    load(settings, tmp_path, api_calls("ws_l", 1, "2024-03-05"))
    mar = create_invoice(settings, "ws_l", date(2024, 3, 1), date(2024, 3, 31), now=feb_now)
    assert [x.kind for x in mar.lines] == ["usage"]
    # and it is explained per line, recomputation agreeing
    ex = explain_invoice(settings, feb.id)
    assert ex["recomputedAtSnapshot"]["agrees"] is True
    assert ex["lines"][0]["daily"] == [{"date": date(2024, 2, 5), "quantity": Decimal(2000)}]


def test_late_usage_on_tiers_is_the_difference(settings: Settings, tmp_path: Path) -> None:
    create_subscription(settings, "ws_t", "growth", date(2024, 1, 1), now=NOW)
    load(settings, tmp_path, api_calls("ws_t", 150, "2024-01-10"))  # 150,000 calls
    jan = finalize_invoice(
        settings,
        create_invoice(settings, "ws_t", date(2024, 1, 1), date(2024, 1, 31), now=NOW).id,
        now=NOW,
        render=False,
    )
    usage = next(x for x in jan.lines if x.kind == "usage")
    assert usage.amount == Decimal("400.00")  # (150,000 - 100,000 included) x 0.008
    load(settings, tmp_path, api_calls("ws_t", 1000, "2024-01-20", prefix="late"))  # +1M
    feb = create_invoice(settings, "ws_t", date(2024, 2, 1), date(2024, 2, 29), now=NOW)
    late = next(x for x in feb.lines if x.kind == "late_usage")
    # 1,150,000 - 100,000 included = 1,050,000 billable: 1,000,000 x 0.008 + 50,000 x 0.005
    # = 8,250; minus the 400 already billed
    assert late.amount == Decimal("7850.00") and late.quantity == Decimal(1_000_000)


def _jpy_settings(settings: Settings, tmp_path: Path) -> Settings:
    book = tmp_path / "prices.toml"
    book.write_text(
        default_price_book_text()
        + '\n[workspaces.ws_jp]\nplan = "growth_jpy"\ntax_rate = "0.10"\nlegal_name = "KK"\n'
    )
    return settings.model_copy(update={"price_book": str(book)})


def test_jpy_invoice_in_whole_yen(settings: Settings, tmp_path: Path) -> None:
    s = _jpy_settings(settings, tmp_path)
    load(
        s,
        tmp_path,
        [
            *api_calls("ws_jp", 100, "2024-01-10", qty=1501),
            *api_calls("ws_jp", 1, "2024-01-11", qty=3),
        ],
    )
    create_subscription(s, "ws_jp", "growth_jpy", date(2024, 1, 1), now=NOW)
    inv = create_invoice(s, "ws_jp", date(2024, 1, 1), date(2024, 1, 31), now=NOW)
    assert inv.currency == "JPY"
    amounts = {x.kind: x.amount for x in inv.lines}
    # 150,103 calls - 100,000 included = 50,103 x 1.2 = 60,123.6 -> 60,124 (HALF_UP)
    assert amounts["usage"] == Decimal(60124) and amounts["base_fee"] == Decimal(15000)
    assert inv.tax == Decimal(7512)  # 75,124 x 10% = 7,512.4 -> 7,512
    assert all(x.amount == x.amount.to_integral_value() for x in inv.lines)
    assert inv.total_minor == 82636
    with pytest.raises(Exception, match="bills in USD"):
        change_subscription(s, "ws_jp", "growth", date(2024, 2, 1))


# --- subscriptions (issue 5) ------------------------------------------------------------
@pytest.mark.parametrize(
    ("start", "end", "sub_start", "expected_fee"),
    [
        (date(2023, 2, 1), date(2023, 2, 28), date(2023, 2, 15), Decimal("49.50")),  # 14/28
        (date(2024, 2, 1), date(2024, 2, 29), date(2024, 2, 15), Decimal("51.21")),  # 15/29
        (date(2024, 4, 1), date(2024, 4, 30), date(2024, 4, 16), Decimal("49.50")),  # 15/30
        (date(2024, 1, 1), date(2024, 1, 31), date(2024, 1, 10), Decimal("70.26")),  # 22/31
        (date(2024, 1, 1), date(2024, 1, 31), date(2024, 1, 1), Decimal("99.00")),  # whole
    ],
)
def test_base_fee_prorated_by_days(
    settings: Settings, start: date, end: date, sub_start: date, expected_fee: Decimal
) -> None:
    create_subscription(settings, "ws_p", "growth", sub_start, now=NOW)
    inv = create_invoice(settings, "ws_p", start, end, now=NOW)
    fee = next(x for x in inv.lines if x.kind == "base_fee")
    assert fee.amount == expected_fee
    days = (end - sub_start).days + 1
    nominal = (end - start).days + 1
    if days != nominal:
        assert f"prorated {days}/{nominal} days" in fee.description
    # the minimum commitment is prorated the same way (no usage: all top-up)
    top = next(x for x in inv.lines if x.kind == "minimum")
    assert top.amount == (Decimal(250) * days / nominal).quantize(Decimal("0.01"), "ROUND_HALF_UP")


def test_start_mid_month_prices_each_day_by_its_plan(settings: Settings, tmp_path: Path) -> None:
    load(
        settings,
        tmp_path,
        api_calls("ws_m", 5, "2024-01-05") + api_calls("ws_m", 300, "2024-01-20"),
    )
    create_subscription(settings, "ws_m", "growth", date(2024, 1, 10), now=NOW)
    inv = create_invoice(settings, "ws_m", date(2024, 1, 1), date(2024, 1, 31), now=NOW)
    by = [(x.kind, x.plan, x.quantity, x.amount) for x in inv.lines]
    assert ("usage", "payg", Decimal(5000), Decimal("50.00")) in by
    # 300,000 on growth for 22 of 31 days: included 100,000 x 22/31 = 70,967.74...
    growth = next(x for x in inv.lines if x.kind == "usage" and x.plan == "growth")
    assert growth.quantity == Decimal(300000)
    assert growth.amount == Decimal("1832.26")  # (300,000 - 70,967.742) x 0.008
    assert "(Growth, Jan 10–Jan 31)" in growth.description


@pytest.mark.parametrize("direction", ["upgrade", "downgrade"])
def test_plan_change_mid_month_splits_usage(
    settings: Settings, tmp_path: Path, direction: str
) -> None:
    first, second = ("payg", "growth") if direction == "upgrade" else ("growth", "payg")
    create_subscription(settings, "ws_u", first, date(2024, 1, 1), now=NOW)
    change_subscription(settings, "ws_u", second, date(2024, 1, 16), now=NOW)
    load(
        settings,
        tmp_path,
        api_calls("ws_u", 10, "2024-01-10") + api_calls("ws_u", 20, "2024-01-20"),
    )
    inv = create_invoice(settings, "ws_u", date(2024, 1, 1), date(2024, 1, 31), now=NOW)
    usage = [
        (x.plan, x.quantity, x.period_start, x.period_end) for x in inv.lines if x.kind == "usage"
    ]
    assert usage == [
        (first, Decimal(10000), date(2024, 1, 1), date(2024, 1, 15)),
        (second, Decimal(20000), date(2024, 1, 16), date(2024, 1, 31)),
    ]
    fee = next(x for x in inv.lines if x.kind == "base_fee")
    days = 15 if first == "growth" else 16
    assert fee.plan == "growth" and fee.amount == (Decimal(99) * days / 31).quantize(
        Decimal("0.01"), "ROUND_HALF_UP"
    )


def test_cancellation_produces_the_final_invoice(settings: Settings, tmp_path: Path) -> None:
    create_subscription(settings, "ws_x", "growth", date(2024, 1, 1), now=NOW)
    cancel_subscription(settings, "ws_x", date(2024, 1, 20), now=NOW)
    load(
        settings,
        tmp_path,
        api_calls("ws_x", 200, "2024-01-05") + api_calls("ws_x", 1, "2024-01-25"),
    )
    todo = plan_closed_periods(settings, date(2024, 1, 21))
    periods = [(i.workspace_id, i.period.start, i.period.end, i.period.kind) for i in todo]
    assert (("ws_x", date(2024, 1, 1), date(2024, 1, 19), "final")) in periods
    inv = create_invoice(settings, "ws_x", date(2024, 1, 1), date(2024, 1, 19), now=NOW)
    assert inv.kind == "final"
    fee = next(x for x in inv.lines if x.kind == "base_fee")
    assert fee.amount == Decimal("60.68")  # 99 x 19/31
    # the days after the cancellation are pay-as-you-go, on the next calendar period
    rest = create_invoice(settings, "ws_x", date(2024, 1, 20), date(2024, 1, 31), now=NOW)
    assert [(x.plan, x.amount) for x in rest.lines] == [("payg", Decimal("10.00"))]


def test_anchor_day_15(settings: Settings, tmp_path: Path) -> None:
    create_subscription(settings, "ws_15", "growth", date(2024, 1, 15), anchor_day=15, now=NOW)
    load(settings, tmp_path, api_calls("ws_15", 1, "2024-02-01"))
    todo = [
        (i.period.start, i.period.end) for i in plan_closed_periods(settings, date(2024, 2, 15))
    ]
    # periods start at the first activity (the subscription's start)
    assert todo == [(date(2024, 1, 15), date(2024, 2, 14))]
    inv = create_invoice(settings, "ws_15", date(2024, 1, 15), date(2024, 2, 14), now=NOW)
    assert next(x for x in inv.lines if x.kind == "base_fee").amount == Decimal("99.00")


def test_seed_invoice_unchanged_without_subscription(settings: Settings, tmp_path: Path) -> None:
    create_subscription(settings, "ws_other", "growth", date(2024, 1, 1), now=NOW)
    load(settings, tmp_path, seed_usage())
    inv = create_invoice(settings, "ws_123", date(2024, 1, 1), date(2024, 1, 31), now=NOW)
    assert (inv.subtotal, inv.tax, inv.total) == (Decimal(500), Decimal(50), Decimal(550))
