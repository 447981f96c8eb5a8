"""PURE: subscriptions as dated views, and the runs of days with one plan (spans)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any


@dataclass(frozen=True)
class Subscription:
    """One subscription as derived from its events."""

    id: str
    workspace_id: str
    start: date
    anchor_day: int
    trial_end: date | None
    canceled_from: date | None  # first day without it
    plans: tuple[tuple[date, str], ...]  # (effective date, plan), ascending
    history: tuple[dict[str, Any], ...]

    def status(self, on: date) -> str:
        if self.canceled_from is not None and on >= self.canceled_from:
            return "canceled"
        if on < self.start:
            return "scheduled"
        if self.trial_end is not None and on <= self.trial_end:
            return "trialing"
        return "active"

    def plan_on(self, day: date) -> str | None:
        """The plan in force on ``day`` (None: the subscription is not in force)."""
        if day < self.start or (self.canceled_from is not None and day >= self.canceled_from):
            return None
        current = None
        for eff, plan in self.plans:
            if eff <= day:
                current = plan
        return current

    @property
    def last_day(self) -> date | None:
        return None if self.canceled_from is None else self.canceled_from - timedelta(days=1)

    def to_dict(self, on: date) -> dict[str, Any]:
        return {
            "id": self.id,
            "workspaceId": self.workspace_id,
            "status": self.status(on),
            "plan": self.plan_on(on) or self.plans[-1][1],
            "start": self.start,
            "anchorDay": self.anchor_day,
            "trialEnd": self.trial_end,
            "canceledFrom": self.canceled_from,
            "plans": [{"plan": p, "effective": d} for d, p in self.plans],
        }


@dataclass(frozen=True)
class PlanSpan:
    """A run of consecutive days [start, end] with one plan and one subscription (or
    none: then ``plan`` is the price-book plan, which prices usage only)."""

    start: date
    end: date
    plan: str
    subscription_id: str | None
    trial_end: date | None = None

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def fee_days(self) -> int:
        """Days of this span that carry fixed charges (base fee and minimum): days of a
        subscription in force, minus trial days; 0 without a subscription."""
        if self.subscription_id is None:
            return 0
        first = self.start
        if self.trial_end is not None and self.trial_end >= first:
            first = self.trial_end + timedelta(days=1)
        return max((self.end - first).days + 1, 0)


def _in_force(subs: Sequence[Subscription], day: date) -> Subscription | None:
    return next((s for s in subs if s.plan_on(day) is not None), None)


def plan_spans(
    subs: Sequence[Subscription], start: date, end: date, default_plan: str
) -> list[PlanSpan]:
    """Cover [start, end] with runs of one plan and one subscription: the subscription's
    plan where one is in force, ``default_plan`` (the price-book plan) elsewhere."""
    spans: list[PlanSpan] = []
    day = start
    while day <= end:
        sub = _in_force(subs, day)
        plan = sub.plan_on(day) if sub else default_plan
        assert plan is not None
        run_end = day
        while run_end < end:
            nxt = run_end + timedelta(days=1)
            nsub = _in_force(subs, nxt)
            nplan = nsub.plan_on(nxt) if nsub else default_plan
            if nsub is not sub or nplan != plan:
                break
            run_end = nxt
        spans.append(
            PlanSpan(
                start=day,
                end=run_end,
                plan=plan,
                subscription_id=sub.id if sub else None,
                trial_end=sub.trial_end if sub else None,
            )
        )
        day = run_end + timedelta(days=1)
    return spans


def first_subscription_day(subs: Sequence[Subscription]) -> date | None:
    return min((s.start for s in subs), default=None)


__all__ = ["PlanSpan", "Subscription", "first_subscription_day", "plan_spans"]
