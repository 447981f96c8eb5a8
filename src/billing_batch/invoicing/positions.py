"""Billing positions: per workspace and billing period, the usage in the lake now beside
what the ledger says was billed (the input of the planner, of rating and of the audit).

Periods run from each workspace's first activity (first usage day or first subscription
day) through the last period that ended before ``as_of``; each period is cut into
segments (plan spans). Lake quantities are read in one query per distinct (segment,
nominal period) for all the workspaces that need it, from one connection (one snapshot).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import duckdb

from ..periods import (
    Period,
    PlanSpan,
    Subscription,
    billing_periods,
    closed_periods,
    plan_spans,
)
from ..rating import Billed, SegmentState, segment_differs
from ..rating.plans import PriceBook
from ..storage import state
from ..storage.lake import Lake
from ..storage.sqlfiles import run_sql
from ..storage.state import StateConnection
from ..usage.queries import period_quantities
from . import ledger
from .ledger import SegmentKey
from .model import FINALIZED

#: (span start, span end, nominal start, nominal end): one lake read each
_Key = tuple[date, date, date, date]


@dataclass(frozen=True)
class PeriodPosition:
    workspace_id: str
    period: Period
    segments: tuple[SegmentState, ...]
    #: The status of the period's live invoice (draft, open, paid, overdue), or None.
    invoice_status: str | None = None
    #: Ledger segments of this period that match no segment of it now.
    unmatched: tuple[tuple[date, date], ...] = ()

    @property
    def finalized(self) -> bool:
        return self.invoice_status in FINALIZED

    def differs(self, book: PriceBook) -> bool:
        return any(segment_differs(s, book) for s in self.segments)


@dataclass
class Positions:
    as_of: date
    lake_snapshot_id: int
    by_workspace: dict[str, list[PeriodPosition]] = field(default_factory=dict)
    #: Ledger rows for a (workspace, period) that is no billing period of it now.
    orphans: list[tuple[str, tuple[date, date]]] = field(default_factory=list)

    def only(self, workspace_ids: Collection[str]) -> Positions:
        """These workspaces' positions alone (what a rating batch needs, shipped to a
        worker)."""
        return Positions(
            self.as_of,
            self.lake_snapshot_id,
            {ws: self.by_workspace[ws] for ws in workspace_ids if ws in self.by_workspace},
        )

    def period(self, workspace_id: str, period: Period) -> PeriodPosition | None:
        for pos in self.by_workspace.get(workspace_id, []):
            if (pos.period.start, pos.period.end) == (period.start, period.end):
                return pos
        return None


def _first_days(
    con: duckdb.DuckDBPyConnection, workspace_ids: Collection[str] | None
) -> dict[str, date]:
    ids = None if workspace_ids is None else sorted(workspace_ids)
    rows = run_sql(con, "usage_first_day", {"workspace_ids": ids}).fetchall()
    return {str(ws): day for ws, day in rows}


def _invoice_statuses(
    con: StateConnection, workspace_ids: Collection[str] | None
) -> dict[tuple[str, date, date], str]:
    """The status of each live invoice, by (workspace, period start, period end)."""
    wanted: list[str | None] = [None] if workspace_ids is None else [*sorted(workspace_ids)]
    return {
        (ws, date.fromisoformat(ps), date.fromisoformat(pe)): status
        for one in wanted
        for ws, ps, pe, status in state.query(
            con, "invoicing/live_invoice_periods", {"workspace_id": one}
        )
    }


def _spans(subs: Sequence[Subscription], period: Period, plan: str) -> list[PlanSpan]:
    if not subs:  # the common case, without the day-by-day walk
        return [PlanSpan(period.start, period.end, plan, None)]
    return plan_spans(subs, period.start, period.end, plan)


def _periods(
    subs: Sequence[Subscription], first: date | None, as_of: date, extra: Sequence[Period]
) -> list[Period]:
    periods = closed_periods(subs, first, as_of) if first is not None else []
    known = {(p.start, p.end) for p in periods}
    periods += [p for p in extra if (p.start, p.end) not in known]
    return sorted(periods, key=lambda p: p.start)


def _quantities(
    con: duckdb.DuckDBPyConnection, needs: Mapping[_Key, set[str]]
) -> dict[tuple[_Key, str], dict[str, Decimal]]:
    """One lake read per key, for every workspace that needs it (filtered by workspace
    when only one does)."""
    out: dict[tuple[_Key, str], dict[str, Decimal]] = {}
    for key, workspaces in needs.items():
        only = next(iter(workspaces)) if len(workspaces) == 1 else None
        rows = period_quantities(
            con, key[0], key[1], period_start=key[2], period_end=key[3], workspace_id=only
        )
        for (ws, metric), qty in rows.items():
            if ws in workspaces:
                out.setdefault((key, ws), {})[metric] = qty
    return out


def load_positions(
    lake_con: duckdb.DuckDBPyConnection,
    state_con: StateConnection,
    *,
    book: PriceBook,
    subscriptions: Mapping[str, Sequence[Subscription]],
    as_of: date,
    workspace_ids: Collection[str] | None = None,
    extra: Mapping[str, Sequence[Period]] | None = None,
) -> Positions:
    """The positions of every closed period (ended before ``as_of``) since each
    workspace's first activity, plus the ``extra`` periods asked for; all workspaces, or
    those of ``workspace_ids``. Read the ledger inside the caller's state transaction."""
    extra = extra or {}
    wanted = None if workspace_ids is None else set(workspace_ids)
    first = _first_days(lake_con, wanted)
    billed = ledger.billed(state_con, wanted)
    statuses = _invoice_statuses(state_con, wanted)
    workspaces = set(first) | set(billed) | set(extra)
    workspaces |= {ws for ws in subscriptions if wanted is None or ws in wanted}
    positions = Positions(as_of=as_of, lake_snapshot_id=Lake.current_snapshot(lake_con))
    layout: dict[str, list[tuple[Period, list[PlanSpan]]]] = {}
    needs: dict[_Key, set[str]] = {}
    for ws in sorted(workspaces):
        subs = subscriptions.get(ws, [])
        starts = [d for d in (first.get(ws), *(s.start for s in subs)) if d is not None]
        starts += [p[0] for p in billed.get(ws, {})]
        periods = _periods(subs, min(starts) if starts else None, as_of, extra.get(ws, ()))
        plan = book.account(ws).plan
        layout[ws] = []
        for period in periods:
            spans = _spans(subs, period, plan)
            layout[ws].append((period, spans))
            for span in spans:
                needs.setdefault((span.start, span.end, *_nominal(period)), set()).add(ws)
        known = {(p.start, p.end) for p, _ in layout[ws]}
        positions.orphans += [
            (ws, p) for p in billed.get(ws, {}) if p not in known and not _later(subs, p, as_of)
        ]
    quantities = _quantities(lake_con, needs)
    for ws, periods_spans in layout.items():
        ws_billed = billed.get(ws, {})
        positions.by_workspace[ws] = [
            _position(
                ws,
                period,
                spans,
                quantities,
                ws_billed.get((period.start, period.end), {}),
                statuses.get((ws, period.start, period.end)),
            )
            for period, spans in periods_spans
        ]
    return positions


