"""pricing: the price book (loading, every validation error) and the arithmetic of each
price model, with golden JSON per model and property tests.

Goldens: ``tests/golden/pricing_*.json`` are written with ``jsonutil.dumps(indent=2)`` and
compared byte for byte. After an intended change, regenerate them with
``BILLING_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_pricing.py`` and review the diff.
"""

from __future__ import annotations

import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from billing_batch._core import jsonutil, money
from billing_batch._core.errors import InputError, PriceBookError
from billing_batch.config.settings import DEFAULT_METRICS, Settings, load_settings
from billing_batch.rating.prices import (
    MetricPrice,
    PriceBook,
    Tier,
    line_description,
    load_price_book,
    parse_price_book,
    read_price_book,
    tax,
    totals,
)

D = Decimal
GOLDEN = Path(__file__).parent / "golden"

TEST_BOOK = """
version = "test-1"
default_plan = "basic"
default_currency = "USD"
default_tax_rate = "0.10"

[plans.basic]
display_name = "Basic"
[plans.basic.prices.api_calls]
model = "per_unit"
unit_price = "0.01"
[plans.basic.prices.storage]
model = "per_unit"
unit_price = "0.25"

[plans.tiered]
display_name = "Tiered"
base_fee = "99.00"
minimum = "250.00"
[plans.tiered.prices.api_calls]
model = "graduated"
included = "1000"
tiers = [
    { up_to = "10000", unit_price = "0.01" },
    { up_to = "100000", unit_price = "0.005", flat_fee = "5.00" },
    { unit_price = "0.001" },
]
[plans.tiered.prices.contracts]
model = "volume"
tiers = [
    { up_to = "100", unit_price = "0.50" },
    { up_to = "1000", unit_price = "0.40", flat_fee = "10" },
    { unit_price = "0.25" },
]
[plans.tiered.prices.storage]
model = "package"
included = "5"
package_size = "10"
package_price = "2.00"

[plans.yen]
display_name = "Yen"
currency = "JPY"
base_fee = "15000"
[plans.yen.prices.api_calls]
model = "graduated"
tiers = [{ up_to = "1000", unit_price = "1.5" }, { unit_price = "0.75" }]
[plans.yen.prices.storage]
model = "per_unit"
unit_price = "35"

[workspaces.ws_jp]
plan = "yen"
currency = "JPY"
tax_rate = "0.10"
legal_name = "Example KK"
address = "1-1 Chiyoda\\nTokyo"
email = "ap@example.jp"
stripe_customer_id = "cus_jp"
default_payment_method = "pm_card_visa"
net_terms_days = 14

[workspaces.ws_exempt]
tax_rate = "0"
"""


@pytest.fixture(scope="module")
def book() -> PriceBook:
    return parse_price_book(TEST_BOOK, source="test.toml", metrics=DEFAULT_METRICS)


@pytest.fixture(scope="module")
def default_book() -> PriceBook:
    return read_price_book(metrics=DEFAULT_METRICS)


