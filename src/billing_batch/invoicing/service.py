"""Invoices: rating usage into lines, and the lifecycle draft → open → paid / void / overdue.

Rating (``create_invoice`` / ``create_invoices``) turns a workspace's usage for a period
into lines, with the price book and the plans in force each day:

* one line per metric with usage, per plan span (a mid-period plan change splits a
  metric's line at the change date; each line names the plan that priced it);
* the plan's recurring base fee, prorated ``fee × days in force / nominal period days``;
* a minimum-commitment top-up when the usage of a plan span is below its (prorated)
  minimum;
* *late usage*: events that arrived after an earlier period's invoice was finalized
  become separate "Late usage for <period>" lines on the next invoice, priced as the
  difference between rating the earlier period's new total and what was billed;
* subtotal, tax on the subtotal (rounded once, HALF_UP), total.

Lifecycle: a draft can be refreshed any number of times (same id; never a second live
invoice for one workspace and period). ``finalize`` re-rates the draft, assigns the next
gap-free number of the issue year (``INV-2024-000001``), freezes lines and amounts,
records what it billed (the base for late usage) and emits ``billing.invoice.finalized``;
the JSON and PDF are then written once to ``invoices/<number>.json|pdf``. Allowed moves:
``open → paid | void | overdue`` and ``overdue → paid | void``; anything else is a
:class:`~billing_batch.errors.StateError`.

Each invoice records the price-book version (and digest) and the lake snapshot that
priced it; :func:`explain_invoice` recomputes it from that snapshot and from today's lake.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from .._core import clock
from .._core.errors import BillingError, InputError, NotFoundError, StateError
from .._core.ids import check_workspace_id, new_id
from .._core.jsonutil import dumps, loads
from .._core.money import to_minor
from ..config.price_book import load_price_book
from ..config.settings import Settings
from ..periods import Period, Subscription, billing_periods
from ..rating import Billed, LedgerEntry, Line, SegmentState, rate_period
from ..rating.plans import Account, PriceBook, totals
from ..storage import state as store
from ..storage.lake import Lake
from ..subscriptions.service import load_subscriptions
from ..usage.rollup import ensure_fresh
from ..webhooks.outbox import record_event
from . import ledger
from .planner import PlannedInvoice, plan_invoices
from .positions import Positions, load_positions

STATUSES = ("draft", "open", "paid", "void", "overdue")
TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"open"}),
    "open": frozenset({"paid", "void", "overdue"}),
    "overdue": frozenset({"paid", "void"}),
    "paid": frozenset(),
    "void": frozenset(),
}
FINALIZED = ("open", "paid", "overdue")


# --- the model -------------------------------------------------------------------------
@dataclass(frozen=True)
class Rated:
    """The result of rating one workspace and period (not yet stored)."""

    workspace_id: str
    period: Period
    account: Account
    currency: str
    lines: tuple[Line, ...]
    subtotal: Decimal
    tax: Decimal
    total: Decimal
    entries: tuple[LedgerEntry, ...]
    price_book_version: str
    price_book_digest: str
    lake_snapshot_id: int


@dataclass(frozen=True)
class Invoice:
    id: str
    workspace_id: str
    period_start: date
    period_end: date
    kind: str
    status: str
    number: str | None
    currency: str
    subtotal: Decimal
    tax_rate: Decimal
    tax: Decimal
    total: Decimal
    lines: tuple[Line, ...]
    price_book_version: str
    lake_snapshot_id: int | None
    created_at: datetime
    updated_at: datetime
    issued_at: datetime | None
    due_date: date | None
    finalized_at: datetime | None
    paid_at: datetime | None
    voided_at: datetime | None
    overdue_at: datetime | None
    payment_intent_id: str | None
    json_path: str | None
    pdf_path: str | None
    extra: Mapping[str, Any]  # billTo, issuer, digest, nominal period (from the document)

    @property
    def total_minor(self) -> int:
        return to_minor(self.total, self.currency)

    def to_json(self) -> dict[str, Any]:
        """The seed's invoice shape, plus period, currency, number, dates and detail."""
        payment: dict[str, Any] | None = None
        if self.paid_at is not None or self.payment_intent_id is not None:
            payment = {
                "status": "succeeded" if self.paid_at else "pending",
                "paidAt": self.paid_at,
                "paymentIntentId": self.payment_intent_id,
            }
        return {
            "id": self.id,
            "object": "invoice",
            "workspaceId": self.workspace_id,
            "status": self.status,
            "number": self.number,
            "kind": self.kind,
            "currency": self.currency,
            "period": {"start": self.period_start, "end": self.period_end},
            "issuedAt": self.issued_at,
            "dueDate": self.due_date,
            "subtotal": self.subtotal,
            "taxRate": self.tax_rate,
            "tax": self.tax,
            "total": self.total,
            "lineItems": [line.to_json() for line in self.lines],
            "billTo": self.extra.get("billTo"),
            "issuer": self.extra.get("issuer"),
            "priceBookVersion": self.price_book_version,
            "priceBookDigest": self.extra.get("priceBookDigest"),
            "lakeSnapshotId": self.lake_snapshot_id,
            "payment": payment,
            "createdAt": self.created_at,
            "finalizedAt": self.finalized_at,
            "paidAt": self.paid_at,
            "voidedAt": self.voided_at,
            "overdueAt": self.overdue_at,
        }


