"""The price book and the pricing arithmetic.

A price book is a versioned TOML file (format: ``docs/pricing.md``; the built-in default
is ``default_price_book.toml`` beside this module). It holds **plans** (a currency, a
recurring base fee, a minimum commitment and one price per metric) and **workspaces**
(plan, tax rate, billing details, Stripe ids). Unknown workspaces get the default plan.

Price models of a metric (``included`` free units are subtracted first, in every model):

* ``per_unit``: billable × unit_price;
* ``graduated``: each tier's units at that tier's price (+ the tier's flat fee when the
  tier has billable units);
* ``volume``: every billable unit at the price of the tier the billable total falls in
  (+ that tier's flat fee);
* ``package``: ceil(billable / package_size) × package_price.

Tier bounds are inclusive (``up_to = "1000"``: the 1,000th unit is in that tier); the last
tier has no ``up_to``. A quantity of 0 billable units costs 0 (no flat fee).

Rounding (see :mod:`money`): a line's exact amount is computed without rounding, then
quantized ONCE (ROUND_HALF_UP to the currency's minor unit); tax is quantize(subtotal × rate).
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, get_args

from .._core import jsonutil, money
from .._core.errors import InputError, PriceBookError

if TYPE_CHECKING:
    from ..config.settings import Settings

PriceModel = Literal["per_unit", "graduated", "volume", "package"]
PRICE_MODELS: tuple[str, ...] = get_args(PriceModel)

#: Name of the built-in price book inside the package.
DEFAULT_PRICE_BOOK = "default_price_book.toml"

ZERO = Decimal(0)
ONE = Decimal(1)
#: Precision of the exact arithmetic (quantity × price): far beyond any real amount, so
#: nothing is rounded before :func:`money.quantize`.
_PRECISION = 60


# --------------------------------------------------------------------------------------
# Charges: the result of pricing a quantity
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TierCharge:
    """The part of a graduated (or volume) charge that falls in one tier.

    ``from_`` is the tier's exclusive lower bound, ``up_to`` its inclusive upper bound
    (None: unbounded); ``amount`` is exact (quantity × unit_price + flat_fee).
    """

    index: int
    from_: Decimal
    up_to: Decimal | None
    quantity: Decimal
    unit_price: Decimal
    flat_fee: Decimal
    amount: Decimal

    def to_detail(self) -> dict[str, Any]:
        return {
            "tier": self.index,
            "from": self.from_,
            "upTo": self.up_to,
            "quantity": self.quantity,
            "unitPrice": self.unit_price,
            "flatFee": self.flat_fee,
            "amount": self.amount,
        }


@dataclass(frozen=True)
class Charge:
    """One priced quantity of one metric: an invoice line's arithmetic.

    * ``quantity``: as given; ``included``: free units applied; ``billable``: the rest.
    * ``exact_amount``: unrounded; ``amount``: ``money.quantize(exact_amount)``, the line
      amount (rounded once, HALF_UP).
    * ``unit_price``: for ``per_unit`` and ``volume`` (the price of the tier reached).
    * ``tiers``: the tiers with billable units (graduated: every tier reached; volume: the
      one tier that priced everything).
    * ``prior`` and ``combined``: set by :meth:`MetricPrice.rate_additional` (late usage):
      the charges of what was already billed and of everything together; then
      ``exact_amount``/``amount`` are the differences.
    """

    metric: str
    model: PriceModel
    currency: str
    quantity: Decimal
    included: Decimal
    billable: Decimal
    exact_amount: Decimal
    amount: Decimal
    unit_price: Decimal | None = None
    tiers: list[TierCharge] = field(default_factory=list)
    package_size: Decimal | None = None
    package_price: Decimal | None = None
    packages: Decimal | None = None
    prior: Charge | None = None
    combined: Charge | None = None

    # -- presentation ------------------------------------------------------------------
    def _p(self, value: Decimal) -> str:
        return money.format_price(value, self.currency)

    def _q(self, value: Decimal) -> str:
        return money.format_quantity(value)

    def _own_lines(self) -> list[str]:
        lines: list[str] = []
        if self.included:
            lines.append(
                f"{self._q(self.quantity)} − {self._q(self.included)} included"
                f" = {self._q(self.billable)} billable"
            )
        if self.model == "per_unit":
            assert self.unit_price is not None
            lines.append(
                f"{self._q(self.billable)} × {self._p(self.unit_price)}"
                f" = {self._p(self.exact_amount)}"
            )
        elif self.model == "package":
            assert self.package_size is not None and self.package_price is not None
            assert self.packages is not None
            lines.append(
                f"ceil({self._q(self.billable)} / {self._q(self.package_size)})"
                f" = {self._q(self.packages)} package(s) × {self._p(self.package_price)}"
                f" = {self._p(self.exact_amount)}"
            )
        elif not self.tiers:
            lines.append(f"{self._q(self.billable)} billable = {self._p(ZERO)}")
        else:
            for t in self.tiers:
                upper = f"{self._q(t.up_to)}]" if t.up_to is not None else "∞)"
                head = f"tier {t.index} ({self._q(t.from_)}, {upper}"
                if self.model == "volume":
                    head = f"all {self._q(self.billable)} at {head}"
                flat = f" + {self._p(t.flat_fee)} flat" if t.flat_fee else ""
                lines.append(
                    f"{head}: {self._q(t.quantity)} × {self._p(t.unit_price)}{flat}"
                    f" = {self._p(t.amount)}"
                )
            if len(self.tiers) > 1:
                parts = " + ".join(self._p(t.amount) for t in self.tiers)
                lines.append(f"{parts} = {self._p(self.exact_amount)}")
        return lines

    def explain(self) -> list[str]:
        """Human-readable arithmetic, e.g. ``["45,000 × 0.01 = 450.00"]``."""
        if self.prior is not None and self.combined is not None:
            lines = [
                f"{self._q(self.prior.quantity)} already billed"
                f" + {self._q(self.quantity)} more = {self._q(self.combined.quantity)}"
            ]
            lines += [f"all: {line}" for line in self.combined._own_lines()]
            lines += [f"already billed: {line}" for line in self.prior._own_lines()]
            lines.append(
                f"{self._p(self.combined.amount)} − {self._p(self.prior.amount)} already billed"
                f" = {money.format_amount(self.amount, self.currency)}"
            )
            return lines
        lines = self._own_lines()
        rounded = money.format_amount(self.amount, self.currency)
        if self.exact_amount != self.amount:
            lines.append(
                f"{self._p(self.exact_amount)} rounded half up to {rounded} {self.currency}"
            )
        elif lines and not lines[-1].endswith(f"= {rounded}"):
            lines.append(f"= {rounded} {self.currency}")
        return lines

    def to_detail(self) -> dict[str, Any]:
        """JSON-friendly detail for the invoice line (Decimals kept as Decimal)."""
        detail: dict[str, Any] = {
            "metric": self.metric,
            "model": self.model,
            "currency": self.currency,
            "quantity": self.quantity,
            "included": self.included,
            "billable": self.billable,
            "unitPrice": self.unit_price,
            "exactAmount": self.exact_amount,
            "amount": self.amount,
            "tiers": [t.to_detail() for t in self.tiers],
        }
        if self.model == "package":
            detail["packageSize"] = self.package_size
            detail["packagePrice"] = self.package_price
            detail["packages"] = self.packages
        if self.prior is not None and self.combined is not None:
            detail["alreadyBilled"] = self.prior.to_detail()
            detail["combined"] = self.combined.to_detail()
        detail["explain"] = self.explain()
        return detail


# --------------------------------------------------------------------------------------
# Prices, plans, accounts
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tier:
    """One tier: units up to ``up_to`` (inclusive; None = unbounded) at ``unit_price``."""

    up_to: Decimal | None
    unit_price: Decimal
    flat_fee: Decimal = ZERO


def _check_quantity(value: Decimal | int, what: str) -> Decimal:
    if isinstance(value, int) and not isinstance(value, bool):
        value = Decimal(value)
    if not isinstance(value, Decimal):
        raise InputError(f"{what}: expected a Decimal, got {type(value).__name__}")
    if not value.is_finite() or value < 0:
        raise InputError(f"{what}: must be a finite number ≥ 0, got {value}")
    return value


@dataclass(frozen=True)
class MetricPrice:
    """How one plan prices one metric."""

    metric: str
    model: PriceModel
    included: Decimal = ZERO
    unit_price: Decimal | None = None
    tiers: tuple[Tier, ...] = ()
    package_size: Decimal | None = None
    package_price: Decimal | None = None

    def rate(self, quantity: Decimal, currency: str, *, included: Decimal | None = None) -> Charge:
        """Price ``quantity`` units. ``included`` overrides the price's free units (e.g.
        prorated by a subscription); the line amount is rounded once, HALF_UP."""
        quantity = _check_quantity(quantity, f"{self.metric}: quantity")
        free = self.included if included is None else _check_quantity(included, "included")
        money.minor_units(currency)  # validates the code
        with localcontext() as ctx:
            ctx.prec = _PRECISION
            applied = min(quantity, free)
            billable = quantity - applied
            unit_price: Decimal | None = None
            tiers: list[TierCharge] = []
            packages: Decimal | None = None
            if self.model == "per_unit":
                assert self.unit_price is not None
                unit_price = self.unit_price
                exact = billable * self.unit_price
            elif self.model == "graduated":
                exact, tiers = self._graduated(billable)
            elif self.model == "volume":
                exact, tiers, unit_price = self._volume(billable)
            else:
                assert self.package_size is not None and self.package_price is not None
                whole, rest = divmod(billable, self.package_size)
                packages = whole + (1 if rest else 0)
                exact = packages * self.package_price
        return Charge(
            metric=self.metric,
            model=self.model,
            currency=currency.upper(),
            quantity=quantity,
            included=applied,
            billable=billable,
            exact_amount=exact,
            amount=money.quantize(exact, currency),
            unit_price=unit_price,
            tiers=tiers,
            package_size=self.package_size,
            package_price=self.package_price,
            packages=packages,
        )

    def rate_additional(
        self,
        already: Decimal,
        additional: Decimal,
        currency: str,
        *,
        included: Decimal | None = None,
    ) -> Charge:
        """Price ``additional`` units on top of ``already`` billed ones (late usage).

        The amount is ``rate(already + additional).amount − rate(already).amount``: what
        the period would have cost with all its usage minus what was billed, so the
        invoices of a period always add up to the on-time price (tiers and included
        units continue where the billed quantity left them).
        """
        already = _check_quantity(already, f"{self.metric}: already billed quantity")
        additional = _check_quantity(additional, f"{self.metric}: additional quantity")
        prior = self.rate(already, currency, included=included)
        total = self.rate(already + additional, currency, included=included)
        tiers: list[TierCharge] = []
        if self.model == "graduated":
            before = {t.index: t for t in prior.tiers}
            for t in total.tiers:
                p = before.get(t.index)
                qty = t.quantity - (p.quantity if p else ZERO)
                if qty:
                    flat = ZERO if p else t.flat_fee
                    tiers.append(
                        TierCharge(
                            index=t.index,
                            from_=t.from_ + (p.quantity if p else ZERO),
                            up_to=t.up_to,
                            quantity=qty,
                            unit_price=t.unit_price,
                            flat_fee=flat,
                            amount=qty * t.unit_price + flat,
                        )
                    )
        unit_price = total.unit_price if self.model == "per_unit" else None
        if self.model == "volume" and prior.unit_price == total.unit_price:
            unit_price = total.unit_price
        return Charge(
            metric=self.metric,
            model=self.model,
            currency=total.currency,
            quantity=additional,
            included=total.included - prior.included,
            billable=total.billable - prior.billable,
            exact_amount=total.exact_amount - prior.exact_amount,
            amount=total.amount - prior.amount,
            unit_price=unit_price,
            tiers=tiers,
            package_size=self.package_size,
            package_price=self.package_price,
            packages=(
                total.packages - prior.packages
                if total.packages is not None and prior.packages is not None
                else None
            ),
            prior=prior,
            combined=total,
        )

    def _graduated(self, billable: Decimal) -> tuple[Decimal, list[TierCharge]]:
        exact = ZERO
        out: list[TierCharge] = []
        lower = ZERO
        for i, tier in enumerate(self.tiers, start=1):
            if billable <= lower:
                break
            top = billable if tier.up_to is None else min(billable, tier.up_to)
            units = top - lower
            amount = units * tier.unit_price + tier.flat_fee
            out.append(
                TierCharge(i, lower, tier.up_to, units, tier.unit_price, tier.flat_fee, amount)
            )
            exact += amount
            if tier.up_to is None:
                break
            lower = tier.up_to
        return exact, out

    def _volume(self, billable: Decimal) -> tuple[Decimal, list[TierCharge], Decimal]:
        lower = ZERO
        for i, tier in enumerate(self.tiers, start=1):
            if tier.up_to is None or billable <= tier.up_to:
                if not billable:
                    return ZERO, [], tier.unit_price
                amount = billable * tier.unit_price + tier.flat_fee
                charge = TierCharge(
                    i, lower, tier.up_to, billable, tier.unit_price, tier.flat_fee, amount
                )
                return amount, [charge], tier.unit_price
            lower = tier.up_to
        raise AssertionError("the last tier is unbounded")  # pragma: no cover

    def to_dict(self) -> dict[str, Any]:
        """The price as written in a price book (normalized), for digests and docs."""
        out: dict[str, Any] = {"model": self.model, "included": self.included}
        if self.unit_price is not None:
            out["unit_price"] = self.unit_price
        if self.tiers:
            out["tiers"] = [
                {"up_to": t.up_to, "unit_price": t.unit_price, "flat_fee": t.flat_fee}
                for t in self.tiers
            ]
        if self.package_size is not None:
            out["package_size"] = self.package_size
            out["package_price"] = self.package_price
        return out


@dataclass(frozen=True)
class Plan:
    """A plan: one currency, a recurring base fee and a minimum commitment per billing
    period, and the usage price of each metric."""

    name: str
    display_name: str
    currency: str
    base_fee: Decimal
    minimum: Decimal
    prices: Mapping[str, MetricPrice]

    def price(self, metric: str) -> MetricPrice:
        try:
            return self.prices[metric]
        except KeyError:
            known = ", ".join(sorted(self.prices)) or "none"
            raise PriceBookError(
                f"plan {self.name!r} has no price for metric {metric!r} (priced: {known})"
            ) from None

    def rate(self, metric: str, quantity: Decimal, *, included: Decimal | None = None) -> Charge:
        """Price ``quantity`` of ``metric`` in the plan's currency."""
        return self.price(metric).rate(quantity, self.currency, included=included)

    def minimum_top_up(self, usage_amount: Decimal, *, minimum: Decimal | None = None) -> Decimal:
        """The top-up line's amount: what lifts ``usage_amount`` (the period's usage
        lines, rounded) to the minimum commitment (``minimum`` overrides the plan's, e.g.
        prorated); 0 when usage already reaches it."""
        floor = self.minimum if minimum is None else minimum
        return money.quantize(max(ZERO, floor - usage_amount), self.currency)

    def to_dict(self) -> dict[str, Any]:
        return {
            "display_name": self.display_name,
            "currency": self.currency,
            "base_fee": self.base_fee,
            "minimum": self.minimum,
            "prices": {m: p.to_dict() for m, p in sorted(self.prices.items())},
        }


