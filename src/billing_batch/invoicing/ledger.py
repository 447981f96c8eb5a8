"""The billing ledger (state table ``billing_ledger``): what finalized invoices billed.

Written once per invoice, in the transaction that finalizes it; read as the sum over the
live finalized invoices (a void releases its rows). See docs/billing-rules.md §6.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from ..rating import Billed, BilledUsage, LedgerEntry
from ..storage import state
from ..storage.state import StateConnection
from .model import FINALIZED

PeriodKey = tuple[date, date]
SegmentKey = tuple[date, date]


@dataclass
class _Acc:
    plan: str | None = None
    usage: dict[str, list[Decimal]] = field(default_factory=dict)
    fee_days: int = 0
    fee_amount: Decimal = Decimal(0)
    minimum_days: int = 0
    minimum_amount: Decimal = Decimal(0)

    def add(self, kind: str, metric: str, plan: str, quantity: Decimal, amount: Decimal) -> None:
        if self.plan is None:
            self.plan = plan
        if kind == "usage":
            acc = self.usage.setdefault(metric, [Decimal(0), Decimal(0)])
            acc[0] += quantity
            acc[1] += amount
        elif kind == "base_fee":
            self.fee_days += int(quantity)
            self.fee_amount += amount
        else:
            self.minimum_days += int(quantity)
            self.minimum_amount += amount

    def billed(self) -> Billed:
        return Billed(
            plan=self.plan,
            usage={m: BilledUsage(q, a) for m, (q, a) in self.usage.items()},
            fee_days=self.fee_days,
            fee_amount=self.fee_amount,
            minimum_days=self.minimum_days,
            minimum_amount=self.minimum_amount,
        )


#: workspace → billing period → segment → what was billed
BilledByWorkspace = dict[str, dict[PeriodKey, dict[SegmentKey, Billed]]]


def _rows(con: StateConnection, workspace_ids: Collection[str] | None) -> Iterator[Any]:
    """The ledger rows (with their invoice's status) of these workspaces, or of all."""
    if workspace_ids is None:
        yield from state.query(con, "invoicing/ledger_rows", {"workspace_id": None})
        return
    for ws in sorted(workspace_ids):
        yield from state.query(con, "invoicing/ledger_rows", {"workspace_id": ws})


def billed(con: StateConnection, workspace_ids: Collection[str] | None = None) -> BilledByWorkspace:
    """What live finalized invoices billed, per workspace, period and segment (the first
    invoice's plan for a segment is the plan that keeps pricing it)."""
    acc: dict[str, dict[PeriodKey, dict[SegmentKey, _Acc]]] = {}
    for ws, ps, pe, ss, se, kind, metric, plan, qty, amount, status in _rows(con, workspace_ids):
        if status not in FINALIZED:  # a void released its rows
            continue
        period = (date.fromisoformat(ps), date.fromisoformat(pe))
        segment = (date.fromisoformat(ss), date.fromisoformat(se))
        acc.setdefault(ws, {}).setdefault(period, {}).setdefault(segment, _Acc()).add(
            kind, metric, plan, Decimal(qty), Decimal(amount)
        )
    return {
        ws: {p: {s: a.billed() for s, a in segs.items()} for p, segs in periods.items()}
        for ws, periods in acc.items()
    }


def record(
    con: StateConnection, invoice_id: str, workspace_id: str, entries: Sequence[LedgerEntry]
) -> None:
    """Write an invoice's ledger rows (inside the transaction that finalizes it)."""
    state.query_many(
        con,
        "invoicing/insert_ledger_row",
        [
            {
                "invoice_id": invoice_id,
                "workspace_id": workspace_id,
                "period_start": e.period_start.isoformat(),
                "period_end": e.period_end.isoformat(),
                "segment_start": e.segment_start.isoformat(),
                "segment_end": e.segment_end.isoformat(),
                "kind": e.kind,
                "metric": e.metric,
                "plan": e.plan,
                "quantity": str(e.quantity),
                "amount": str(e.amount),
            }
            for e in entries
        ],
    )


__all__ = ["BilledByWorkspace", "PeriodKey", "SegmentKey", "billed", "record"]