# --- reading the store -------------------------------------------------------------------
def _dt(v: str | None) -> datetime | None:
    return clock.parse_ts(v) if v else None


def _d(v: str | None) -> date | None:
    return date.fromisoformat(v) if v else None


def _dec(v: Any) -> Decimal | None:
    return None if v is None else Decimal(str(v))


def _line_from_row(r: sqlite3.Row) -> Line:
    return Line(
        kind=r["kind"],
        description=r["description"],
        amount=Decimal(r["amount"]),
        period_start=date.fromisoformat(r["period_start"]),
        period_end=date.fromisoformat(r["period_end"]),
        metric=r["metric"],
        plan=r["plan"],
        quantity=_dec(r["quantity"]),
        unit=r["unit"],
        unit_price=_dec(r["unit_price"]),
        detail=loads(r["detail"]),
    )


def _invoice_from_row(con: sqlite3.Connection, r: sqlite3.Row) -> Invoice:
    lines = tuple(
        _line_from_row(x)
        for x in con.execute(
            "SELECT * FROM invoice_lines WHERE invoice_id = ? ORDER BY line_no", (r["id"],)
        )
    )
    return _as_stored(
        Invoice(
            id=r["id"],
            workspace_id=r["workspace_id"],
            period_start=date.fromisoformat(r["period_start"]),
            period_end=date.fromisoformat(r["period_end"]),
            kind=r["kind"],
            status=r["status"],
            number=r["number"],
            currency=r["currency"],
            subtotal=Decimal(r["subtotal"]),
            tax_rate=Decimal(r["tax_rate"]),
            tax=Decimal(r["tax"]),
            total=Decimal(r["total"]),
            lines=lines,
            price_book_version=r["price_book_version"],
            lake_snapshot_id=r["lake_snapshot_id"],
            created_at=clock.parse_ts(r["created_at"]),
            updated_at=clock.parse_ts(r["updated_at"]),
            issued_at=_dt(r["issued_at"]),
            due_date=_d(r["due_date"]),
            finalized_at=_dt(r["finalized_at"]),
            paid_at=_dt(r["paid_at"]),
            voided_at=_dt(r["voided_at"]),
            overdue_at=_dt(r["overdue_at"]),
            payment_intent_id=r["payment_intent_id"],
            json_path=r["json_path"],
            pdf_path=r["pdf_path"],
            extra={},
        ),
        loads(r["document"]),
    )