@dataclass(frozen=True)
class Account:
    """A workspace's billing account: its plan (from the price book) and details."""

    workspace_id: str
    plan: str
    currency: str
    tax_rate: Decimal
    legal_name: str
    address: str
    email: str | None
    stripe_customer_id: str | None
    default_payment_method: str | None
    net_terms_days: int
    #: False for a workspace the price book does not list (defaults applied).
    listed: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan,
            "currency": self.currency,
            "tax_rate": self.tax_rate,
            "legal_name": self.legal_name,
            "address": self.address,
            "email": self.email,
            "stripe_customer_id": self.stripe_customer_id,
            "default_payment_method": self.default_payment_method,
            "net_terms_days": self.net_terms_days,
        }


@dataclass(frozen=True)
class PriceBook:
    """A loaded, validated price book."""

    version: str
    digest: str
    default_plan: str
    default_currency: str
    default_tax_rate: Decimal
    default_net_terms_days: int
    plans: Mapping[str, Plan]
    workspaces: Mapping[str, Account]
    #: Where it came from (a path, or ``<default>``); named in errors.
    source: str = "<string>"

    def plan(self, name: str) -> Plan:
        try:
            return self.plans[name]
        except KeyError:
            known = ", ".join(sorted(self.plans))
            raise PriceBookError(f"{self.source}: unknown plan {name!r} (plans: {known})") from None

    def account(self, workspace_id: str) -> Account:
        """The workspace's account; an unlisted workspace gets the defaults."""
        listed = self.workspaces.get(workspace_id)
        if listed is not None:
            return listed
        plan = self.plans[self.default_plan]
        return Account(
            workspace_id=workspace_id,
            plan=plan.name,
            currency=plan.currency,
            tax_rate=self.default_tax_rate,
            legal_name=workspace_id,
            address="",
            email=None,
            stripe_customer_id=None,
            default_payment_method=None,
            net_terms_days=self.default_net_terms_days,
            listed=False,
        )

    def plans_in(self, currency: str) -> list[Plan]:
        """The plans billed in ``currency`` (what a workspace may switch between)."""
        code = currency.upper()
        return [p for _, p in sorted(self.plans.items()) if p.currency == code]

    def to_dict(self) -> dict[str, Any]:
        """The normalized content (what :attr:`digest` hashes)."""
        return _content(
            self.version,
            self.default_plan,
            self.default_currency,
            self.default_tax_rate,
            self.default_net_terms_days,
            self.plans,
            self.workspaces,
        )


