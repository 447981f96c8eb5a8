"""config.price_book: reading a price book (file, settings, the built-in default), its
digest, and every validation error (each names the file and the key)."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from billing_batch._core.errors import PriceBookError
from billing_batch.config.metrics import DEFAULT_METRICS
from billing_batch.config.price_book import load_price_book, parse_price_book, read_price_book
from billing_batch.config.settings import Settings, load_settings
from tests.rating.support import TEST_BOOK

D = Decimal


def test_default_book_plans() -> None:
    default_book = read_price_book(metrics=DEFAULT_METRICS)
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
