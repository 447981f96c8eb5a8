"""PURE: rating one billing period as "what is due now minus what was billed".

The one home of the rules of ``docs/billing-rules.md`` §4-§6: given a period's segments
(runs of days with one plan), the usage quantities now and what the billing ledger says
was billed already, return the invoice lines and the ledger entries that bill exactly the
difference. No I/O: the caller reads the lake and the ledger.

* usage of a metric: quantity ``Q_now − Q_billed``, amount ``price(Q_now) − A_billed``
  with the segment's plan (the plan the ledger recorded for it, else the plan in force):
  the invoices of a segment always add up to its price with all its usage (tiers and
  included units continue where billed usage stopped);
* base fee (subscriptions only): ``F_now − F_billed`` fee days, amount
  ``fee(F_now) − fee(F_billed)``;
* minimum (subscriptions only): when the segment's usage or days changed, the top-up due
  now (the prorated minimum minus the segment's whole usage amount) minus the top-up
  billed.

The same function rates a period's own invoice and the *late* differences of a period
already invoiced (``late=True``: the lines say "Late usage for 2024-01: ...").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .._core import money
from .._core.errors import PriceBookError, UsageQueryError
from ..config.metrics import MetricDef
from ..periods import Period, PlanSpan, period_label
from .lines import LedgerEntry, Line
from .plans import Plan, PriceBook
from .prices import Charge, MetricPrice

ZERO = Decimal(0)


@dataclass(frozen=True)
class BilledUsage:
    """Usage of one metric already billed for a segment (sum over live invoices)."""

    quantity: Decimal = ZERO
    amount: Decimal = ZERO


@dataclass(frozen=True)
class Billed:
    """What the ledger says live finalized invoices billed for one segment."""

    plan: str | None = None
    usage: Mapping[str, BilledUsage] = field(default_factory=dict)
    fee_days: int = 0
    fee_amount: Decimal = ZERO
    minimum_days: int = 0
    minimum_amount: Decimal = ZERO

    @property
    def usage_amount(self) -> Decimal:
        return sum((b.amount for b in self.usage.values()), ZERO)

    @property
    def empty(self) -> bool:
        return not self.usage and not self.fee_days and not self.minimum_days


@dataclass(frozen=True)
class SegmentState:
    """One segment of a period: its days and plan, the usage now, what was billed."""

    span: PlanSpan
    usage: Mapping[str, Decimal]
    billed: Billed = field(default_factory=Billed)

    def plan_name(self) -> str:
        """The plan that prices the segment: the one it was first billed with."""
        return self.billed.plan or self.span.plan


@dataclass(frozen=True)
class PeriodRating:
    lines: tuple[Line, ...]
    entries: tuple[LedgerEntry, ...]


def fee_days(span: PlanSpan, plan: Plan) -> int:
    """Days of the span that carry the plan's base fee (0 when it has none)."""
    return span.fee_days() if plan.base_fee else 0


def minimum_days(span: PlanSpan, plan: Plan) -> int:
    """Days of the span that carry the plan's minimum commitment (0 when it has none)."""
    return span.fee_days() if plan.minimum else 0


def segment_differs(segment: SegmentState, book: PriceBook) -> bool:
    """Has the segment anything left to bill (usage units or fixed-charge days)?"""
    plan = book.plan(segment.plan_name())
    billed = segment.billed
    for metric in set(segment.usage) | set(billed.usage):
        done = billed.usage.get(metric)
        if segment.usage.get(metric, ZERO) != (done.quantity if done else ZERO):
            return True
    return (
        fee_days(segment.span, plan) != billed.fee_days
        or minimum_days(segment.span, plan) != billed.minimum_days
    )


def included_units(price: MetricPrice, span: PlanSpan, period: Period) -> Decimal:
    """A plan's free units per period, prorated by the segment's share of the nominal
    period when the plan is in force for part of it only (exact, never rounded)."""
    if not price.included or span.days == period.nominal_days:
        return price.included
    return price.included * span.days / period.nominal_days


def shown_quantity(mdef: MetricDef, quantity: Decimal) -> str:
    """How a line names its quantity: ``45,000`` or ``12.5 GB-months``."""
    text = money.format_quantity(quantity)
    return f"{text} {mdef.period_unit}" if mdef.period_unit else text