# --------------------------------------------------------------------------------------
# Totals
# --------------------------------------------------------------------------------------


def tax(subtotal: Decimal, rate: Decimal, currency: str) -> Decimal:
    """Tax on the (already rounded) subtotal, rounded once HALF_UP."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        exact = subtotal * rate
    return money.quantize(exact, currency)


@dataclass(frozen=True)
class Totals:
    subtotal: Decimal
    tax: Decimal
    total: Decimal


def totals(line_amounts: Iterable[Decimal], rate: Decimal, currency: str) -> Totals:
    """Subtotal (the sum of the rounded line amounts), tax on it, total."""
    subtotal = money.quantize(sum(line_amounts, ZERO), currency)
    t = tax(subtotal, rate, currency)
    return Totals(subtotal=subtotal, tax=t, total=subtotal + t)


def line_description(display_name: str, quantity: Decimal) -> str:
    """The seed's line label: ``API Calls (45,000)``."""
    return f"{display_name} ({money.format_quantity(quantity)})"


# --------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------

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
}


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
    raw_tiers = r.required(table, "tiers", key)
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
    kind: PriceModel = "graduated" if model == "graduated" else "volume"
    return MetricPrice(metric, kind, included, tiers=tuple(tiers))


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
    )


def _content(
    version: str,
    default_plan: str,
    default_currency: str,
    default_tax_rate: Decimal,
    default_net_terms_days: int,
    plans: Mapping[str, Plan],
    workspaces: Mapping[str, Account],
) -> dict[str, Any]:
    return {
        "version": version,
        "default_plan": default_plan,
        "default_currency": default_currency,
        "default_tax_rate": default_tax_rate,
        "default_net_terms_days": default_net_terms_days,
        "plans": {name: p.to_dict() for name, p in sorted(plans.items())},
        "workspaces": {w: a.to_dict() for w, a in sorted(workspaces.items())},
    }