def load_invoice(con: sqlite3.Connection, invoice_id: str) -> Invoice:
    row = con.execute("SELECT * FROM invoices WHERE id = ?", (invoice_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no invoice {invoice_id!r}")
    return _invoice_from_row(con, row)


def get_invoice(settings: Settings, invoice_id: str) -> Invoice:
    """The invoice with this id (or number), as it is now."""
    with store.opened(settings) as con:
        row = con.execute(
            "SELECT * FROM invoices WHERE id = ? OR number = ?", (invoice_id, invoice_id)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no invoice {invoice_id!r}")
        return _invoice_from_row(con, row)


def list_invoices(
    settings: Settings,
    *,
    workspace_id: str | None = None,
    status: str | None = None,
    limit: int = 1000,
) -> list[Invoice]:
    if status is not None and status not in STATUSES:
        raise InputError(f"unknown status {status!r} (one of {', '.join(STATUSES)})")
    sql = "SELECT * FROM invoices WHERE 1 = 1"
    params: list[Any] = []
    if workspace_id is not None:
        sql += " AND workspace_id = ?"
        params.append(workspace_id)
    if status is not None:
        sql += " AND status = ?"
        params.append(status)
    sql += " ORDER BY period_start, workspace_id, created_at LIMIT ?"
    params.append(limit)
    with store.opened(settings) as con:
        return [_invoice_from_row(con, r) for r in con.execute(sql, params).fetchall()]


# --- rating ------------------------------------------------------------------------------
def _rate(settings: Settings, book: PriceBook, positions: Positions, item: PlannedInvoice) -> Rated:
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
        rated = rate_period(
            period,
            pos.segments,
            book=book,
            metrics=settings.metrics,
            currency=account.currency,
            late=late,
        )
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


def _manual_plan(
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


# --- storing -----------------------------------------------------------------------------
def _document(settings: Settings, inv: Invoice, rated: Rated | None) -> dict[str, Any]:
    doc = inv.to_json()
    if rated is not None:
        a = rated.account
        doc["billTo"] = {
            "workspaceId": a.workspace_id,
            "name": a.legal_name or a.workspace_id,
            "address": a.address,
            "email": a.email,
        }
        doc["priceBookDigest"] = rated.price_book_digest
    doc["issuer"] = {
        "name": settings.invoices.issuer_name,
        "address": settings.invoices.issuer_address,
        "email": settings.invoices.issuer_email,
    }
    return doc


def _write_invoice(
    con: sqlite3.Connection, inv: Invoice, document: Mapping[str, Any], *, insert: bool
) -> None:
    cols = {
        "id": inv.id,
        "workspace_id": inv.workspace_id,
        "period_start": inv.period_start.isoformat(),
        "period_end": inv.period_end.isoformat(),
        "kind": inv.kind,
        "status": inv.status,
        "number": inv.number,
        "currency": inv.currency,
        "subtotal": str(inv.subtotal),
        "tax_rate": str(inv.tax_rate),
        "tax": str(inv.tax),
        "total": str(inv.total),
        "total_minor": inv.total_minor,
        "price_book_version": inv.price_book_version,
        "lake_snapshot_id": inv.lake_snapshot_id,
        "document": dumps(document),
        "created_at": clock.ts(inv.created_at),
        "updated_at": clock.ts(inv.updated_at),
        "issued_at": clock.ts(inv.issued_at) if inv.issued_at else None,
        "due_date": inv.due_date.isoformat() if inv.due_date else None,
        "finalized_at": clock.ts(inv.finalized_at) if inv.finalized_at else None,
    }
    if insert:
        names = ", ".join(cols)
        marks = ", ".join("?" for _ in cols)
        con.execute(f"INSERT INTO invoices ({names}) VALUES ({marks})", list(cols.values()))
    else:
        sets = ", ".join(f"{k} = ?" for k in cols if k != "id")
        con.execute(
            f"UPDATE invoices SET {sets} WHERE id = ?",
            [v for k, v in cols.items() if k != "id"] + [inv.id],
        )
    con.execute("DELETE FROM invoice_lines WHERE invoice_id = ?", (inv.id,))
    con.executemany(
        "INSERT INTO invoice_lines (invoice_id, line_no, kind, description, metric, plan, "
        "quantity, unit, unit_price, amount, period_start, period_end, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                inv.id,
                n,
                x.kind,
                x.description,
                x.metric,
                x.plan,
                None if x.quantity is None else str(x.quantity),
                x.unit,
                None if x.unit_price is None else str(x.unit_price),
                str(x.amount),
                x.period_start.isoformat(),
                x.period_end.isoformat(),
                dumps(dict(x.detail)),
            )
            for n, x in enumerate(inv.lines, start=1)
        ],
    )


def _history(
    con: sqlite3.Connection, invoice_id: str, frm: str | None, to: str, at: datetime, reason: str
) -> None:
    con.execute(
        "INSERT INTO invoice_status_history (invoice_id, from_status, to_status, at, reason) "
        "VALUES (?, ?, ?, ?, ?)",
        (invoice_id, frm, to, clock.ts(at), reason),
    )


def _live(con: sqlite3.Connection, workspace_id: str, start: date, end: date) -> Invoice | None:
    row = con.execute(
        "SELECT * FROM invoices WHERE workspace_id = ? AND period_start = ? AND period_end = ? "
        "AND status <> 'void'",
        (workspace_id, start.isoformat(), end.isoformat()),
    ).fetchone()
    return _invoice_from_row(con, row) if row else None


def _overlapping(
    con: sqlite3.Connection, workspace_id: str, start: date, end: date
) -> Invoice | None:
    row = con.execute(
        "SELECT * FROM invoices WHERE workspace_id = ? AND status <> 'void' "
        "AND period_start <= ? AND period_end >= ? AND NOT (period_start = ? AND period_end = ?)",
        (workspace_id, end.isoformat(), start.isoformat(), start.isoformat(), end.isoformat()),
    ).fetchone()
    return _invoice_from_row(con, row) if row else None


def _store_draft(
    settings: Settings, con: sqlite3.Connection, rated: Rated, now: datetime
) -> Invoice:
    """Insert or refresh the draft of (workspace, period), inside the caller's transaction."""
    p = rated.period
    existing = _live(con, rated.workspace_id, p.start, p.end)
    if existing is not None and existing.status != "draft":
        raise StateError(
            f"workspace {rated.workspace_id} already has invoice "
            f"{existing.number or existing.id} ({existing.status}) for {p.start}..{p.end}; "
            "void it to invoice that period again"
        )
    clash = _overlapping(con, rated.workspace_id, p.start, p.end)
    if clash is not None:
        raise StateError(
            f"period {p.start}..{p.end} overlaps invoice {clash.number or clash.id} "
            f"({clash.period_start}..{clash.period_end}) of workspace {rated.workspace_id}"
        )
    inv = Invoice(
        id=existing.id if existing else new_id("inv"),
        workspace_id=rated.workspace_id,
        period_start=p.start,
        period_end=p.end,
        kind=p.kind,
        status="draft",
        number=None,
        currency=rated.currency,
        subtotal=rated.subtotal,
        tax_rate=rated.account.tax_rate,
        tax=rated.tax,
        total=rated.total,
        lines=rated.lines,
        price_book_version=rated.price_book_version,
        lake_snapshot_id=rated.lake_snapshot_id,
        created_at=existing.created_at if existing else now,
        updated_at=now,
        issued_at=None,
        due_date=None,
        finalized_at=None,
        paid_at=None,
        voided_at=None,
        overdue_at=None,
        payment_intent_id=None,
        json_path=None,
        pdf_path=None,
        extra={},
    )
    doc = _document(settings, inv, rated)
    doc["nominalPeriod"] = {"start": p.nominal_start, "end": p.nominal_end}
    _write_invoice(con, inv, doc, insert=existing is None)
    stored = _as_stored(inv, doc)
    if existing is None:
        _history(con, inv.id, None, "draft", now, "created")
        _emit(con, "billing.invoice.created", stored, now)
    return stored


def _as_stored(inv: Invoice, doc: Mapping[str, Any]) -> Invoice:
    """The invoice as :func:`load_invoice` would read it back (without the round trip)."""
    return replace(
        inv,
        extra={
            "billTo": doc.get("billTo"),
            "issuer": doc.get("issuer"),
            "priceBookDigest": doc.get("priceBookDigest"),
            "nominalPeriod": doc.get("nominalPeriod"),
        },
    )


def _emit(con: sqlite3.Connection, type_: str, inv: Invoice, at: datetime) -> None:
    """The invoice's event, in the caller's transaction: the payload is the invoice JSON
    as of the change, timestamped with the change's (business) time ``at``."""
    record_event(
        con,
        type_,
        subject_id=inv.id,
        workspace_id=inv.workspace_id,
        data=inv.to_json(),
        at=at,
        recorded_at=clock.utcnow(),
    )


# --- periods -----------------------------------------------------------------------------
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


# --- public operations -------------------------------------------------------------------
def _now(now: datetime | None) -> datetime:
    value = now or clock.utcnow()
    if value.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return value.astimezone(UTC)


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
    now = _now(now)
    book = load_price_book(settings)
    ensure_fresh(settings)
    lake_con = Lake(settings).connect(read_only=True)
    try:
        with store.opened(settings) as con:
            subs = load_subscriptions(con)
            slots: list[PlannedInvoice | BillingError] = []
            for ws, start, end in requests:
                try:
                    check_workspace_id(ws)
                    slots.append(PlannedInvoice(ws, period_for(subs.get(ws, []), start, end)))
                except BillingError as exc:
                    slots.append(exc)
            wanted = [x for x in slots if isinstance(x, PlannedInvoice)]
            extra: dict[str, list[Period]] = {}
            for x in wanted:
                extra.setdefault(x.workspace_id, []).append(x.period)
            with store.transaction(con):
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
                    (p.workspace_id, p.period): p for p in _manual_plan(positions, book, wanted)
                }
                return [
                    slot
                    if isinstance(slot, BillingError)
                    else _issue(
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
    finally:
        lake_con.close()


def plan_closed_periods(settings: Settings, run_date: date) -> list[PlannedInvoice]:
    """What :func:`invoice_closed_periods` would invoice for ``run_date`` now (read only)."""
    book = load_price_book(settings)
    ensure_fresh(settings)
    lake_con = Lake(settings).connect(read_only=True)
    try:
        with store.opened(settings) as con:
            positions = load_positions(
                lake_con, con, book=book, subscriptions=load_subscriptions(con), as_of=run_date
            )
    finally:
        lake_con.close()
    return plan_invoices(positions.by_workspace, book)


def invoice_closed_periods(
    settings: Settings, run_date: date, *, now: datetime | None = None
) -> tuple[Positions, list[tuple[PlannedInvoice, Invoice | BillingError]]]:
    """The nightly's invoicing (docs/billing-rules.md §7): every billing period closed
    before ``run_date`` since each workspace's first activity that still owes anything
    gets its invoice, finalized, carrying the late differences of earlier periods; all
    in one state transaction, from one lake snapshot. Returns the positions it read and
    each planned invoice with its result (one failure never stops the others)."""
    now = _now(now)
    book = load_price_book(settings)
    ensure_fresh(settings)
    lake_con = Lake(settings).connect(read_only=True)
    try:
        with store.opened(settings) as con:
            subs = load_subscriptions(con)
            with store.transaction(con):
                positions = load_positions(
                    lake_con, con, book=book, subscriptions=subs, as_of=run_date
                )
                results = [
                    (item, _issue(settings, con, book, positions, item, now, finalize=True))
                    for item in plan_invoices(positions.by_workspace, book)
                ]
    finally:
        lake_con.close()
    return positions, results


def _issue(
    settings: Settings,
    con: sqlite3.Connection,
    book: PriceBook,
    positions: Positions,
    item: PlannedInvoice,
    now: datetime,
    *,
    finalize: bool,
) -> Invoice | BillingError:
    """Rate, store (and finalize) one invoice inside the caller's transaction; its own
    savepoint, so that a failure undoes only this invoice."""
    con.execute("SAVEPOINT one")
    try:
        rated = _rate(settings, book, positions, item)
        inv = _store_draft(settings, con, rated, now)
        if finalize:
            inv = _finalize_in_tx(settings, con, inv, rated, now)
    except BillingError as exc:
        con.execute("ROLLBACK TO one")
        con.execute("RELEASE one")
        return exc
    con.execute("RELEASE one")
    return inv


def _next_number(settings: Settings, con: sqlite3.Connection, year: int) -> str:
    row = con.execute(
        "INSERT INTO invoice_numbers (year, last) VALUES (?, 1) "
        "ON CONFLICT (year) DO UPDATE SET last = last + 1 RETURNING last",
        (year,),
    ).fetchone()
    return f"{settings.invoices.number_prefix}-{year}-{int(row[0]):06d}"


def _finalize_in_tx(
    settings: Settings, con: sqlite3.Connection, draft: Invoice, rated: Rated, now: datetime
) -> Invoice:
    if draft.status != "draft":
        raise StateError(f"invoice {draft.number or draft.id} is {draft.status}, not a draft")
    number = _next_number(settings, con, now.year)
    due = now.date() + timedelta(days=rated.account.net_terms_days)
    inv = replace(
        draft,
        status="open",
        number=number,
        issued_at=now,
        due_date=due,
        finalized_at=now,
        updated_at=now,
    )
    doc = _document(settings, inv, rated)
    doc["nominalPeriod"] = {"start": rated.period.nominal_start, "end": rated.period.nominal_end}
    _write_invoice(con, inv, doc, insert=False)
    ledger.record(con, inv.id, inv.workspace_id, rated.entries)
    _history(con, inv.id, "draft", "open", now, f"finalized as {number}")
    final = _as_stored(inv, doc)
    _emit(con, "billing.invoice.finalized", final, now)
    return final


def finalize_invoice(
    settings: Settings, invoice_id: str, *, now: datetime | None = None, render: bool = True
) -> Invoice:
    """Re-rate the draft, number it, freeze it (status ``open``), and write its JSON and
    PDF once."""
    now = _now(now)
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


def transition(
    con: sqlite3.Connection,
    invoice_id: str,
    to_status: str,
    *,
    at: datetime,
    reason: str = "",
    payment_intent_id: str | None = None,
) -> Invoice:
    """Move an invoice to ``to_status`` inside the caller's transaction (with its event)."""
    inv = load_invoice(con, invoice_id)
    if to_status not in TRANSITIONS[inv.status]:
        allowed = ", ".join(sorted(TRANSITIONS[inv.status])) or "nothing"
        raise StateError(
            f"invoice {inv.number or inv.id} is {inv.status}: it cannot become {to_status} "
            f"(allowed: {allowed})"
        )
    column = {"paid": "paid_at", "void": "voided_at", "overdue": "overdue_at"}.get(to_status)
    sets = "status = ?, updated_at = ?"
    params: list[Any] = [to_status, clock.ts(at)]
    if column:
        sets += f", {column} = ?"
        params.append(clock.ts(at))
    if payment_intent_id is not None:
        sets += ", payment_intent_id = ?"
        params.append(payment_intent_id)
    con.execute(f"UPDATE invoices SET {sets} WHERE id = ?", [*params, invoice_id])
    _history(con, invoice_id, inv.status, to_status, at, reason)
    updated = load_invoice(con, invoice_id)
    event = {
        "paid": "billing.invoice.paid",
        "void": "billing.invoice.voided",
        "overdue": "billing.invoice.overdue",
    }.get(to_status)
    if event:
        _emit(con, event, updated, at)
    return updated


def void_invoice(
    settings: Settings, invoice_id: str, *, reason: str = "", now: datetime | None = None
) -> Invoice:
    """Cancel an open or overdue invoice (its period can then be invoiced again)."""
    now = _now(now)
    inv = get_invoice(settings, invoice_id)
    with store.opened(settings) as con, store.transaction(con):
        return transition(con, inv.id, "void", at=now, reason=reason or "voided")


def mark_overdue(settings: Settings, *, as_of: date, now: datetime | None = None) -> list[Invoice]:
    """Every ``open`` invoice whose due date is before ``as_of`` becomes ``overdue`` (once)."""
    now = _now(now)
    with store.opened(settings) as con, store.transaction(con):
        ids = [
            r[0]
            for r in con.execute(
                "SELECT id FROM invoices WHERE status = 'open' AND due_date < ? ORDER BY due_date",
                (as_of.isoformat(),),
            )
        ]
        return [
            transition(con, i, "overdue", at=now, reason=f"unpaid after due date (as of {as_of})")
            for i in ids
        ]


# --- files -------------------------------------------------------------------------------
def invoice_basename(inv: Invoice) -> str:
    return inv.number or inv.id


def publish_invoice_files(
    settings: Settings, invoice_ids: Sequence[str] | None = None, *, processes: int | None = None
) -> list[tuple[str, str | None]]:
    """Write ``invoices/<number>.json`` and ``.pdf`` for finalized invoices that have none
    yet (all of them when ``invoice_ids`` is None): the frozen document as finalized,
    rendered in parallel. Returns (invoice id, error or None) per invoice attempted."""
    from .._core.progress import progress
    from ..documents.render import render_many

    with store.opened(settings) as con:
        sql = (
            "SELECT id, number, document FROM invoices WHERE number IS NOT NULL "
            "AND (json_path IS NULL OR pdf_path IS NULL)"
        )
        rows = con.execute(sql).fetchall()
    wanted = set(invoice_ids) if invoice_ids is not None else None
    todo = [r for r in rows if wanted is None or r["id"] in wanted]
    if not todo:
        return []
    out_dir = settings.invoices_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    n = processes if processes is not None else settings.invoices.render_processes
    with progress(f"rendering {len(todo)} invoice(s)", total=len(todo)) as advance:
        results = render_many(
            [(loads(r["document"]), out_dir, r["number"]) for r in todo],
            processes=n,
            progress=advance,
        )
    report: list[tuple[str, str | None]] = []
    with store.opened(settings) as con, store.transaction(con):
        for r, res in zip(todo, results, strict=True):
            if res.error is None:
                con.execute(
                    "UPDATE invoices SET json_path = ?, pdf_path = ? WHERE id = ?",
                    (str(res.json_path), str(res.pdf_path), r["id"]),
                )
            report.append((r["id"], res.error))
    return report


def issue_time(run_date: date) -> datetime:
    """The business time of a nightly run for ``run_date`` (00:00 UTC that day)."""
    return datetime.combine(run_date, time(0, 0), tzinfo=UTC)


# --- explain -----------------------------------------------------------------------------
def explain_invoice(settings: Settings, invoice_id: str) -> dict[str, Any]:
    """Per line: the daily quantities, the tier arithmetic and the lake snapshot; and
    whether re-rating the period at that snapshot, and today, gives the same amounts."""
    from ..usage.queries import daily_quantities

    inv = get_invoice(settings, invoice_id)
    book = load_price_book(settings)
    ensure_fresh(settings)
    lake = Lake(settings)
    explained: list[dict[str, Any]] = []
    con = lake.connect(read_only=True, snapshot=inv.lake_snapshot_id or None)
    try:
        for n, line in enumerate(inv.lines, start=1):
            entry: dict[str, Any] = {
                "line": n,
                "description": line.description,
                "amount": line.amount,
                "kind": line.kind,
            }
            if line.metric:
                daily = daily_quantities(con, inv.workspace_id, line.period_start, line.period_end)
                entry["daily"] = [
                    {"date": d, "quantity": q} for m, d, q in daily if m == line.metric
                ]
                if line.plan and line.quantity is not None and line.kind == "usage":
                    price = book.plan(line.plan).prices.get(line.metric)
                    if price is not None:
                        entry["arithmetic"] = price.rate(line.quantity, inv.currency).explain()
            elif line.detail:
                entry["detail"] = dict(line.detail)
            explained.append(entry)
    finally:
        con.close()
    return {
        "invoice": inv.to_json(),
        "lakeSnapshotId": inv.lake_snapshot_id,
        "priceBookVersion": inv.price_book_version,
        "priceBookVersionNow": book.version,
        "priceBookChanged": inv.extra.get("priceBookDigest") not in (None, book.digest),
        "lines": explained,
        "recomputedAtSnapshot": _rerate(settings, book, inv, snapshot=inv.lake_snapshot_id),
        "recomputedToday": _rerate(settings, book, inv, snapshot=None),
    }


def _rerate(
    settings: Settings, book: PriceBook, inv: Invoice, *, snapshot: int | None
) -> dict[str, Any]:
    """The invoice's period rated in full (as if nothing had been billed for it) at the
    lake snapshot, compared with the invoice's own (not late) lines."""
    nominal = inv.extra.get("nominalPeriod") or {}
    period = Period(
        inv.period_start,
        inv.period_end,
        date.fromisoformat(str(nominal.get("start", inv.period_start))),
        date.fromisoformat(str(nominal.get("end", inv.period_end))),
        inv.kind,
    )
    con = Lake(settings).connect(read_only=True, snapshot=snapshot or None)
    try:
        with store.opened(settings) as scon:
            positions = load_positions(
                con,
                scon,
                book=book,
                subscriptions=load_subscriptions(scon, inv.workspace_id),
                as_of=inv.period_start,
                workspace_ids={inv.workspace_id},
                extra={inv.workspace_id: [period]},
            )
    finally:
        con.close()
    pos = positions.period(inv.workspace_id, period)
    assert pos is not None
    fresh = [SegmentState(s.span, s.usage, Billed(plan=s.billed.plan)) for s in pos.segments]
    try:
        rated = rate_period(
            period, fresh, book=book, metrics=settings.metrics, currency=inv.currency
        )
    except BillingError as exc:
        return {"error": str(exc)}
    own = [(x.description, x.amount) for x in inv.lines if not x.kind.startswith("late_")]
    again = [(x.description, x.amount) for x in rated.lines]
    return {
        "snapshot": positions.lake_snapshot_id,
        "agrees": own == again,
        "subtotal": sum((x.amount for x in rated.lines), Decimal(0)),
        "lines": [{"description": d, "amount": a} for d, a in again],
    }


__all__ = [
    "FINALIZED",
    "STATUSES",
    "TRANSITIONS",
    "Invoice",
    "Line",
    "Rated",
    "create_invoice",
    "create_invoices",
    "explain_invoice",
    "finalize_invoice",
    "get_invoice",
    "invoice_basename",
    "invoice_closed_periods",
    "issue_time",
    "list_invoices",
    "load_invoice",
    "mark_overdue",
    "period_for",
    "plan_closed_periods",
    "publish_invoice_files",
    "transition",
    "void_invoice",
]
