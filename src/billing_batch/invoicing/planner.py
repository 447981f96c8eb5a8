"""PURE: which invoices a run creates, and which earlier periods each one carries
(docs/billing-rules.md §7). No I/O: it reads positions.

Per workspace, over the periods closed before the run date:

1. every period without a finalized live invoice that has a difference to bill gets its
   own invoice;
2. the differences of periods that have a finalized invoice (late usage, released rows)
   ride on the earliest invoice of step 1 for a later period;
3. when there is none, the latest later closed period without a finalized invoice is
   invoiced to carry them; otherwise they wait for the next period to close.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..periods import Period
from ..rating.plans import PriceBook
from .positions import PeriodPosition


@dataclass(frozen=True)
class PlannedInvoice:
    workspace_id: str
    period: Period
    #: Earlier, already invoiced periods whose differences this invoice carries.
    carried: tuple[Period, ...] = ()


def plan_workspace(
    workspace_id: str, positions: Sequence[PeriodPosition], book: PriceBook
) -> list[PlannedInvoice]:
    """The invoices one workspace needs (positions ascending by period)."""
    open_periods = [p for p in positions if not p.finalized]
    own = [p.period for p in open_periods if p.differs(book)]
    carried: dict[Period, list[Period]] = {}
    for late in (p for p in positions if p.finalized and p.differs(book)):
        carrier = next((p for p in own if p.start > late.period.end), None)
        if carrier is None:
            later = [p.period for p in open_periods if p.period.start > late.period.end]
            if not later:
                continue  # waits for the next period to close
            carrier = later[-1]
            own = sorted({*own, carrier}, key=lambda p: p.start)
        carried.setdefault(carrier, []).append(late.period)
    return [PlannedInvoice(workspace_id, p, tuple(carried.get(p, ()))) for p in own]


def plan_invoices(
    by_workspace: Mapping[str, Sequence[PeriodPosition]], book: PriceBook
) -> list[PlannedInvoice]:
    """Every invoice the run creates, in (period start, workspace) order."""
    planned = [
        item
        for ws, positions in by_workspace.items()
        for item in plan_workspace(ws, positions, book)
    ]
    return sorted(planned, key=lambda i: (i.period.start, i.workspace_id, i.period.end))


def waiting(positions: Sequence[PeriodPosition], book: PriceBook) -> list[Period]:
    """Finalized periods whose differences wait for a later period to close."""
    open_periods = [p.period for p in positions if not p.finalized]
    return [
        p.period
        for p in positions
        if p.finalized and p.differs(book) and not any(o.start > p.period.end for o in open_periods)
    ]


__all__ = ["PlannedInvoice", "plan_invoices", "plan_workspace", "waiting"]