def _sorted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


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
    metric_names = list(metrics) if metrics is not None else None

    raw_plans = r.table(r.required(top, "plans", ""), "plans")
    if not raw_plans:
        raise r.error("plans", "at least one plan is required")
    plans = {
        name: _parse_plan(r, name, raw, default_currency, metric_names)
        for name, raw in raw_plans.items()
    }
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
    raw_ws = r.table(top.get("workspaces", {}), "workspaces")
    workspaces = {
        ws: _parse_workspace(r, ws, raw, plans, default_plan, default_tax_rate, default_net_terms)
        for ws, raw in raw_ws.items()
    }
    content = _content(
        version,
        default_plan,
        default_currency,
        default_tax_rate,
        default_net_terms,
        plans,
        workspaces,
    )
    digest = "sha256:" + hashlib.sha256(jsonutil.dumps(_sorted(content)).encode()).hexdigest()
    return PriceBook(
        version=version,
        digest=digest,
        default_plan=default_plan,
        default_currency=default_currency,
        default_tax_rate=default_tax_rate,
        default_net_terms_days=default_net_terms,
        plans=MappingProxyType(plans),
        workspaces=MappingProxyType(workspaces),
        source=source,
    )


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
    "PRICE_MODELS",
    "Account",
    "Charge",
    "MetricPrice",
    "Plan",
    "PriceBook",
    "PriceModel",
    "Tier",
    "TierCharge",
    "Totals",
    "default_price_book_text",
    "line_description",
    "load_price_book",
    "parse_price_book",
    "read_price_book",
    "tax",
    "totals",
]
