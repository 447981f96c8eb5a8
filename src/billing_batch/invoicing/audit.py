"""The audit: usage in the lake against what live invoices billed (docs/billing-rules.md §10).

For each workspace, closed period, segment and metric: the lake's quantity against the
ledger's (units on non-void finalized invoices); the fee days in force against the fee
days billed (base fee and minimum); and closed periods not billed at all. Each difference
is *explained* or *unexplained*:

* ``strict`` (the nightly's, right after it invoiced; ``billing-batch audit --strict``):
  the state a run on ``as_of`` must leave. Only late differences with no later closed
  period to carry them are explained ("waits for the next period to close"); anything
  else is money lost or billed twice.
* ``now`` (``billing-batch audit``'s default, any time): today's lake and state; what the
  next run will bill is explained ("the next run bills it": usage that arrived since, a
  period that closed since, a void, a subscription change). Unexplained: more billed than
  used for a metric that only grows (sum, count), more fee days billed than in force, and
  ledger rows that match no billing period: what no run can make right.

Healthy: nothing unexplained. Findings can be recorded in the state (``audit_runs``,
``audit_findings``, mirrored into the lake for analysts).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from .._core import clock
from .._core.ids import new_id
from .._core.jsonutil import loads
from ..config.metrics import MetricDef
from ..config.price_book import load_price_book
from ..config.settings import Settings
from ..rating import fee_days, minimum_days
from ..rating.plans import PriceBook
from ..storage import state
from ..storage.lake import Lake
from ..subscriptions.service import load_subscriptions
from ..usage.rollup import ensure_fresh
from .planner import waiting
from .positions import PeriodPosition, Positions, load_positions

Mode = Literal["strict", "now"]

#: Aggregations whose period quantity never decreases as events arrive.
_GROWING = frozenset({"sum", "count"})


@dataclass(frozen=True)
class Finding:
    workspace_id: str
    period_start: date
    period_end: date
    kind: str  # usage | base_fee | minimum | unbilled_period | ledger_mismatch
    status: str  # explained | unexplained
    reason: str
    metric: str = ""
    segment_start: date | None = None
    segment_end: date | None = None
    lake_quantity: Decimal | None = None
    billed_quantity: Decimal | None = None

    @property
    def explained(self) -> bool:
        return self.status == "explained"

    def to_dict(self) -> dict[str, Any]:
        return {
            "workspaceId": self.workspace_id,
            "period": {"start": self.period_start, "end": self.period_end},
            "segment": (
                {"start": self.segment_start, "end": self.segment_end}
                if self.segment_start
                else None
            ),
            "kind": self.kind,
            "metric": self.metric or None,
            "lakeQuantity": self.lake_quantity,
            "billedQuantity": self.billed_quantity,
            "status": self.status,
            "reason": self.reason,
        }


@dataclass
class AuditReport:
    as_of: date
    lake_snapshot_id: int
    mode: Mode
    periods_checked: int = 0
    findings: list[Finding] = field(default_factory=list)
    audit_id: str = field(default_factory=lambda: new_id("aud"))

    @property
    def unexplained(self) -> list[Finding]:
        return [f for f in self.findings if not f.explained]

    @property
    def healthy(self) -> bool:
        return not self.unexplained

    def counts(self) -> dict[str, int]:
        return {
            "periods_checked": self.periods_checked,
            "findings": len(self.findings),
            "explained": len(self.findings) - len(self.unexplained),
            "unexplained": len(self.unexplained),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "auditId": self.audit_id,
            "asOf": self.as_of,
            "lakeSnapshotId": self.lake_snapshot_id,
            "mode": self.mode,
            "healthy": self.healthy,
            **{_camel(k): v for k, v in self.counts().items()},
            "findings": [f.to_dict() for f in self.findings],
        }


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(w.title() for w in rest)


# --- the pure comparison -------------------------------------------------------------------
class _Checker:
    def __init__(self, book: PriceBook, metrics: Mapping[str, MetricDef], mode: Mode) -> None:
        self.book = book
        self.metrics = metrics
        self.mode = mode
        self.findings: list[Finding] = []

    def workspace(self, ws: str, positions: Sequence[PeriodPosition]) -> None:
        waits = {(p.start, p.end) for p in waiting(positions, self.book)}
        for pos in positions:
            self._period(ws, pos, (pos.period.start, pos.period.end) in waits)

    def _add(self, pos: PeriodPosition, kind: str, status: str, reason: str, **kw: Any) -> None:
        self.findings.append(
            Finding(
                workspace_id=pos.workspace_id,
                period_start=pos.period.start,
                period_end=pos.period.end,
                kind=kind,
                status=status,
                reason=reason,
                **kw,
            )
        )

    def _period(self, ws: str, pos: PeriodPosition, waits: bool) -> None:
        for start, end in pos.unmatched:
            self._add(
                pos,
                "ledger_mismatch",
                "unexplained",
                f"invoices billed the days {start}..{end}, which are no segment of this "
                "period now (a subscription change rewrote billed days?)",
                segment_start=start,
                segment_end=end,
            )
        if not pos.differs(self.book):
            return
        if not pos.finalized:
            status, reason = (
                ("explained", "not billed yet: the next run bills it")
                if self.mode == "now"
                else ("unexplained", "closed and not billed")
            )
            self._add(pos, "unbilled_period", status, reason)
            self._segments(pos, status, reason)
            return
        if self.mode == "now":
            status, reason = "explained", "late difference: the next run bills it"
        elif waits:
            status, reason = "explained", "late difference: waits for the next period to close"
        else:
            status, reason = "unexplained", "late difference not carried by a later invoice"
        self._segments(pos, status, reason)

    def _segments(self, pos: PeriodPosition, status: str, reason: str) -> None:
        for seg in pos.segments:
            span, billed = seg.span, seg.billed
            keys = {"segment_start": span.start, "segment_end": span.end}
            for metric in sorted(set(seg.usage) | set(billed.usage)):
                now = seg.usage.get(metric, Decimal(0))
                done = billed.usage[metric].quantity if metric in billed.usage else Decimal(0)
                if now == done:
                    continue
                agg = self.metrics[metric].aggregation if metric in self.metrics else ""
                over = done > now and agg in _GROWING
                self._add(
                    pos,
                    "usage",
                    "unexplained" if over else status,
                    "billed more than was used" if over else reason,
                    metric=metric,
                    lake_quantity=now,
                    billed_quantity=done,
                    **keys,
                )
            plan = self.book.plan(seg.plan_name())
            for kind, due, done_days in (
                ("base_fee", fee_days(span, plan), billed.fee_days),
                ("minimum", minimum_days(span, plan), billed.minimum_days),
            ):
                if due != done_days:
                    over = done_days > due
                    self._add(
                        pos,
                        kind,
                        "unexplained" if over else status,
                        "more fee days billed than in force" if over else reason,
                        lake_quantity=Decimal(due),
                        billed_quantity=Decimal(done_days),
                        **keys,
                    )


def check_positions(
    positions: Positions, book: PriceBook, metrics: Mapping[str, MetricDef], *, mode: Mode
) -> AuditReport:
    """PURE: the findings of an audit over already loaded positions."""
    checker = _Checker(book, metrics, mode)
    checked = 0
    for ws, periods in sorted(positions.by_workspace.items()):
        checker.workspace(ws, periods)
        checked += len(periods)
    for ws, (start, end) in positions.orphans:
        checker.findings.append(
            Finding(
                workspace_id=ws,
                period_start=start,
                period_end=end,
                kind="ledger_mismatch",
                status="unexplained",
                reason="invoices billed a period that is no billing period of the workspace now",
            )
        )
    return AuditReport(
        as_of=positions.as_of,
        lake_snapshot_id=positions.lake_snapshot_id,
        mode=mode,
        periods_checked=checked,
        findings=checker.findings,
    )


# --- the service ----------------------------------------------------------------------------
def last_run(settings: Settings) -> tuple[date, int | None] | None:
    """The date of the newest nightly run and the lake snapshot its invoices were rated at."""
    with state.opened(settings) as con:
        row = state.query(con, "invoicing/latest_run").fetchone()
    if row is None:
        return None
    summary = loads(row["summary"] or "{}")
    counts = (summary.get("steps", {}).get("invoices") or {}).get("counts") or {}
    snapshot = counts.get("lake_snapshot")
    return date.fromisoformat(row["run_date"]), int(snapshot) if snapshot is not None else None


def audit(
    settings: Settings,
    *,
    as_of: date | None = None,
    snapshot: int | None = None,
    mode: Mode = "now",
    record: bool = False,
    run_id: str | None = None,
) -> AuditReport:
    """Audit the periods closed before ``as_of`` with the lake at ``snapshot`` and the
    ledger as it is (see the module docstring for the two modes). Defaults: ``now`` mode
    as of today with the lake now (the rollup brought up to date first); ``strict``
    without a date checks what the newest nightly run left (its date, and the snapshot
    its invoices were rated at). ``record`` stores the audit and its findings."""
    book = load_price_book(settings)
    if as_of is None and snapshot is None and mode == "strict":
        latest = last_run(settings)
        if latest is not None:
            as_of, snapshot = latest
    day = as_of or clock.utcnow().date()
    if snapshot is None:
        ensure_fresh(settings)
    lake_con = Lake(settings).connect(read_only=True, snapshot=snapshot)
    try:
        with state.opened(settings) as con:
            positions = load_positions(
                lake_con,
                con,
                book=book,
                subscriptions=load_subscriptions(con),
                as_of=day,
            )
    finally:
        lake_con.close()
    report = check_positions(positions, book, settings.metrics, mode=mode)
    if record:
        save(settings, report, run_id=run_id)
    return report


def save(settings: Settings, report: AuditReport, *, run_id: str | None = None) -> None:
    """Record an audit and its findings (state tables ``audit_runs``, ``audit_findings``)."""
    run = {
        "audit_id": report.audit_id,
        "run_id": run_id,
        "as_of": report.as_of.isoformat(),
        "lake_snapshot_id": report.lake_snapshot_id,
        "at": clock.ts(clock.utcnow()),
        "mode": report.mode,
        "periods_checked": report.periods_checked,
        "findings": len(report.findings),
        "unexplained": len(report.unexplained),
    }
    with state.opened(settings) as con, state.transaction(con):
        state.query(con, "invoicing/insert_audit_run", run)
        state.query_many(
            con,
            "invoicing/insert_audit_finding",
            [_row(report.audit_id, f) for f in report.findings],
        )


def _row(audit_id: str, f: Finding) -> dict[str, Any]:
    def iso(d: date | None) -> str | None:
        return d.isoformat() if d else None

    def dec(d: Decimal | None) -> str | None:
        return None if d is None else str(d)

    return {
        "audit_id": audit_id,
        "workspace_id": f.workspace_id,
        "period_start": f.period_start.isoformat(),
        "period_end": f.period_end.isoformat(),
        "segment_start": iso(f.segment_start),
        "segment_end": iso(f.segment_end),
        "kind": f.kind,
        "metric": f.metric,
        "lake_quantity": dec(f.lake_quantity),
        "billed_quantity": dec(f.billed_quantity),
        "status": f.status,
        "reason": f.reason,
    }


def describe(findings: Iterable[Finding]) -> list[str]:
    """One line per finding, for terminals and logs."""
    out = []
    for f in findings:
        what = f.metric or f.kind
        qty = ""
        if f.lake_quantity is not None or f.billed_quantity is not None:
            qty = f": lake {f.lake_quantity}, billed {f.billed_quantity}"
        out.append(
            f"{f.status}: {f.workspace_id} {f.period_start}..{f.period_end} {what}{qty} "
            f"({f.reason})"
        )
    return out


__all__ = [
    "AuditReport",
    "Finding",
    "audit",
    "check_positions",
    "describe",
    "last_run",
    "save",
]
