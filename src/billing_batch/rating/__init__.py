"""PURE: rating (no I/O). :mod:`.prices` prices a quantity of one metric (tiers,
packages, included units), :mod:`.plans` holds the price book's model (plans, accounts)
and the totals (subtotal, tax), :func:`rate_period` bills a period's differences against
the ledger. Reading a price book file is :mod:`billing_batch.config.price_book`. Rules:
``docs/billing-rules.md`` and ``docs/pricing.md``."""

from __future__ import annotations

from .lines import LINE_KINDS, LedgerEntry, Line
from .period import (
    Billed,
    BilledUsage,
    PeriodRating,
    SegmentState,
    fee_days,
    included_units,
    minimum_days,
    rate_period,
    segment_differs,
    shown_quantity,
)
from .plans import Account, Plan, PriceBook, Totals, tax, totals
from .prices import Charge, MetricPrice, Tier, TierCharge

__all__ = [
    "LINE_KINDS",
    "Account",
    "Billed",
    "BilledUsage",
    "Charge",
    "LedgerEntry",
    "Line",
    "MetricPrice",
    "PeriodRating",
    "Plan",
    "PriceBook",
    "SegmentState",
    "Tier",
    "TierCharge",
    "Totals",
    "fee_days",
    "included_units",
    "minimum_days",
    "rate_period",
    "segment_differs",
    "shown_quantity",
    "tax",
    "totals",
]
