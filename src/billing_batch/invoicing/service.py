"""Invoices: one function per verb (create, finalize, void, mark overdue, get, list, and
the nightly's invoicing of closed periods). Each opens what it needs (the price book, a
fresh read-only lake snapshot, the state store) and runs the moves of :mod:`.lifecycle`
in one state transaction.

Rating (:mod:`.rate`, rules in :mod:`billing_batch.rating`) turns a workspace's usage for
a billing period into lines with the price book and the plans in force each day: usage
per metric and plan span, the prorated base fee, minimum-commitment top-ups, the late
usage of earlier periods already invoiced (billed as "now minus billed", from the
ledger), then subtotal, tax and total (docs/billing-rules.md).

Lifecycle: a draft can be refreshed any number of times (same id; never a second live
invoice for one workspace and period). Finalizing re-rates the draft, assigns the next
gap-free number of the issue year (:mod:`.numbering`), freezes lines and amounts,
records what it billed and emits ``billing.invoice.finalized``; the JSON and PDF are
then written once (:mod:`.publish`). Allowed moves: ``open → paid | void | overdue`` and
``overdue → paid | void``; anything else is a
:class:`~billing_batch._core.errors.StateError`. Each invoice records the price-book
version (and digest) and the lake snapshot that priced it (:mod:`.explain` recomputes it
from both).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime

import duckdb

from .._core import clock
from .._core.errors import BillingError, InputError, StateError
from .._core.ids import check_workspace_id
from ..config.price_book import load_price_book
from ..config.settings import Settings
from ..periods import Period, Subscription
from ..rating.plans import PriceBook
from ..storage import state
from ..storage.lake import Lake
from ..subscriptions.service import load_subscriptions
from ..usage.rollup import ensure_fresh
from .lifecycle import Issuing, issue, transition
from .model import STATUSES, Invoice, Rated
from .planner import PlannedInvoice, plan_invoices
from .positions import Positions, load_positions
from .publish import publish_invoice_files
from .rate import period_for, plan_requested
from .store import find_invoice, load_invoice, open_invoices_due_before, select_invoices


# --- reading -------------------------------------------------------------------------------
def get_invoice(settings: Settings, invoice_id: str) -> Invoice:
    """The invoice with this id (or number), as it is now."""
    with state.opened(settings) as con:
        return find_invoice(con, invoice_id)


def list_invoices(
    settings: Settings,
    *,
    workspace_id: str | None = None,
    status: str | None = None,
    limit: int = 1000,
) -> list[Invoice]:
    if status is not None and status not in STATUSES:
        raise InputError(f"unknown status {status!r} (one of {', '.join(STATUSES)})")
    with state.opened(settings) as con:
        return select_invoices(con, workspace_id=workspace_id, status=status, limit=limit)


# --- creating ------------------------------------------------------------------------------
@contextmanager
def _fresh_lake(settings: Settings) -> Iterator[tuple[PriceBook, duckdb.DuckDBPyConnection]]:
    """The price book and a read-only lake connection, the rollup brought up to date."""
    book = load_price_book(settings)
    ensure_fresh(settings)
    lake_con = Lake(settings).connect(read_only=True)
    try:
        yield book, lake_con
    finally:
        lake_con.close()


def create_invoice(
    settings: Settings,
    workspace_id: str,
    start: date,
    end: date,
    *,
    now: datetime | None = None,
) -> Invoice:
    """Create (or refresh) the draft invoice of ``workspace_id`` for the billing period
    [start, end]: what that period still owes, plus the late differences of the
    workspace's earlier invoiced periods."""
    result = create_invoices(settings, [(workspace_id, start, end)], now=now)[0]
    if isinstance(result, BillingError):
        raise result
    return result


def _requested(
    subs: Mapping[str, Sequence[Subscription]], requests: Sequence[tuple[str, date, date]]
) -> list[PlannedInvoice | BillingError]:
    """Each request as the billing period it names, or the error refusing it."""
    slots: list[PlannedInvoice | BillingError] = []
    for ws, start, end in requests:
        try:
            check_workspace_id(ws)
            slots.append(PlannedInvoice(ws, period_for(subs.get(ws, []), start, end)))
        except BillingError as exc:
            slots.append(exc)
    return slots


def create_invoices(
    settings: Settings,
    requests: Sequence[tuple[str, date, date]],
    *,
    now: datetime | None = None,
    finalize: bool = False,
) -> list[Invoice | BillingError]:
    """Create or refresh the drafts of many (workspace, start, end) billing periods (and
    optionally finalize them) in one state transaction; a failure of one is returned in
    its place. Reads the usage fresh (the rollup is brought up to date first)."""
    now = clock.aware(now)
    with _fresh_lake(settings) as (book, lake_con), state.opened(settings) as con:
        subs = load_subscriptions(con)
        slots = _requested(subs, requests)
        wanted = [x for x in slots if isinstance(x, PlannedInvoice)]
        extra: dict[str, list[Period]] = {}
        for x in wanted:
            extra.setdefault(x.workspace_id, []).append(x.period)
        with state.transaction(con):
            positions = load_positions(
                lake_con,
                con,
                book=book,
                subscriptions=subs,
                as_of=max((x.period.start for x in wanted), default=now.date()),
                workspace_ids=set(extra),
                extra=extra,
            )
            planned = {
                (p.workspace_id, p.period): p for p in plan_requested(positions, book, wanted)
            }
            return [
                slot
                if isinstance(slot, BillingError)
                else issue(
                    settings,
                    con,
                    book,
                    positions,
                    planned[(slot.workspace_id, slot.period)],
                    now,
                    finalize=finalize,
                )
                for slot in slots
            ]


