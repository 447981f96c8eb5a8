"""PURE: what rating produces: invoice lines and the ledger entries behind them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Literal

#: Line kinds: a period's own charges, and differences of an earlier, already invoiced
#: period carried on a later invoice (docs/billing-rules.md §7).
#: Discounts (rating.discounts) are lines too, with negative amounts, before tax;
#: ``adjustment`` lines are a rerate's debit invoice's (invoicing.rerate).
LineKind = Literal[
    "usage",
    "base_fee",
    "minimum",
    "late_usage",
    "late_base_fee",
    "late_minimum",
    "discount",
    "late_discount",
    "adjustment",
]
LINE_KINDS: tuple[str, ...] = (
    "usage",
    "base_fee",
    "minimum",
    "late_usage",
    "late_base_fee",
    "late_minimum",
    "discount",
    "late_discount",
    "adjustment",
)

#: What a ledger entry records: usage units of a metric, or days of a fixed charge.
EntryKind = Literal["usage", "base_fee", "minimum"]


@dataclass(frozen=True)
class Line:
    kind: str  # one of LINE_KINDS
    description: str
    amount: Decimal
    period_start: date  # the days this line covers (one segment of a billing period)
    period_end: date
    metric: str | None = None
    plan: str | None = None
    quantity: Decimal | None = None
    unit: str | None = None
    unit_price: Decimal | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "description": self.description,
            "amount": self.amount,
            "kind": self.kind,
            "metric": self.metric,
            "plan": self.plan,
            "quantity": self.quantity,
            "unit": self.unit,
            "unitPrice": self.unit_price,
            "periodStart": self.period_start,
            "periodEnd": self.period_end,
        }
        for key, value in self.detail.items():
            out.setdefault(key, value)  # detail never overrides the line's own fields
        return out


@dataclass(frozen=True)
class LedgerEntry:
    """One row of the billing ledger: what one invoice billed for one (billing period,
    segment, kind, metric). ``quantity`` is usage units, or days for fixed charges."""

    period_start: date
    period_end: date
    segment_start: date
    segment_end: date
    kind: str  # EntryKind
    metric: str  # "" for fixed charges
    plan: str
    quantity: Decimal
    amount: Decimal


__all__ = ["LINE_KINDS", "EntryKind", "LedgerEntry", "Line", "LineKind"]
