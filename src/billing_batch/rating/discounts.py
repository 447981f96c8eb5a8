"""PURE: negotiated discounts, shown as their own invoice lines, applied before tax.

A discount belongs to a workspace's account in the price book
(``[workspaces.<id>.discounts.<name>]``, docs/pricing.md), so it is versioned and
digested with the prices: ``invoice explain``, ``invoice rerate`` and ``simulate`` re-rate
an invoice with exactly the discounts it was priced with.

Rules (docs/pricing.md "Discounts"):

* **what**: ``percent`` off, or a fixed ``amount`` off (whole minor units of the
  currency), of the period's **subtotal** (every line of the period) or of the usage lines
  of named ``metrics``;
* **when**: billing periods that *start* on or after ``start`` and, with ``periods = N``,
  before ``start`` + N months (billing periods are monthly, so: N periods); forever
  without ``periods``;
* **order**: discounts apply in name order, each on what the previous ones left
  (``remaining``): the discounted lines of a period never go below zero;
* **rounding**: a percentage is ``money.quantize(base × percent / 100)`` (ROUND_HALF_UP to
  the minor unit, once per discount line); a fixed amount is ``min(amount, base)``;
* **tax** is computed on the subtotal after the discount lines (discounts are lines);
* **late lines** (a difference of an earlier, already invoiced period carried on a later
  invoice) get that period's *percentage* discounts, on the signed difference (so a
  period's invoices add up to its discounted price, to a minor unit per invoice); a fixed
  amount was given on the period's own invoice and is not given again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, localcontext
from typing import Any, Literal

from .._core import money
from ..periods import Period, period_label
from .lines import Line
from .prices import PRECISION

ZERO = Decimal(0)
HUNDRED = Decimal(100)

DiscountKind = Literal["percent", "amount"]
#: Line kinds a discount produces (its own period's, and a late period's).
DISCOUNT_KINDS = ("discount", "late_discount")


def add_months(day: date, months: int) -> date:
    """``day`` moved ``months`` calendar months on (the day clamped to the month's end)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    for d in (day.day, 30, 29, 28):
        try:
            return date(year, month, d)
        except ValueError:
            continue
    raise ValueError(f"cannot add {months} months to {day}")  # pragma: no cover


@dataclass(frozen=True)
class Discount:
    """One discount of a workspace (validated by :mod:`billing_batch.config.price_book`)."""

    name: str
    kind: DiscountKind
    value: Decimal  # percent (0 < v ≤ 100) or amount off (major units)
    metrics: tuple[str, ...] = ()  # empty: the subtotal
    start: date | None = None
    periods: int | None = None  # None: forever
    description: str = ""

    def applies_to(self, period: Period) -> bool:
        """Does the discount apply to the billing period (by its first day)?"""
        if self.start is not None and period.start < self.start:
            return False
        if self.periods is not None and self.start is not None:
            return period.start < add_months(self.start, self.periods)
        return True

    def label(self) -> str:
        what = ", ".join(self.metrics) if self.metrics else "subtotal"
        off = f"{self.value.normalize():f}%" if self.kind == "percent" else f"{self.value}"
        return f"{self.description or self.name} ({off} off {what})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "value": self.value,
            "metrics": list(self.metrics),
            "start": self.start,
            "periods": self.periods,
            "description": self.description,
        }


def _base(discount: Discount, lines: Sequence[Line]) -> Decimal:
    """What the discount is taken off: every line, or the usage lines of its metrics."""
    if not discount.metrics:
        return sum((x.amount for x in lines), ZERO)
    return sum((x.amount for x in lines if x.metric in discount.metrics), ZERO)


def _percent_of(base: Decimal, percent: Decimal, currency: str) -> tuple[Decimal, Decimal]:
    with localcontext() as ctx:
        ctx.prec = PRECISION
        exact = base * percent / HUNDRED
    return exact, money.quantize(exact, currency)


def _line(discount: Discount, period: Period, amount: Decimal, detail: dict[str, Any]) -> Line:
    late = "latePeriod" in detail
    prefix = f"Late discount for {period_label(period)}: " if late else "Discount: "
    return Line(
        kind="late_discount" if late else "discount",
        description=prefix + discount.label(),
        amount=amount,
        period_start=period.start,
        period_end=period.end,
        detail=detail,
    )


def discount_lines(
    period: Period,
    lines: Sequence[Line],
    discounts: Sequence[Discount],
    currency: str,
    *,
    late: bool = False,
) -> list[Line]:
    """The discount lines (negative amounts) for ``lines``, the lines one invoice bills
    for ``period`` (its own, or late ones with ``late``)."""
    out: list[Line] = []
    remaining = sum((x.amount for x in lines), ZERO)
    for d in sorted(discounts, key=lambda x: x.name):
        if not d.applies_to(period) or (late and d.kind != "percent"):
            continue
        base = _base(d, lines)
        if not late:
            base = min(max(base, ZERO), max(remaining, ZERO))
        detail: dict[str, Any] = {
            "discount": d.name,
            "discountType": d.kind,
            "appliesTo": list(d.metrics) or "subtotal",
            "base": base,
        }
        if d.kind == "percent":
            exact, off = _percent_of(base, d.value, currency)
            detail.update(percent=d.value, exactAmount=-exact)
        else:
            off = min(d.value, base)
            detail.update(amountOff=d.value)
        if not off:
            continue
        if late:
            detail = {"latePeriod": {"start": period.start, "end": period.end}, **detail}
        remaining -= off
        out.append(_line(d, period, -off, detail))
    return out


__all__ = ["DISCOUNT_KINDS", "Discount", "DiscountKind", "add_months", "discount_lines"]