class _Rater:
    """Rates the segments of one period (a small state holder for the lines built)."""

    def __init__(
        self,
        period: Period,
        book: PriceBook,
        metrics: Mapping[str, MetricDef],
        currency: str,
        late: bool,
        several: bool,
    ) -> None:
        self.period = period
        self.book = book
        self.metrics = metrics
        self.currency = currency
        self.late = late
        self.several = several
        self.label = period_label(period)
        self.lines: list[Line] = []
        self.entries: list[LedgerEntry] = []

    def _entry(
        self, span: PlanSpan, kind: str, metric: str, plan: Plan, qty: Any, amount: Decimal
    ) -> None:
        self.entries.append(
            LedgerEntry(
                period_start=self.period.start,
                period_end=self.period.end,
                segment_start=span.start,
                segment_end=span.end,
                kind=kind,
                metric=metric,
                plan=plan.name,
                quantity=Decimal(qty),
                amount=amount,
            )
        )

    def _plan(self, segment: SegmentState) -> Plan:
        plan = self.book.plan(segment.plan_name())
        if plan.currency != self.currency:
            raise PriceBookError(
                f"plan {plan.name!r} is priced in {plan.currency} but the workspace is billed "
                f"in {self.currency}"
            )
        return plan

    def segment(self, segment: SegmentState) -> None:
        plan = self._plan(segment)
        usage_delta = self._usage(segment, plan)
        changed = usage_delta is not None
        self._base_fee(segment, plan)
        self._minimum(segment, plan, usage_delta or ZERO, changed)

    # --- usage ------------------------------------------------------------------------
    def _metric(self, name: str) -> MetricDef:
        mdef = self.metrics.get(name)
        if mdef is None:
            raise UsageQueryError(f"usage of metric {name!r}, which the catalogue does not define")
        return mdef

    def _usage(self, segment: SegmentState, plan: Plan) -> Decimal | None:
        """Usage lines; the sum of their amounts (None when no metric changed)."""
        span, billed = segment.span, segment.billed
        total: Decimal | None = None
        for metric in sorted(set(segment.usage) | set(billed.usage)):
            done = billed.usage.get(metric) or BilledUsage()
            now = segment.usage.get(metric, ZERO)
            delta = now - done.quantity
            if delta == 0:
                continue
            mdef = self._metric(metric)
            price = plan.price(metric)
            free = included_units(price, span, self.period)
            charge = price.rate(now, self.currency, included=free)
            detail: dict[str, Any]
            # always what the segment costs now with all its usage, minus what was billed
            amount = charge.amount - done.amount
            if done.quantity == 0 and done.amount == 0:
                detail = charge.to_detail()
            elif done.quantity < 0:
                # only a negative difference is billed (a gauge that late readings lowered,
                # whose first invoice was then voided): a negative quantity has no price
                detail = charge.to_detail()
                detail["billedQuantity"] = done.quantity
                detail["billedAmount"] = done.amount
            else:
                # what the segment costs now with all its usage, minus what was billed
                # (amounts, not prices of quantities: a void that released an earlier
                # row must not bill the units a later late line already priced)
                before = price.rate(done.quantity, self.currency, included=free)
                detail = _difference_detail(price, before, charge, delta, self.currency, free)
                detail["billedAmount"] = done.amount
            description, detail = self._described(mdef, delta, span, plan, detail)
            self.lines.append(
                Line(
                    kind="late_usage" if self.late else "usage",
                    description=description,
                    amount=amount,
                    period_start=span.start,
                    period_end=span.end,
                    metric=metric,
                    plan=plan.name,
                    quantity=delta,
                    unit=mdef.period_unit or mdef.unit,
                    unit_price=charge.unit_price,
                    detail=detail,
                )
            )
            self._entry(span, "usage", metric, plan, delta, amount)
            total = (total or ZERO) + amount
        return total

    def _described(
        self, mdef: MetricDef, delta: Decimal, span: PlanSpan, plan: Plan, detail: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """A usage line's description, and its detail (a late one names its period)."""
        shown = shown_quantity(mdef, delta)
        if self.late:
            late = {"latePeriod": {"start": self.period.start, "end": self.period.end}}
            return f"Late usage for {self.label}: {mdef.display_name} ({shown})", {
                **late,
                **detail,
            }
        return f"{mdef.display_name} ({shown}){self._span_label(span, plan)}", detail

    def _span_label(self, span: PlanSpan, plan: Plan) -> str:
        if not self.several:
            return ""
        return f" ({plan.display_name}, {span.start:%b %-d}–{span.end:%b %-d})"

    # --- fixed charges ------------------------------------------------------------------
    def _base_fee(self, segment: SegmentState, plan: Plan) -> None:
        span, billed = segment.span, segment.billed
        days = fee_days(span, plan)
        delta = days - billed.fee_days
        if delta == 0:
            return
        nominal = self.period.nominal_days
        exact = plan.base_fee * days / nominal
        amount = money.quantize(exact, self.currency) - billed.fee_amount
        if self.late:
            kind = "late_base_fee"
            description = f"Late plan fee for {self.label}: {plan.display_name} ({delta:+d} days)"
        else:
            kind = "base_fee"
            description = f"{plan.display_name} plan fee"
            if days != nominal:
                description += f" (prorated {days}/{nominal} days)"
        detail: dict[str, Any] = {
            "baseFee": plan.base_fee,
            "daysInForce": days,
            "nominalDays": nominal,
            "exactAmount": exact,
        }
        if billed.fee_days:
            detail["billedDays"] = billed.fee_days
            detail["billedAmount"] = billed.fee_amount
        if self.late:
            detail = {"latePeriod": {"start": self.period.start, "end": self.period.end}, **detail}
        self.lines.append(
            Line(
                kind=kind,
                description=description,
                amount=amount,
                period_start=span.start,
                period_end=span.end,
                plan=plan.name,
                quantity=Decimal(delta),
                unit="days",
                detail=detail,
            )
        )
        self._entry(span, "base_fee", "", plan, delta, amount)

    def _minimum(
        self, segment: SegmentState, plan: Plan, usage_delta: Decimal, changed: bool
    ) -> None:
        span, billed = segment.span, segment.billed
        days = minimum_days(span, plan)
        day_delta = days - billed.minimum_days
        if not (changed or day_delta):
            return
        if not days and not billed.minimum_days:
            return
        nominal = self.period.nominal_days
        floor = money.quantize(plan.minimum * days / nominal, self.currency) if days else ZERO
        usage_amount = billed.usage_amount + usage_delta
        top_up = plan.minimum_top_up(usage_amount, minimum=floor)
        amount = top_up - billed.minimum_amount
        if amount:
            self.lines.append(self._minimum_line(span, plan, amount, floor, usage_amount, days))
        if amount or day_delta:
            self._entry(span, "minimum", "", plan, day_delta, amount)

    def _minimum_line(
        self,
        span: PlanSpan,
        plan: Plan,
        amount: Decimal,
        floor: Decimal,
        usage_amount: Decimal,
        days: int,
    ) -> Line:
        detail: dict[str, Any] = {
            "minimum": plan.minimum,
            "proratedMinimum": floor,
            "usageAmount": usage_amount,
            "days": days,
            "nominalDays": self.period.nominal_days,
        }
        if self.late:
            detail = {"latePeriod": {"start": self.period.start, "end": self.period.end}, **detail}
            description = f"Minimum commitment adjustment for {self.label} ({plan.display_name})"
        else:
            description = f"Minimum commitment top-up ({plan.display_name})"
        return Line(
            kind="late_minimum" if self.late else "minimum",
            description=description,
            amount=amount,
            period_start=span.start,
            period_end=span.end,
            plan=plan.name,
            detail=detail,
        )


def _difference_detail(
    price: MetricPrice,
    before: Charge,
    now: Charge,
    delta: Decimal,
    currency: str,
    free: Decimal,
) -> dict[str, Any]:
    """The arithmetic of a difference: the increment's tiers when usage grew, both
    computations either way."""
    if delta > 0:
        detail = price.rate_additional(before.quantity, delta, currency, included=free).to_detail()
    else:
        detail = {"alreadyBilled": before.to_detail(), "combined": now.to_detail()}
    detail["billedQuantity"] = before.quantity
    detail["newTotalQuantity"] = now.quantity
    detail["billedAmount"] = before.amount
    detail["newTotalAmount"] = now.amount
    return detail


def rate_period(
    period: Period,
    segments: Sequence[SegmentState],
    *,
    book: PriceBook,
    metrics: Mapping[str, MetricDef],
    currency: str,
    late: bool = False,
) -> PeriodRating:
    """The lines and ledger entries that bill what ``segments`` of ``period`` still owe."""
    rater = _Rater(period, book, metrics, currency, late, several=len(segments) > 1)
    for segment in segments:
        rater.segment(segment)
    return PeriodRating(lines=tuple(rater.lines), entries=tuple(rater.entries))


__all__ = [
    "Billed",
    "BilledUsage",
    "PeriodRating",
    "SegmentState",
    "fee_days",
    "included_units",
    "minimum_days",
    "rate_period",
    "segment_differs",
    "shown_quantity",
]