def check_golden(name: str, value: Any) -> None:
    text = jsonutil.dumps(value, indent=2) + "\n"
    path = GOLDEN / f"pricing_{name}.json"
    if os.environ.get("BILLING_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text, f"{path} differs (see module docstring)"


def cases(price: MetricPrice, currency: str, quantities: list[str]) -> list[dict[str, Any]]:
    return [
        {"quantity": D(q), "charge": price.rate(D(q), currency).to_detail()} for q in quantities
    ]


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


def test_default_book_plans(default_book: PriceBook) -> None:
    assert default_book.default_plan == "payg"
    assert default_book.default_net_terms_days == 30
    payg = default_book.plan("payg")
    assert payg.rate("kyc_checks", D(3)).amount == D("3.00")
    assert payg.rate("storage", D("10")).amount == D("2.50")
    growth = default_book.plan("growth")
    assert growth.base_fee > 0 and growth.minimum > 0
    assert {p.model for p in growth.prices.values()} == {"graduated", "volume", "package"}
    assert any(p.included for p in growth.prices.values())
    assert [p.name for p in default_book.plans_in("JPY")] == ["growth_jpy"]
    assert [p.name for p in default_book.plans_in("usd")] == ["growth", "payg"]
    for plan in default_book.plans.values():  # every plan prices every metric
        assert set(plan.prices) == set(DEFAULT_METRICS), plan.name


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


def test_digest_tracks_content_not_layout() -> None:
    a = parse_price_book(TEST_BOOK)
    b = parse_price_book("# a comment\n" + TEST_BOOK.replace('"0.01"', '"0.010"'))
    c = parse_price_book(TEST_BOOK.replace('unit_price = "0.25"', 'unit_price = "0.26"'))
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", a.digest)
    assert a.digest == b.digest  # same prices, written differently
    assert a.version == c.version and a.digest != c.digest  # a price changed, same version


def test_load_price_book_from_settings(tmp_path: Path, settings: Settings) -> None:
    assert load_price_book(settings).source == "<default>"
    path = tmp_path / "prices.toml"
    path.write_text(TEST_BOOK)
    custom = load_settings(env={"BILLING_HOME": str(tmp_path), "BILLING_PRICE_BOOK": str(path)})
    book = load_price_book(custom)
    assert (book.version, book.source) == ("test-1", str(path))
    path.write_text(TEST_BOOK.replace("[plans.basic.prices.storage]", "[plans.basic.prices.bw]"))
    with pytest.raises(
        PriceBookError, match=r"prices.toml: plans\.basic\.prices\.bw: unknown metric"
    ):
        load_price_book(custom)
    missing = load_settings(
        env={"BILLING_HOME": str(tmp_path), "BILLING_PRICE_BOOK": str(tmp_path / "nope.toml")}
    )
    with pytest.raises(PriceBookError, match="nope.toml: price book not found"):
        load_price_book(missing)


# --- every validation error ------------------------------------------------------------------

MINI = """
version = "v1"
default_plan = "p"
default_currency = "USD"
default_tax_rate = "0.10"
[plans.p]
display_name = "P"
[plans.p.prices.api_calls]
model = "per_unit"
unit_price = "0.01"
"""


def _swap(old: str, new: str) -> str:
    assert old in MINI
    return MINI.replace(old, new)


_PRICE = '[plans.p.prices.api_calls]\nmodel = "per_unit"\nunit_price = "0.01"\n'


def _price(body: str) -> str:
    return MINI.replace(_PRICE, "[plans.p.prices.api_calls]\n" + body)


def _top(line: str) -> str:
    return line + "\n" + MINI


def _tiers(tiers: str, model: str = "graduated") -> str:
    return _price(f'model = "{model}"\ntiers = [{tiers}]\n')


INVALID: list[tuple[str, str, str]] = [
    ("toml", "version = ", "invalid TOML"),
    ("no version", _swap('version = "v1"\n', ""), "version: required"),
    ("version type", _swap('"v1"', "1"), "version: expected a string"),
    ("version empty", _swap('"v1"', '" "'), "version: must not be empty"),
    ("unknown top key", MINI + "\nfoo = 1\n", "foo: unknown key"),
    ("no currency", _swap('default_currency = "USD"\n', ""), "default_currency: required"),
    ("bad currency", _swap('"USD"', '"US"'), "default_currency: not an ISO 4217"),
    ("lower currency", _swap('"USD"', '"usd"'), "default_currency: write currency codes"),
    ("float tax", _swap('"0.10"', "0.1"), "default_tax_rate: write decimals as strings"),
    ("negative tax", _swap('"0.10"', '"-0.1"'), "default_tax_rate: must not be negative"),
    ("tax above 1", _swap('"0.10"', '"10"'), "default_tax_rate: must be at most 1"),
    ("tax text", _swap('"0.10"', '"ten"'), "default_tax_rate: not a decimal number"),
    ("terms", _top("default_net_terms_days = -1"), "default_net_terms_days: must not be"),
    (
        "terms type",
        _top('default_net_terms_days = "30"'),
        "default_net_terms_days: expected a whole number",
    ),
    (
        "terms bool",
        _top("default_net_terms_days = true"),
        "default_net_terms_days: expected a whole number, got a boolean",
    ),
    ("no plans", MINI.split("[plans.p]")[0], "plans: required"),
    ("empty plans", MINI.split("[plans.p]")[0] + "[plans]\n", "plans: at least one plan"),
    (
        "plan not table",
        MINI.split("[plans.p]")[0] + "[plans]\np = 1\n",
        "plans.p: expected a table",
    ),
    ("no default plan", _swap('default_plan = "p"\n', ""), "default_plan: required"),
    (
        "unknown default plan",
        _swap('default_plan = "p"', 'default_plan = "q"'),
        "default_plan: unknown plan 'q'",
    ),
    (
        "default plan currency",
        _swap('display_name = "P"', 'display_name = "P"\ncurrency = "EUR"'),
        "default_plan: plan 'p' bills in EUR",
    ),
    (
        "plan key",
        _swap('display_name = "P"', 'display_name = "P"\nprice = "1"'),
        "plans.p.price: unknown key",
    ),
    (
        "display name",
        _swap('display_name = "P"', "display_name = 3"),
        "plans.p.display_name: expected a string",
    ),
    (
        "base fee float",
        _swap('display_name = "P"', 'display_name = "P"\nbase_fee = 9.99'),
        "plans.p.base_fee: write decimals as strings",
    ),
    (
        "base fee negative",
        _swap('display_name = "P"', 'display_name = "P"\nbase_fee = "-1"'),
        "plans.p.base_fee: must not be negative",
    ),
    (
        "base fee cents",
        _swap('display_name = "P"', 'display_name = "P"\nbase_fee = "9.999"'),
        "plans.p.base_fee: '9.999' is not a whole number of USD minor units",
    ),
    (
        "minimum text",
        _swap('display_name = "P"', 'display_name = "P"\nminimum = "lots"'),
        "plans.p.minimum: not a decimal number",
    ),
    (
        "prices not table",
        _swap(_PRICE, "").replace('display_name = "P"', 'display_name = "P"\nprices = 1'),
        "plans.p.prices: expected a table",
    ),
    ("no model", _price('unit_price = "0.01"\n'), "plans.p.prices.api_calls.model: required"),
    (
        "unknown model",
        _price('model = "flat"\n'),
        "plans.p.prices.api_calls.model: unknown model 'flat'",
    ),
    (
        "model key",
        _price('model = "per_unit"\nunit_price = "0.01"\ntiers = []\n'),
        "plans.p.prices.api_calls.tiers: unknown key",
    ),
    (
        "no unit price",
        _price('model = "per_unit"\n'),
        "plans.p.prices.api_calls.unit_price: required",
    ),
    (
        "unit price float",
        _price('model = "per_unit"\nunit_price = 0.01\n'),
        "plans.p.prices.api_calls.unit_price: write decimals as strings",
    ),
    (
        "unit price negative",
        _price('model = "per_unit"\nunit_price = "-0.01"\n'),
        "unit_price: must not be negative",
    ),
    (
        "included float",
        _price('model = "per_unit"\nunit_price = "0.01"\nincluded = 10.0\n'),
        "plans.p.prices.api_calls.included: write decimals as strings",
    ),
    (
        "included negative",
        _price('model = "per_unit"\nunit_price = "0.01"\nincluded = -10\n'),
        "plans.p.prices.api_calls.included: must not be negative",
    ),
    ("no tiers", _price('model = "volume"\n'), "plans.p.prices.api_calls.tiers: required"),
    ("empty tiers", _tiers(""), "plans.p.prices.api_calls.tiers: expected a non-empty array"),
    ("tier not table", _tiers('"1"'), r"plans.p.prices.api_calls.tiers\[0\]: expected a table"),
    ("tier key", _tiers('{ unit_price = "1", price = "2" }'), r"tiers\[0\].price: unknown key"),
    (
        "tier no up_to",
        _tiers('{ unit_price = "1" }, { unit_price = "2" }'),
        r"tiers\[0\].up_to: required \(only the last tier",
    ),
    (
        "last tier up_to",
        _tiers('{ up_to = "10", unit_price = "1" }'),
        r"tiers\[0\].up_to: the last tier is unbounded",
    ),
    (
        "tiers decrease",
        _tiers(
            '{ up_to = "10", unit_price = "1" }, '
            '{ up_to = "10", unit_price = "1" }, '
            '{ unit_price = "1" }'
        ),
        r"tiers\[1\].up_to: tiers must increase",
    ),
    (
        "tier up_to zero",
        _tiers('{ up_to = "0", unit_price = "1" }, { unit_price = "1" }', "volume"),
        r"tiers\[0\].up_to: must be greater than 0",
    ),
    (
        "tier no price",
        _tiers('{ up_to = "10" }, { unit_price = "1" }'),
        r"tiers\[0\].unit_price: required",
    ),
    (
        "tier flat negative",
        _tiers('{ unit_price = "1", flat_fee = "-5" }'),
        r"tiers\[0\].flat_fee: must not be negative",
    ),
    (
        "package size zero",
        _price('model = "package"\npackage_size = "0"\npackage_price = "1"\n'),
        "package_size: must be greater than 0",
    ),
    (
        "package no price",
        _price('model = "package"\npackage_size = "10"\n'),
        "package_price: required",
    ),
    (
        "unknown metric",
        MINI.replace("prices.api_calls", "prices.api_call"),
        "plans.p.prices.api_call: unknown metric",
    ),
    ("workspaces not table", _top("workspaces = 3"), "workspaces: expected a table"),
    (
        "workspace key",
        MINI + "[workspaces.ws_1]\nname = 'x'\n",
        "workspaces.ws_1.name: unknown key",
    ),
    (
        "workspace plan",
        MINI + "[workspaces.ws_1]\nplan = 'gold'\n",
        "workspaces.ws_1.plan: unknown plan 'gold'",
    ),
    (
        "workspace currency",
        MINI + "[workspaces.ws_1]\ncurrency = 'EUR'\n",
        "workspaces.ws_1.currency: EUR does not match plan 'p'",
    ),
    (
        "workspace tax float",
        MINI + "[workspaces.ws_1]\ntax_rate = 0.2\n",
        "workspaces.ws_1.tax_rate: write decimals as strings",
    ),
    (
        "workspace terms",
        MINI + "[workspaces.ws_1]\nnet_terms_days = -3\n",
        "workspaces.ws_1.net_terms_days: must not be negative",
    ),
    (
        "workspace name",
        MINI + "[workspaces.ws_1]\nlegal_name = 42\n",
        "workspaces.ws_1.legal_name: expected a string",
    ),
    (
        "workspace email",
        MINI + "[workspaces.ws_1]\nemail = ''\n",
        "workspaces.ws_1.email: must not be empty",
    ),
    (
        "workspace address",
        MINI + "[workspaces.ws_1]\naddress = ['a']\n",
        "workspaces.ws_1.address: expected a string",
    ),
]


@pytest.mark.parametrize(
    ("text", "message"), [(t, m) for _, t, m in INVALID], ids=[i for i, _, _ in INVALID]
)
def test_invalid_price_books(text: str, message: str) -> None:
    with pytest.raises(PriceBookError) as err:
        parse_price_book(text, source="book.toml", metrics=DEFAULT_METRICS)
    assert str(err.value).startswith("book.toml: "), str(err.value)
    assert re.search(message, str(err.value)), str(err.value)


def test_minimal_book_is_valid() -> None:
    book = parse_price_book(MINI, source="book.toml", metrics=DEFAULT_METRICS)
    assert book.plan("p").rate("api_calls", D(100)).amount == D("1.00")


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
