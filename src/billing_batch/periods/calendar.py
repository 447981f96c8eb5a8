"""PURE: billing periods (calendar months, or anchor days of the subscription in force)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from .spans import Subscription

MAX_ANCHOR_DAY = 28


@dataclass(frozen=True)
class Period:
    """A billing period [start, end] and the nominal (uncut) period it belongs to."""

    start: date
    end: date
    nominal_start: date
    nominal_end: date
    kind: str = "regular"  # "final" when cut short by a cancellation

    @property
    def nominal_days(self) -> int:
        return (self.nominal_end - self.nominal_start).days + 1

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def _add_month(d: date) -> date:
    return date(d.year + (d.month == 12), d.month % 12 + 1, d.day)


def nominal_period(day: date, anchor: int) -> tuple[date, date]:
    """The anchor-aligned period containing ``day``: [anchor of this or the previous
    month, the day before the next anchor]."""
    if day.day >= anchor:
        start = date(day.year, day.month, anchor)
    else:
        start = date(day.year - (day.month == 1), (day.month - 2) % 12 + 1, anchor)
    return start, _add_month(start) - timedelta(days=1)


def _anchor_on(subs: Sequence[Subscription], day: date) -> tuple[int, Subscription | None]:
    sub = next((s for s in subs if s.plan_on(day) is not None), None)
    return (sub.anchor_day, sub) if sub else (1, None)


def _is_boundary(subs: Sequence[Subscription], day: date) -> bool:
    """Does a billing period start on ``day``?"""
    anchor_prev, sub_prev = _anchor_on(subs, day - timedelta(days=1))
    anchor, sub = _anchor_on(subs, day)
    if sub_prev is not None and sub_prev.canceled_from == day:
        return True  # a cancellation cuts the period
    if sub is not None and sub.start == day and sub.anchor_day != anchor_prev:
        return True  # a new timeline with another anchor
    return day.day == anchor


def month_periods(start: date, end: date) -> list[Period]:
    """The calendar months that intersect [start, end] (no subscription)."""
    out: list[Period] = []
    first = start.replace(day=1)
    while first <= end:
        last = _add_month(first) - timedelta(days=1)
        out.append(Period(first, last, first, last))
        first = last + timedelta(days=1)
    return out


def billing_periods(subs: Sequence[Subscription], start: date, end: date) -> list[Period]:
    """The billing periods that intersect [start, end], in order.

    A period starts on each anchor day of the anchor in force (1 without a
    subscription), on a cancellation date (the period before it is the *final* one), and
    when a subscription with a different anchor starts.
    """
    if not subs:
        return month_periods(start, end)
    first = start
    while not _is_boundary(subs, first) and (start - first).days < 62:
        first -= timedelta(days=1)
    periods: list[Period] = []
    p = first
    while p <= end:
        q = p + timedelta(days=1)
        while not _is_boundary(subs, q):
            q += timedelta(days=1)
        _, sub_at_end = _anchor_on(subs, q - timedelta(days=1))
        anchor_start, _ = _anchor_on(subs, p)
        n_start, n_end = nominal_period(p, anchor_start)
        final = sub_at_end is not None and sub_at_end.canceled_from == q
        periods.append(
            Period(p, q - timedelta(days=1), n_start, n_end, "final" if final else "regular")
        )
        p = q
    return periods


def closed_periods(subs: Sequence[Subscription], first_day: date, run_date: date) -> list[Period]:
    """The periods from the one containing ``first_day`` (the first activity) that
    ended before ``run_date``: what a run on ``run_date`` must have billed."""
    if first_day >= run_date:
        return []
    return [p for p in billing_periods(subs, first_day, run_date) if p.end < run_date]


def period_label(period: Period) -> str:
    """``2024-01`` for a calendar month, else ``2024-01-15–2024-02-14``."""
    if period.start.day == 1 and period.end == _add_month(period.start) - timedelta(days=1):
        return f"{period.start:%Y-%m}"
    return f"{period.start}–{period.end}"


__all__ = [
    "MAX_ANCHOR_DAY",
    "Period",
    "billing_periods",
    "closed_periods",
    "month_periods",
    "nominal_period",
    "period_label",
]
