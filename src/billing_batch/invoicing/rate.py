"""Rating an invoice: the glue between the billing positions (usage in the lake beside
what the ledger billed) and the pure rules of :mod:`billing_batch.rating`.

* :func:`period_for`: a requested [start, end] must be one billing period of the
  workspace (docs/billing-rules.md §2);
* :func:`plan_requested`: requested periods carry the late differences of the
  workspace's earlier invoiced periods (the nightly's plan is :mod:`.planner`);
* :func:`rate_planned`: one planned invoice priced into lines and totals
  (:class:`~.model.Rated`), its own period's differences, then those it carries;
* :func:`rate_batch`: many, each failure in its place (the unit fanned out on Dask).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from .._core.errors import BillingError, InputError, StateError
from ..config.settings import Settings
from ..periods import Period, Subscription, billing_periods
from ..rating import LedgerEntry, Line, PeriodRating, SegmentState, rate_period
from ..rating.discounts import discount_lines
from ..rating.plans import PriceBook, totals
from .model import Rated
from .planner import PlannedInvoice
from .positions import Positions


def period_for(subs: Sequence[Subscription], start: date, end: date) -> Period:
    """The billing period [start, end] of a workspace with these subscriptions; anything
    else is refused (invoices bill whole billing periods, so that every day is billed
    once: docs/billing-rules.md §2)."""
    if end < start:
        raise InputError(f"period end {end} is before its start {start}")
    periods = billing_periods(subs, start, end)
    for p in periods:
        if p.start == start and p.end == end:
            return p
    containing = periods[0]
    raise InputError(
        f"{start}..{end} is not a billing period of this workspace: the period containing "
        f"{start} is {containing.start}..{containing.end} (calendar months without a "
        "subscription, else the subscription's anchor days)"
    )


def plan_requested(
    positions: Positions, book: PriceBook, requests: Sequence[PlannedInvoice]
) -> list[PlannedInvoice]:
    """Requested periods carry the differences of the workspace's earlier invoiced
    periods (each carried once, by the earliest request after it)."""
    taken: set[tuple[str, date]] = set()
    out: list[PlannedInvoice] = []
    for req in sorted(requests, key=lambda r: (r.period.start, r.workspace_id)):
        carried = []
        for pos in positions.by_workspace.get(req.workspace_id, []):
            key = (req.workspace_id, pos.period.start)
            if (
                pos.finalized
                and pos.period.end < req.period.start
                and key not in taken
                and pos.differs(book)
            ):
                carried.append(pos.period)
                taken.add(key)
        out.append(PlannedInvoice(req.workspace_id, req.period, tuple(carried)))
    return out


def rate_discounted(
    settings: Settings,
    book: PriceBook,
    workspace_id: str,
    period: Period,
    segments: Sequence[SegmentState],
    *,
    late: bool = False,
) -> PeriodRating:
    """A period's differences (:func:`~billing_batch.rating.rate_period`) followed by the
    workspace's discount lines on them (:mod:`billing_batch.rating.discounts`)."""
    account = book.account(workspace_id)
    rated = rate_period(
        period, segments, book=book, metrics=settings.metrics, currency=account.currency, late=late
    )
    off = discount_lines(period, rated.lines, account.discounts, account.currency, late=late)
    return PeriodRating(lines=rated.lines + tuple(off), entries=rated.entries)


def rate_planned(
    settings: Settings, book: PriceBook, positions: Positions, item: PlannedInvoice
) -> Rated:
    """Rate one planned invoice: its period's own differences, then the late differences
    of the earlier periods it carries (rules: rating.rate_period)."""
    ws = item.workspace_id
    account = book.account(ws)
    lines: list[Line] = []
    entries: list[LedgerEntry] = []
    for period, late in ((item.period, False), *((p, True) for p in item.carried)):
        pos = positions.period(ws, period)
        if pos is None:  # pragma: no cover - the planner only plans known periods
            raise StateError(f"no billing position for {ws} {period.start}..{period.end}")
        if pos.unmatched:
            raise StateError(
                f"workspace {ws}: invoices billed segments {pos.unmatched} of "
                f"{period.start}..{period.end} that are not its segments now; see "
                "`billing-batch audit`"
            )
        rated = rate_discounted(settings, book, ws, period, pos.segments, late=late)
        lines += rated.lines
        entries += rated.entries
    sums = totals([x.amount for x in lines], account.tax_rate, account.currency)
    return Rated(
        workspace_id=ws,
        period=item.period,
        account=account,
        currency=account.currency,
        lines=tuple(lines),
        subtotal=sums.subtotal,
        tax=sums.tax,
        total=sums.total,
        entries=tuple(entries),
        price_book_version=book.version,
        price_book_digest=book.digest,
        lake_snapshot_id=positions.lake_snapshot_id,
    )


def rate_batch(
    settings: Settings, book: PriceBook, positions: Positions, items: Sequence[PlannedInvoice]
) -> list[Rated | BillingError]:
    """Rate planned invoices, each on its own (pure: no I/O, so it may run on a worker of
    another machine); a failure of one is returned in its place."""
    out: list[Rated | BillingError] = []
    for item in items:
        try:
            out.append(rate_planned(settings, book, positions, item))
        except BillingError as exc:
            out.append(exc)
    return out


__all__ = ["period_for", "plan_requested", "rate_batch", "rate_discounted", "rate_planned"]
