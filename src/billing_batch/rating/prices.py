"""The pricing arithmetic: what a quantity of one metric costs under one price.

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
quantized ONCE (ROUND_HALF_UP to the currency's minor unit). Plans, accounts, the price
book and totals are in :mod:`.plans`; reading and validating a price book file is
:mod:`billing_batch.config.price_book`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any, Literal, get_args

from .._core import money
from .._core.errors import InputError

PriceModel = Literal["per_unit", "graduated", "volume", "package"]
PRICE_MODELS: tuple[str, ...] = get_args(PriceModel)

ZERO = Decimal(0)
#: Precision of the exact arithmetic (quantity × price): far beyond any real amount, so
#: nothing is rounded before :func:`money.quantize`.
PRECISION = 60

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
# Prices
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
            ctx.prec = PRECISION
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
        tiers = _added_tiers(prior, total) if self.model == "graduated" else []
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


def _added_tiers(prior: Charge, total: Charge) -> list[TierCharge]:
    """The graduated tiers of what ``total`` adds to ``prior``: the units of each tier
    beyond those already billed, a tier's flat fee only when it is newly reached."""
    before = {t.index: t for t in prior.tiers}
    tiers: list[TierCharge] = []
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
    return tiers


__all__ = [
    "PRECISION",
    "PRICE_MODELS",
    "ZERO",
    "Charge",
    "MetricPrice",
    "PriceModel",
    "Tier",
    "TierCharge",
]