# --- the nightly -----------------------------------------------------------------------------
def plan_closed_periods(settings: Settings, run_date: date) -> list[PlannedInvoice]:
    """What :func:`invoice_closed_periods` would invoice for ``run_date`` now (read only)."""
    with _fresh_lake(settings) as (book, lake_con), state.opened(settings) as con:
        positions = load_positions(
            lake_con, con, book=book, subscriptions=load_subscriptions(con), as_of=run_date
        )
    return plan_invoices(positions.by_workspace, book)


#: Rates planned invoices elsewhere (on a Dask cluster: ``nightly.fanout.rate_on_cluster``):
#: (book, positions, planned) → each one's rating or the error refusing it, in order.
RateMany = Callable[[PriceBook, Positions, list[PlannedInvoice]], list[Rated | BillingError]]


def invoice_closed_periods(
    settings: Settings,
    run_date: date,
    *,
    now: datetime | None = None,
    rate_many: RateMany | None = None,
) -> tuple[Positions, list[tuple[PlannedInvoice, Invoice | BillingError]]]:
    """The nightly's invoicing (docs/billing-rules.md §7): every billing period closed
    before ``run_date`` since each workspace's first activity that still owes anything
    gets its invoice, finalized, carrying the late differences of earlier periods; all
    in one state transaction, from one lake snapshot. Returns the positions it read and
    each planned invoice with its result (one failure never stops the others).
    ``rate_many`` rates them all first, elsewhere (pure work: workers); the writes stay
    here, in this one transaction."""
    now = clock.aware(now)
    with _fresh_lake(settings) as (book, lake_con), state.opened(settings) as con:
        subs = load_subscriptions(con)
        with state.transaction(con):
            positions = load_positions(lake_con, con, book=book, subscriptions=subs, as_of=run_date)
            planned = plan_invoices(positions.by_workspace, book)
            ratings: list[Rated | BillingError | None] = [None] * len(planned)
            if rate_many is not None and planned:
                ratings = [*rate_many(book, positions, planned)]
            known = Issuing.read(con)
            results: list[tuple[PlannedInvoice, Invoice | BillingError]] = []
            for item, r in zip(planned, ratings, strict=True):
                one = issue(
                    settings, con, book, positions, item, now, finalize=True, rated=r, known=known
                )
                results.append((item, one))
            known.finish(con)
    return positions, results


# --- the later moves -------------------------------------------------------------------------
def finalize_invoice(
    settings: Settings, invoice_id: str, *, now: datetime | None = None, render: bool = True
) -> Invoice:
    """Re-rate the draft, number it, freeze it (status ``open``), and write its JSON and
    PDF once."""
    now = clock.aware(now)
    current = get_invoice(settings, invoice_id)
    if current.status != "draft":
        raise StateError(
            f"invoice {current.number or current.id} is {current.status}; only a draft can be "
            "finalized"
        )
    result = create_invoices(
        settings,
        [(current.workspace_id, current.period_start, current.period_end)],
        now=now,
        finalize=True,
    )[0]
    if isinstance(result, BillingError):
        raise result
    if render:
        publish_invoice_files(settings, [result.id])
        result = get_invoice(settings, result.id)
    return result


def void_invoice(
    settings: Settings, invoice_id: str, *, reason: str = "", now: datetime | None = None
) -> Invoice:
    """Cancel an open or overdue invoice (its period can then be invoiced again)."""
    now = clock.aware(now)
    inv = get_invoice(settings, invoice_id)
    with state.opened(settings) as con, state.transaction(con):
        return transition(con, inv.id, "void", at=now, reason=reason or "voided")


def mark_overdue(settings: Settings, *, as_of: date, now: datetime | None = None) -> list[Invoice]:
    """Every ``open`` invoice whose due date is before ``as_of`` becomes ``overdue`` (once)."""
    now = clock.aware(now)
    with state.opened(settings) as con, state.transaction(con):
        return [
            transition(con, i, "overdue", at=now, reason=f"unpaid after due date (as of {as_of})")
            for i in open_invoices_due_before(con, as_of)
        ]


__all__ = [
    # the verbs
    "create_invoice",
    "create_invoices",
    "finalize_invoice",
    "get_invoice",
    "invoice_closed_periods",
    "list_invoices",
    "mark_overdue",
    "plan_closed_periods",
    "void_invoice",
    "RateMany",
    # used through this module by payments and the API (homes: model, store, lifecycle)
    "Invoice",
    "load_invoice",
    "transition",
]
