"""PURE: rating (no I/O). Prices and tiers are in :mod:`billing_batch.pricing` for now;
:func:`rate_period` bills a period's differences against the ledger, :func:`invoice_totals`
adds them up. Rules: ``docs/billing-rules.md`` and ``docs/pricing.md``."""

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

__all__ = [
    "LINE_KINDS",
    "Billed",
    "BilledUsage",
    "LedgerEntry",
    "Line",
    "PeriodRating",
    "SegmentState",
    "fee_days",
    "included_units",
    "minimum_days",
    "rate_period",
    "segment_differs",
    "shown_quantity",
]
