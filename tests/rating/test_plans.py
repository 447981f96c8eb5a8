"""rating.plans: plans, accounts and the price book's model; tax and totals. The seed's
invoice priced with the built-in book (golden)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from billing_batch._core import money
from billing_batch._core.errors import PriceBookError
from billing_batch.rating.plans import PriceBook, line_description, tax, totals
from tests.rating.support import check_golden

D = Decimal
currencies = st.sampled_from(["USD", "JPY", "KWD"])


# --- the seed --------------------------------------------------------------------------


def test_seed_invoice_with_the_default_book(default_book: PriceBook) -> None:
    account = default_book.account("ws_123")
    assert (account.plan, account.currency, account.tax_rate) == ("payg", "USD", D("0.10"))
    plan = default_book.plan(account.plan)
    calls = plan.rate("api_calls", D(45000))
    contracts = plan.rate("contracts", D(100))
    t = totals([calls.amount, contracts.amount], account.tax_rate, account.currency)
    assert (calls.amount, contracts.amount) == (D(450), D(50))
    assert (t.subtotal, t.tax, t.total) == (D(500), D(50), D(550))
    assert calls.explain() == ["45,000 × 0.01 = 450.00"]
    assert contracts.explain() == ["100 × 0.50 = 50.00"]
    assert line_description("API Calls", calls.quantity) == "API Calls (45,000)"
    assert line_description("Contracts", contracts.quantity) == "Contracts (100)"
    assert plan.base_fee == 0 and plan.minimum_top_up(t.subtotal) == 0
    check_golden(
        "seed",
        {
            "priceBookVersion": default_book.version,
            "lineItems": [
                {"description": "API Calls (45,000)", **calls.to_detail()},
                {"description": "Contracts (100)", **contracts.to_detail()},
            ],
            "subtotal": t.subtotal,
            "tax": t.tax,
            "total": t.total,
        },
    )


def test_tax_and_totals() -> None:
    assert tax(D("500.00"), D("0.10"), "USD") == D("50.00")
    assert tax(D("0.05"), D("0.10"), "USD") == D("0.01")  # 0.005 → 0.01, half up
    assert tax(D("1234"), D("0.075"), "JPY") == D(93)  # 92.55 → 93
    t = totals([D("0.10"), D("0.15")], D("0.19"), "EUR")
    assert (t.subtotal, t.tax, t.total) == (D("0.25"), D("0.05"), D("0.30"))  # 0.0475 → 0.05


def test_minimum_top_up(book: PriceBook) -> None:
    plan = book.plan("tiered")
    assert plan.minimum_top_up(D("100.00")) == D("150.00")
    assert plan.minimum_top_up(D("300.00")) == 0
    assert plan.minimum_top_up(D("100.00"), minimum=D("125.00")) == D("25.00")


def test_accounts(book: PriceBook) -> None:
    jp = book.account("ws_jp")
    assert (jp.plan, jp.currency, jp.tax_rate, jp.net_terms_days) == ("yen", "JPY", D("0.1"), 14)
    assert (jp.legal_name, jp.address, jp.email) == (
        "Example KK",
        "1-1 Chiyoda\nTokyo",
        "ap@example.jp",
    )
    assert (jp.stripe_customer_id, jp.default_payment_method) == ("cus_jp", "pm_card_visa")
    assert jp.listed
    exempt = book.account("ws_exempt")  # listed, everything else defaulted
    assert (exempt.plan, exempt.tax_rate, exempt.legal_name) == ("basic", 0, "ws_exempt")
    unknown = book.account("ws_new")
    assert not unknown.listed
    assert (unknown.plan, unknown.currency, unknown.tax_rate) == ("basic", "USD", D("0.10"))
    assert (unknown.net_terms_days, unknown.email, unknown.stripe_customer_id) == (30, None, None)


def test_unknown_plan_and_metric(book: PriceBook) -> None:
    with pytest.raises(PriceBookError, match="test.toml: unknown plan 'gold'"):
        book.plan("gold")
    with pytest.raises(PriceBookError, match="plan 'basic' has no price for metric 'contracts'"):
        book.plan("basic").price("contracts")


@hsettings(deadline=None)
@given(
    st.lists(st.decimals(min_value=0, max_value=10**6, places=2), max_size=8),
    st.decimals(min_value=0, max_value=1, places=4),
    currencies,
)
def test_totals(lines: list[Decimal], rate: Decimal, currency: str) -> None:
    rounded = [money.quantize(x, currency) for x in lines]
    t = totals(rounded, rate, currency)
    assert t.subtotal == sum(rounded, D(0))
    assert t.tax == money.quantize(t.subtotal * rate, currency)
    assert t.total == t.subtotal + t.tax


def test_a_negative_billed_difference_is_rated_by_amounts(default_book: PriceBook) -> None:
    """Late readings can lower a gauge: a late line then bills a negative difference. If the
    period's first invoice is voided, the ledger holds only that negative difference; the
    period is rated again as "costs now minus billed" (no price of a negative quantity)."""
    from datetime import date

    from billing_batch.config.metrics import DEFAULT_METRICS
    from billing_batch.periods import Period, PlanSpan
    from billing_batch.rating import Billed, SegmentState, rate_period
    from billing_batch.rating.period import BilledUsage

    period = Period(date(2024, 4, 1), date(2024, 4, 30), date(2024, 4, 1), date(2024, 4, 30))
    span = PlanSpan(period.start, period.end, "payg", None)
    billed = Billed(plan="payg", usage={"storage": BilledUsage(D("-0.935"), D("-0.23"))})
    segment = SegmentState(span, {"storage": D("2.5")}, billed)
    rated = rate_period(
        period, [segment], book=default_book, metrics=DEFAULT_METRICS, currency="USD", late=True
    )
    (line,) = rated.lines
    now = default_book.plan("payg").price("storage").rate(D("2.5"), "USD").amount
    assert line.quantity == D("2.5") - D("-0.935")
    assert line.amount == now - D("-0.23")
    assert line.detail["billedAmount"] == D("-0.23")
