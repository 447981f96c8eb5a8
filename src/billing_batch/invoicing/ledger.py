"""The billing ledger (state table ``billing_ledger``): what finalized invoices billed.

Written once per invoice, in the transaction that finalizes it; read as the sum over the
live finalized invoices (a void releases its rows). See docs/billing-rules.md §6.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from ..rating import Billed, BilledUsage, LedgerEntry

#: Invoice statuses whose ledger rows count as billed.
LIVE_FINALIZED = ("open", "paid", "overdue")

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


def billed(
    con: sqlite3.Connection, workspace_ids: Collection[str] | None = None
) -> BilledByWorkspace:
    """What live finalized invoices billed, per workspace, period and segment (the first
    invoice's plan for a segment is the plan that keeps pricing it)."""
    sql = (
        "SELECT b.workspace_id, b.period_start, b.period_end, b.segment_start, b.segment_end, "
        "b.kind, b.metric, b.plan, b.quantity, b.amount FROM billing_ledger AS b "
        "JOIN invoices AS i ON i.id = b.invoice_id "
        f"WHERE i.status IN ({', '.join('?' for _ in LIVE_FINALIZED)})"
    )
    params: list[str] = list(LIVE_FINALIZED)
    if workspace_ids is not None:
        if not workspace_ids:
            return {}
        sql += f" AND b.workspace_id IN ({', '.join('?' for _ in workspace_ids)})"
        params += list(workspace_ids)
    sql += " ORDER BY i.finalized_at, i.id"
    acc: dict[str, dict[PeriodKey, dict[SegmentKey, _Acc]]] = {}
    for ws, ps, pe, ss, se, kind, metric, plan, qty, amount in con.execute(sql, params):
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
    con: sqlite3.Connection, invoice_id: str, workspace_id: str, entries: Sequence[LedgerEntry]
) -> None:
    """Write an invoice's ledger rows (inside the transaction that finalizes it)."""
    con.executemany(
        "INSERT INTO billing_ledger (invoice_id, workspace_id, period_start, period_end, "
        "segment_start, segment_end, kind, metric, plan, quantity, amount) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                invoice_id,
                workspace_id,
                e.period_start.isoformat(),
                e.period_end.isoformat(),
                e.segment_start.isoformat(),
                e.segment_end.isoformat(),
                e.kind,
                e.metric,
                e.plan,
                str(e.quantity),
                str(e.amount),
            )
            for e in entries
        ],
    )


__all__ = ["LIVE_FINALIZED", "BilledByWorkspace", "billed", "record"]
