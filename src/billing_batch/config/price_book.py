"""Reading and validating a price book: TOML text → :class:`~billing_batch.rating.plans.PriceBook`.

A price book is a versioned TOML file (format: ``docs/pricing.md``; the built-in default
is ``default_price_book.toml`` beside this module, the seed's prices). Every problem is a
:class:`PriceBookError` naming the file and the key (``prices.toml: plans.growth.prices.
api_calls.tiers[1].up_to: tiers must increase ...``); unknown keys are errors, TOML floats
are refused (decimals are written as strings), and a price for a metric the settings'
catalogue does not define is refused.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .._core import money
from .._core.errors import InputError, PriceBookError
from ..rating.discounts import Discount, DiscountKind
from ..rating.plans import Account, Plan, PriceBook, book_digest
from ..rating.prices import PRICE_MODELS, MetricPrice, PriceModel, Tier

if TYPE_CHECKING:
    from .settings import Settings

#: Name of the built-in price book inside this package.
DEFAULT_PRICE_BOOK = "default_price_book.toml"

ZERO = Decimal(0)
ONE = Decimal(1)

_TOP_KEYS = {
    "version",
    "description",
    "default_plan",
    "default_currency",
    "default_tax_rate",
    "default_net_terms_days",
    "plans",
    "workspaces",
}
_PLAN_KEYS = {"display_name", "currency", "base_fee", "minimum", "prices"}
_PRICE_KEYS: dict[str, set[str]] = {
    "per_unit": {"model", "included", "unit_price"},
    "graduated": {"model", "included", "tiers"},
    "volume": {"model", "included", "tiers"},
    "package": {"model", "included", "package_size", "package_price"},
}
_TIER_KEYS = {"up_to", "unit_price", "flat_fee"}
_WORKSPACE_KEYS = {
    "plan",
    "currency",
    "tax_rate",
    "legal_name",
    "address",
    "email",
    "stripe_customer_id",
    "default_payment_method",
    "net_terms_days",
    "discounts",
}
_DISCOUNT_KEYS = {"percent", "amount", "metrics", "start", "periods", "description"}


class _Reader:
    """Validation helpers that name the file and the key of every problem."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, key: str, message: str) -> PriceBookError:
        return PriceBookError(f"{self.source}: {key}: {message}")

    def table(self, value: object, key: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(key, f"expected a table, got {_kind(value)}")
        return value

    def keys(self, table: Mapping[str, Any], allowed: set[str], key: str) -> None:
        unknown = sorted(set(table) - allowed)
        if unknown:
            where = f"{key}." if key else ""
            raise self.error(
                f"{where}{unknown[0]}",
                f"unknown key (allowed: {', '.join(sorted(allowed))})",
            )

    def required(self, table: Mapping[str, Any], name: str, key: str) -> Any:
        if name not in table:
            raise self.error(f"{key}.{name}" if key else name, "required")
        return table[name]

    def string(self, value: object, key: str, *, empty: bool = False) -> str:
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {_kind(value)}")
        if not empty and not value.strip():
            raise self.error(key, "must not be empty")
        return value

    def opt_string(self, table: Mapping[str, Any], name: str, key: str) -> str | None:
        return self.string(table[name], f"{key}.{name}") if name in table else None

    def decimal(
        self, value: object, key: str, *, positive: bool = False, upper: Decimal | None = None
    ) -> Decimal:
        try:
            d = money.parse_decimal(value, what=key)
        except InputError as exc:
            # parse_decimal's message already starts with the key.
            raise PriceBookError(f"{self.source}: {exc.message}") from None
        if positive and d <= 0:
            raise self.error(key, f"must be greater than 0, got {value!r}")
        if d < 0:
            raise self.error(key, f"must not be negative, got {value!r}")
        if upper is not None and d > upper:
            raise self.error(key, f"must be at most {upper}, got {value!r}")
        return d

    def money_amount(self, value: object, key: str, currency: str) -> Decimal:
        d = self.decimal(value, key)
        if money.quantize(d, currency) != d:
            raise self.error(
                key,
                f"{value!r} is not a whole number of {currency} minor units "
                f"({money.minor_units(currency)} decimals)",
            )
        return d

    def currency(self, value: object, key: str) -> str:
        code = self.string(value, key)
        try:
            money.minor_units(code)
        except InputError:
            raise self.error(key, f"not an ISO 4217 currency code: {value!r}") from None
        if code != code.upper():
            raise self.error(key, f"write currency codes in capitals: {code.upper()!r}")
        return code

    def integer(self, value: object, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected a whole number, got {_kind(value)}")
        if value < 0:
            raise self.error(key, f"must not be negative, got {value}")
        return value


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, float):
        return f"a float ({value!r})"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"{type(value).__name__} {value!r}"


def _parse_price(r: _Reader, metric: str, data: object, key: str) -> MetricPrice:
    table = r.table(data, key)
    model = r.string(r.required(table, "model", key), f"{key}.model")
    if model not in _PRICE_KEYS:
        raise r.error(
            f"{key}.model", f"unknown model {model!r} (models: {', '.join(PRICE_MODELS)})"
        )
    r.keys(table, _PRICE_KEYS[model], key)
    included = r.decimal(table.get("included", 0), f"{key}.included")
    if model == "per_unit":
        unit_price = r.decimal(r.required(table, "unit_price", key), f"{key}.unit_price")
        return MetricPrice(metric, "per_unit", included, unit_price=unit_price)
    if model == "package":
        size = r.decimal(
            r.required(table, "package_size", key), f"{key}.package_size", positive=True
        )
        price = r.decimal(r.required(table, "package_price", key), f"{key}.package_price")
        return MetricPrice(metric, "package", included, package_size=size, package_price=price)
    tiers = _parse_tiers(r, r.required(table, "tiers", key), key)
    kind: PriceModel = "graduated" if model == "graduated" else "volume"
    return MetricPrice(metric, kind, included, tiers=tiers)


def _parse_tiers(r: _Reader, raw_tiers: object, key: str) -> tuple[Tier, ...]:
    """Tiers with increasing bounds, the last one unbounded."""
    if not isinstance(raw_tiers, list) or not raw_tiers:
        raise r.error(f"{key}.tiers", "expected a non-empty array of tables")
    tiers: list[Tier] = []
    previous = ZERO
    for i, raw in enumerate(raw_tiers):
        tkey = f"{key}.tiers[{i}]"
        tier = r.table(raw, tkey)
        r.keys(tier, _TIER_KEYS, tkey)
        last = i == len(raw_tiers) - 1
        up_to: Decimal | None = None
        if "up_to" in tier:
            if last:
                raise r.error(f"{tkey}.up_to", "the last tier is unbounded: leave out its up_to")
            up_to = r.decimal(tier["up_to"], f"{tkey}.up_to", positive=True)
            if up_to <= previous:
                raise r.error(
                    f"{tkey}.up_to",
                    f"tiers must increase: {up_to} is not above the previous up_to {previous}",
                )
            previous = up_to
        elif not last:
            raise r.error(f"{tkey}.up_to", "required (only the last tier is unbounded)")
        unit_price = r.decimal(r.required(tier, "unit_price", tkey), f"{tkey}.unit_price")
        flat_fee = r.decimal(tier.get("flat_fee", 0), f"{tkey}.flat_fee")
        tiers.append(Tier(up_to, unit_price, flat_fee))
    return tuple(tiers)


def _parse_plan(
    r: _Reader,
    name: str,
    data: object,
    default_currency: str,
    metrics: Iterable[str] | None,
) -> Plan:
    key = f"plans.{name}"
    table = r.table(data, key)
    r.keys(table, _PLAN_KEYS, key)
    display = r.opt_string(table, "display_name", key) or name
    currency = (
        r.currency(table["currency"], f"{key}.currency")
        if "currency" in table
        else default_currency
    )
    base_fee = r.money_amount(table.get("base_fee", 0), f"{key}.base_fee", currency)
    minimum = r.money_amount(table.get("minimum", 0), f"{key}.minimum", currency)
    raw_prices = r.table(table.get("prices", {}), f"{key}.prices")
    known = set(metrics) if metrics is not None else None
    prices: dict[str, MetricPrice] = {}
    for metric, raw in raw_prices.items():
        pkey = f"{key}.prices.{metric}"
        if known is not None and metric not in known:
            raise r.error(pkey, f"unknown metric (metrics: {', '.join(sorted(known))})")
        prices[metric] = _parse_price(r, metric, raw, pkey)
    return Plan(
        name=name,
        display_name=display,
        currency=currency,
        base_fee=base_fee,
        minimum=minimum,
        prices=MappingProxyType(prices),
    )


def _parse_workspace(
    r: _Reader,
    workspace_id: str,
    data: object,
    plans: Mapping[str, Plan],
    default_plan: str,
    default_tax_rate: Decimal,
    default_net_terms: int,
) -> Account:
    key = f"workspaces.{workspace_id}"
    table = r.table(data, key)
    r.keys(table, _WORKSPACE_KEYS, key)
    plan_name = r.string(table.get("plan", default_plan), f"{key}.plan")
    if plan_name not in plans:
        raise r.error(
            f"{key}.plan", f"unknown plan {plan_name!r} (plans: {', '.join(sorted(plans))})"
        )
    plan = plans[plan_name]
    if "currency" in table:
        currency = r.currency(table["currency"], f"{key}.currency")
        if currency != plan.currency:
            raise r.error(
                f"{key}.currency",
                f"{currency} does not match plan {plan_name!r}, which bills in {plan.currency} "
                "(a plan has one currency: give the workspace a plan in its currency)",
            )
    tax_rate = (
        r.decimal(table["tax_rate"], f"{key}.tax_rate", upper=ONE)
        if "tax_rate" in table
        else default_tax_rate
    )
    net_terms = (
        r.integer(table["net_terms_days"], f"{key}.net_terms_days")
        if "net_terms_days" in table
        else default_net_terms
    )
    address = table.get("address", "")
    discounts = _parse_discounts(r, table.get("discounts", {}), f"{key}.discounts", plan, plans)
    return Account(
        workspace_id=workspace_id,
        plan=plan_name,
        currency=plan.currency,
        tax_rate=tax_rate,
        legal_name=r.opt_string(table, "legal_name", key) or workspace_id,
        address=r.string(address, f"{key}.address", empty=True),
        email=r.opt_string(table, "email", key),
        stripe_customer_id=r.opt_string(table, "stripe_customer_id", key),
        default_payment_method=r.opt_string(table, "default_payment_method", key),
        net_terms_days=net_terms,
        discounts=discounts,
    )


def _parse_date(r: _Reader, value: object, key: str) -> date:
    if isinstance(value, datetime):
        raise r.error(key, f"expected a date (2024-01-01), got a date-time {value.isoformat()}")
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(r.string(value, key))
    except ValueError:
        raise r.error(key, f"expected a date (2024-01-01), got {value!r}") from None


def _parse_discount(
    r: _Reader, name: str, data: object, key: str, currency: str, metrics: set[str]
) -> Discount:
    """One ``[workspaces.<id>.discounts.<name>]`` table (docs/pricing.md "Discounts")."""
    table = r.table(data, key)
    r.keys(table, _DISCOUNT_KEYS, key)
    if ("percent" in table) == ("amount" in table):
        raise r.error(key, "give exactly one of percent or amount")
    if "percent" in table:
        value = r.decimal(table["percent"], f"{key}.percent", positive=True, upper=Decimal(100))
    else:
        value = r.money_amount(table["amount"], f"{key}.amount", currency)
        if not value:
            raise r.error(f"{key}.amount", "must be greater than 0")
    raw_metrics = table.get("metrics", [])
    if not isinstance(raw_metrics, list):
        raise r.error(
            f"{key}.metrics", f"expected an array of metric names, got {_kind(raw_metrics)}"
        )
    names = tuple(r.string(m, f"{key}.metrics[{i}]") for i, m in enumerate(raw_metrics))
    for i, m in enumerate(names):
        if m not in metrics:
            known = ", ".join(sorted(metrics)) or "none"
            raise r.error(f"{key}.metrics[{i}]", f"the plans price no metric {m!r} ({known})")
    start = _parse_date(r, table["start"], f"{key}.start") if "start" in table else None
    periods = r.integer(table["periods"], f"{key}.periods") if "periods" in table else None
    if periods is not None and (start is None or periods == 0):
        raise r.error(f"{key}.periods", "needs a start date and at least 1 period")
    description = r.opt_string(table, "description", key) or ""
    kind: DiscountKind = "percent" if "percent" in table else "amount"
    return Discount(name, kind, value, names, start, periods, description)


def _parse_discounts(
    r: _Reader, data: object, key: str, plan: Plan, plans: Mapping[str, Plan]
) -> tuple[Discount, ...]:
    table = r.table(data, key)
    priced = {m for p in plans.values() if p.currency == plan.currency for m in p.prices}
    return tuple(
        _parse_discount(r, name, raw, f"{key}.{name}", plan.currency, priced)
        for name, raw in sorted(table.items())
    )


def parse_price_book(
    data: Mapping[str, Any] | str,
    *,
    source: str = "<string>",
    metrics: Iterable[str] | None = None,
) -> PriceBook:
    """Validate a price book (TOML text or its parsed tables). ``metrics``: the metric
    catalogue; a price for any other metric is an error. Raise PriceBookError naming
    ``source`` and the key of the first problem."""
    r = _Reader(source)
    if isinstance(data, str):
        try:
            data = tomllib.loads(data)
        except tomllib.TOMLDecodeError as exc:
            raise PriceBookError(f"{source}: invalid TOML: {exc}") from None
    top = r.table(data, "(top level)")
    r.keys(top, _TOP_KEYS, "")
    version = r.string(r.required(top, "version", ""), "version")
    if "description" in top:
        r.string(top["description"], "description", empty=True)
    default_currency = r.currency(r.required(top, "default_currency", ""), "default_currency")
    default_tax_rate = r.decimal(top.get("default_tax_rate", 0), "default_tax_rate", upper=ONE)
    default_net_terms = r.integer(top.get("default_net_terms_days", 30), "default_net_terms_days")
    plans = _parse_plans(r, top, default_currency, metrics)
    default_plan = _default_plan(r, top, plans, default_currency)
    raw_ws = r.table(top.get("workspaces", {}), "workspaces")
    workspaces = {
        ws: _parse_workspace(r, ws, raw, plans, default_plan, default_tax_rate, default_net_terms)
        for ws, raw in raw_ws.items()
    }
    book = PriceBook(
        version=version,
        digest="",
        default_plan=default_plan,
        default_currency=default_currency,
        default_tax_rate=default_tax_rate,
        default_net_terms_days=default_net_terms,
        plans=MappingProxyType(plans),
        workspaces=MappingProxyType(workspaces),
        source=source,
    )
    return replace(book, digest=book_digest(book))


def _parse_plans(
    r: _Reader, top: Mapping[str, Any], default_currency: str, metrics: Iterable[str] | None
) -> dict[str, Plan]:
    raw_plans = r.table(r.required(top, "plans", ""), "plans")
    if not raw_plans:
        raise r.error("plans", "at least one plan is required")
    metric_names = list(metrics) if metrics is not None else None
    return {
        name: _parse_plan(r, name, raw, default_currency, metric_names)
        for name, raw in raw_plans.items()
    }


def _default_plan(
    r: _Reader, top: Mapping[str, Any], plans: Mapping[str, Plan], default_currency: str
) -> str:
    """The plan of unlisted workspaces: one of the plans, in the default currency."""
    default_plan = r.string(r.required(top, "default_plan", ""), "default_plan")
    if default_plan not in plans:
        raise r.error(
            "default_plan", f"unknown plan {default_plan!r} (plans: {', '.join(sorted(plans))})"
        )
    if plans[default_plan].currency != default_currency:
        raise r.error(
            "default_plan",
            f"plan {default_plan!r} bills in {plans[default_plan].currency}, "
            f"not the default currency {default_currency}",
        )
    return default_plan


def default_price_book_text() -> str:
    """The built-in price book's TOML text."""
    book = resources.files("billing_batch.config").joinpath(DEFAULT_PRICE_BOOK)
    return book.read_text(encoding="utf-8")


def read_price_book(path: Path | None = None, *, metrics: Iterable[str] | None = None) -> PriceBook:
    """Read the price book at ``path`` (None: the built-in default)."""
    if path is None:
        return parse_price_book(default_price_book_text(), source="<default>", metrics=metrics)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PriceBookError(f"{path}: price book not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PriceBookError(f"{path}: cannot read the price book: {exc}") from None
    return parse_price_book(text, source=str(path), metrics=metrics)


def load_price_book(settings: Settings) -> PriceBook:
    """The price book of ``settings`` (``price_book``, else the built-in default),
    validated against the settings' metric catalogue."""
    return read_price_book(settings.price_book_path, metrics=settings.metrics)


__all__ = [
    "DEFAULT_PRICE_BOOK",
    "default_price_book_text",
    "load_price_book",
    "parse_price_book",
    "read_price_book",
]
