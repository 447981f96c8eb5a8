"""PURE: billing periods and the plans in force on each day (no I/O).

Rules: ``docs/billing-rules.md`` sections 1-3. A :class:`Subscription` here is the view
derived from a workspace's append-only subscription events (:mod:`billing_batch.
subscriptions.service` reads and writes them); everything in this package is a function
of those views and dates.
"""

from __future__ import annotations

from .calendar import (
    MAX_ANCHOR_DAY,
    Period,
    billing_periods,
    closed_periods,
    month_periods,
    nominal_period,
    period_label,
)
from .spans import PlanSpan, Subscription, first_subscription_day, plan_spans

__all__ = [
    "MAX_ANCHOR_DAY",
    "Period",
    "PlanSpan",
    "Subscription",
    "billing_periods",
    "closed_periods",
    "first_subscription_day",
    "month_periods",
    "nominal_period",
    "period_label",
    "plan_spans",
]