def _position(
    ws: str,
    period: Period,
    spans: Sequence[PlanSpan],
    quantities: Mapping[tuple[_Key, str], dict[str, Decimal]],
    done: Mapping[SegmentKey, Billed],
    status: str | None,
) -> PeriodPosition:
    """One period of a workspace: each segment's usage in the lake beside what was
    billed for it."""
    segments = tuple(
        SegmentState(
            span=span,
            usage=quantities.get(((span.start, span.end, *_nominal(period)), ws), {}),
            billed=done.get((span.start, span.end), Billed()),
        )
        for span in spans
    )
    matched = {(s.start, s.end) for s in spans}
    return PeriodPosition(
        workspace_id=ws,
        period=period,
        segments=segments,
        invoice_status=status,
        unmatched=tuple(k for k in done if k not in matched),
    )


def _later(subs: Sequence[Subscription], period: tuple[date, date], as_of: date) -> bool:
    """A billing period of the workspace that is not closed as of ``as_of`` (billed
    early, or seen from an earlier date): not an orphan."""
    start, end = period
    return end >= as_of and any(
        (p.start, p.end) == period for p in billing_periods(subs, start, end)
    )


def _nominal(period: Period) -> tuple[date, date]:
    return (period.nominal_start, period.nominal_end)


__all__ = ["PeriodPosition", "Positions", "load_positions"]
