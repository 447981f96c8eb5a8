"""The price book's model: plans, workspace accounts, the book itself, and totals.

A price book (format: ``docs/pricing.md``; read and validated by
:mod:`billing_batch.config.price_book`) holds **plans** (a currency, a recurring base
fee, a minimum commitment and one price per metric) and **workspaces** (plan, tax rate,
billing details, Stripe ids). Unknown workspaces get the default plan.

Rounding (see :mod:`money`): line amounts are rounded once each (:mod:`.prices`); the
subtotal is their sum; tax is ``quantize(subtotal × rate)``, once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from decimal import Decimal, localcontext
from types import MappingProxyType
from typing import Any

from .._core import jsonutil, money
from .._core.errors import PriceBookError
from .discounts import Discount
from .prices import PRECISION, Charge, MetricPrice

ZERO = Decimal(0)


class _Picklable:
    """Frozen dataclasses holding read-only mappings (``MappingProxyType``, which pickle
    refuses) travel to a worker all the same: the mappings go as dicts and come back
    read-only (the nightly's rating fan-out ships the price book to Dask workers)."""

    def __reduce__(self) -> tuple[Any, ...]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]
        proxied = tuple(k for k, v in values.items() if isinstance(v, MappingProxyType))
        for k in proxied:
            values[k] = dict(values[k])
        return (_rebuild, (type(self), values, proxied))


def _rebuild(cls: type, values: dict[str, Any], proxied: tuple[str, ...]) -> Any:
    for k in proxied:
        values[k] = MappingProxyType(values[k])
    return cls(**values)


@dataclass(frozen=True)
class Plan(_Picklable):
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
    #: Negotiated discounts (rating.discounts), by name.
    discounts: tuple[Discount, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
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
        if self.discounts:  # only when present: books without discounts keep their digest
            out["discounts"] = {d.name: d.to_dict() for d in self.discounts}
        return out


@dataclass(frozen=True)
class PriceBook(_Picklable):
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
        """The normalized content (what :attr:`digest` hashes, see :func:`book_digest`)."""
        return {
            "version": self.version,
            "default_plan": self.default_plan,
            "default_currency": self.default_currency,
            "default_tax_rate": self.default_tax_rate,
            "default_net_terms_days": self.default_net_terms_days,
            "plans": {name: p.to_dict() for name, p in sorted(self.plans.items())},
            "workspaces": {w: a.to_dict() for w, a in sorted(self.workspaces.items())},
        }


def book_digest(book: PriceBook) -> str:
    """``sha256:<hex>`` of the book's normalized content (:meth:`PriceBook.to_dict`,
    keys sorted, exact decimals): the same prices written differently (comments, key
    order, ``"0.010"`` for ``"0.01"``) give the same digest."""
    text = jsonutil.dumps(_sorted(book.to_dict()))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _sorted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


# --------------------------------------------------------------------------------------
# Totals
# --------------------------------------------------------------------------------------


def tax(subtotal: Decimal, rate: Decimal, currency: str) -> Decimal:
    """Tax on the (already rounded) subtotal, rounded once HALF_UP."""
    with localcontext() as ctx:
        ctx.prec = PRECISION
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


__all__ = [
    "Account",
    "Plan",
    "PriceBook",
    "Totals",
    "book_digest",
    "line_description",
    "tax",
    "totals",
]
