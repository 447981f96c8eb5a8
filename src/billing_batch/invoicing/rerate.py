"""Re-rating a finalized invoice with another price book, line by line, and issuing
exactly the difference: a credit note (overcharge) or a debit invoice (undercharge).

**The difference is prices only.** Both ratings read the same lake snapshot (the
invoice's own by default, ``--as-of`` another) and the same segments: the *old* rating
uses the invoice's own book (stored by digest, :mod:`.price_books`), the *new* one the
given book (today's by default). At the invoice's snapshot the old rating is the
invoice's own lines (``explain`` checks that), so the difference is what the new prices
change; at a later snapshot both include the late usage billed since, so it still is.
Tax: each side's subtotal taxed at the invoice's tax rate, rounded once, then subtracted.

A **debit invoice** (kind ``debit``) is a new invoice of the workspace for the same
period, numbered like invoices, open at once, one ``adjustment`` line per changed line;
it records amount-only rows (quantity 0) in the billing ledger, so later late usage of
the period is priced against what was billed *including* the adjustment (rules §6 still
add up). A **credit note** is issued through ``invoicing.credit_notes.issue_credit_note``
(the credit-notes package): until it exists, an overcharge is refused with a message
naming it. Issuing twice for the same invoice, book and snapshot is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from .._core import clock
from .._core.errors import InputError, StateError
from .._core.ids import new_id
from ..config.price_book import load_price_book, read_price_book
from ..config.settings import Settings
from ..periods import Period
from ..rating import Billed, LedgerEntry, Line, PeriodRating, SegmentState
from ..rating.plans import PriceBook, tax
from ..storage import state
from ..storage.lake import Lake
from ..storage.state import StateConnection
from ..subscriptions.service import load_subscriptions
from ..usage.rollup import ensure_fresh
from . import ledger, price_books, store
from .lifecycle import emit
from .model import FINALIZED, Invoice, with_document
from .numbering import next_number
from .positions import load_positions
from .publish import publish_invoice_files
from .rate import rate_discounted

ZERO = Decimal(0)

#: Where the credit-notes package provides the issuing of a credit note.


@dataclass(frozen=True)
class LineDiff:
    kind: str
    description: str
    old: Decimal
    new: Decimal
    line: Line  # the new line (or the old one when the new rating has none)

    @property
    def difference(self) -> Decimal:
        return self.new - self.old

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "description": self.description,
            "old": self.old,
            "new": self.new,
            "difference": self.difference,
        }


@dataclass(frozen=True)
class RerateDiff:
    invoice: Invoice
    period: Period
    old_book: PriceBook
    old_book_stored: bool
    new_book: PriceBook
    snapshot: int
    lines: tuple[LineDiff, ...]
    old_subtotal: Decimal
    new_subtotal: Decimal
    tax_difference: Decimal
    entries: tuple[LedgerEntry, ...] = field(default=())  # amount-only ledger deltas

    @property
    def subtotal_difference(self) -> Decimal:
        return self.new_subtotal - self.old_subtotal

    @property
    def total_difference(self) -> Decimal:
        return self.subtotal_difference + self.tax_difference

    def to_json(self) -> dict[str, Any]:
        inv = self.invoice
        return {
            "invoice": {"id": inv.id, "number": inv.number, "status": inv.status},
            "period": {"start": self.period.start, "end": self.period.end},
            "currency": inv.currency,
            "lakeSnapshotId": self.snapshot,
            "oldPriceBook": {
                "version": self.old_book.version,
                "digest": self.old_book.digest,
                "stored": self.old_book_stored,
            },
            "newPriceBook": {"version": self.new_book.version, "digest": self.new_book.digest},
            "lines": [x.to_json() for x in self.lines],
            "oldSubtotal": self.old_subtotal,
            "newSubtotal": self.new_subtotal,
            "subtotalDifference": self.subtotal_difference,
            "taxDifference": self.tax_difference,
            "totalDifference": self.total_difference,
        }


def _period(inv: Invoice) -> Period:
    nominal = inv.extra.get("nominalPeriod") or {}
    return Period(
        inv.period_start,
        inv.period_end,
        date.fromisoformat(str(nominal.get("start", inv.period_start))),
        date.fromisoformat(str(nominal.get("end", inv.period_end))),
        "final" if inv.kind == "final" else "regular",
    )


def _line_key(x: Line) -> tuple[Any, ...]:
    return (x.kind, x.metric, x.plan, x.period_start, x.period_end, x.detail.get("discount"))


def line_diffs(old: PeriodRating, new: PeriodRating) -> list[LineDiff]:
    """The two ratings' lines side by side (matched by kind, metric, plan, days and
    discount), in the new rating's order, then lines only the old one has."""
    olds = {_line_key(x): x for x in old.lines}
    news = {_line_key(x): x for x in new.lines}
    out = [
        LineDiff(x.kind, x.description, olds[k].amount if k in olds else ZERO, x.amount, x)
        for k, x in news.items()
    ]
    out += [
        LineDiff(x.kind, x.description, x.amount, ZERO, x) for k, x in olds.items() if k not in news
    ]
    return out


def entry_deltas(old: PeriodRating, new: PeriodRating) -> list[LedgerEntry]:
    """Amount-only ledger rows (quantity 0) that move what the ledger says was billed
    from the old rating's amounts to the new one's."""

    def key(e: LedgerEntry) -> tuple[Any, ...]:
        return (e.segment_start, e.kind, e.metric)

    olds = {key(e): e for e in old.entries}
    news = {key(e): e for e in new.entries}
    out = []
    for k in sorted(set(olds) | set(news), key=str):
        base = news.get(k) or olds[k]
        delta = (news[k].amount if k in news else ZERO) - (olds[k].amount if k in olds else ZERO)
        if delta:
            out.append(replace(base, quantity=ZERO, amount=delta))
    return out


def _books(
    settings: Settings, con: StateConnection, inv: Invoice, book_path: Path | None
) -> tuple[PriceBook, bool, PriceBook]:
    new = read_price_book(book_path, metrics=settings.metrics) if book_path else None
    current = load_price_book(settings)
    digest = inv.extra.get("priceBookDigest")
    stored = price_books.stored_book(settings, con, str(digest)) if digest else None
    if stored is None and digest not in (None, current.digest):
        raise StateError(
            f"invoice {inv.number}: the price book that priced it ({inv.price_book_version}, "
            f"{digest}) was never stored and is no longer the current one: cannot re-rate it"
        )
    return stored or current, stored is not None, new or current


def rerate_invoice(
    settings: Settings,
    invoice_ref: str,
    *,
    book_path: Path | None = None,
    as_of: int | None = None,
) -> RerateDiff:
    """The line-by-line difference between the invoice's own book and ``book_path``
    (today's book by default) at lake snapshot ``as_of`` (the invoice's by default)."""
    with state.opened(settings) as con:
        inv = store.find_invoice(con, invoice_ref)
        if inv.status not in FINALIZED or inv.kind == "debit":
            raise StateError(
                f"invoice {inv.number or inv.id} is {inv.status} ({inv.kind}): only a finalized "
                "period invoice (open, paid, overdue) can be re-rated"
            )
        old_book, stored, new_book = _books(settings, con, inv, book_path)
        subs = load_subscriptions(con, inv.workspace_id)
    period = _period(inv)
    snapshot = as_of if as_of is not None else inv.lake_snapshot_id
    ensure_fresh(settings)
    lake_con = Lake(settings).connect(read_only=True, snapshot=snapshot or None)
    try:
        with state.opened(settings) as con:
            positions = load_positions(
                lake_con,
                con,
                book=old_book,
                subscriptions=subs,
                as_of=inv.period_start,
                workspace_ids={inv.workspace_id},
                extra={inv.workspace_id: [period]},
            )
    finally:
        lake_con.close()
    pos = positions.period(inv.workspace_id, period)
    if pos is None:  # pragma: no cover - the period was asked for
        raise StateError(f"no billing position for invoice {inv.number}")
    fresh = [SegmentState(s.span, s.usage, Billed(plan=s.billed.plan)) for s in pos.segments]
    old = rate_discounted(settings, old_book, inv.workspace_id, period, fresh)
    new = rate_discounted(settings, new_book, inv.workspace_id, period, fresh)
    old_sub = sum((x.amount for x in old.lines), ZERO)
    new_sub = sum((x.amount for x in new.lines), ZERO)
    tax_diff = tax(new_sub, inv.tax_rate, inv.currency) - tax(old_sub, inv.tax_rate, inv.currency)
    return RerateDiff(
        invoice=inv,
        period=period,
        old_book=old_book,
        old_book_stored=stored,
        new_book=new_book,
        snapshot=positions.lake_snapshot_id,
        lines=tuple(line_diffs(old, new)),
        old_subtotal=old_sub,
        new_subtotal=new_sub,
        tax_difference=tax_diff,
        entries=tuple(entry_deltas(old, new)),
    )


def _adjustment(d: LineDiff, diff: RerateDiff) -> Line:
    x = d.line
    return Line(
        kind="adjustment",
        description=f"Price adjustment: {d.description}",
        amount=d.difference,
        period_start=x.period_start,
        period_end=x.period_end,
        metric=x.metric,
        plan=x.plan,
        detail={
            "adjusts": diff.invoice.number,
            "adjustedKind": d.kind,
            "oldAmount": d.old,
            "newAmount": d.new,
            "oldPriceBookDigest": diff.old_book.digest,
        },
    )


def _rerate_reference(diff: RerateDiff) -> dict[str, Any]:
    return {
        "invoiceId": diff.invoice.id,
        "number": diff.invoice.number,
        "oldPriceBookDigest": diff.old_book.digest,
        "newPriceBookDigest": diff.new_book.digest,
        "lakeSnapshotId": diff.snapshot,
    }


def _already_issued(con: StateConnection, diff: RerateDiff) -> Invoice | None:
    ref = _rerate_reference(diff)
    for other in store.select_invoices(
        con, workspace_id=diff.invoice.workspace_id, status=None, limit=100_000
    ):
        if other.kind == "debit" and other.status != "void":
            doc = store.frozen_document(con, other.id) or {}
            if doc.get("rerateOf") == ref:
                return other
    return None


def _debit_invoice(diff: RerateDiff, number: str, now: datetime) -> Invoice:
    orig = diff.invoice
    lines = tuple(_adjustment(d, diff) for d in diff.lines if d.difference)
    terms = diff.new_book.account(orig.workspace_id).net_terms_days
    return Invoice(
        id=new_id("inv"),
        workspace_id=orig.workspace_id,
        period_start=orig.period_start,
        period_end=orig.period_end,
        kind="debit",
        status="open",
        number=number,
        currency=orig.currency,
        subtotal=diff.subtotal_difference,
        tax_rate=orig.tax_rate,
        tax=diff.tax_difference,
        total=diff.total_difference,
        lines=lines,
        price_book_version=diff.new_book.version,
        lake_snapshot_id=diff.snapshot,
        created_at=now,
        updated_at=now,
        issued_at=now,
        due_date=now.date() + timedelta(days=terms),
        finalized_at=now,
        paid_at=None,
        voided_at=None,
        overdue_at=None,
        payment_intent_id=None,
        json_path=None,
        pdf_path=None,
        extra={},
    )


def issue_debit(settings: Settings, diff: RerateDiff, *, now: datetime | None = None) -> Invoice:
    """A debit invoice for exactly an undercharge (open, numbered, its ledger deltas
    recorded, ``billing.invoice.finalized`` emitted), in one state transaction."""
    now = clock.aware(now)
    if diff.total_difference <= 0:
        raise InputError(f"invoice {diff.invoice.number}: no undercharge to debit")
    with state.opened(settings) as con, state.transaction(con):
        done = _already_issued(con, diff)
        if done is not None:
            raise StateError(
                f"invoice {diff.invoice.number} was already re-rated with this book at this "
                f"snapshot: debit invoice {done.number}"
            )
        price_books.remember(con, diff.new_book, now)
        inv = _debit_invoice(diff, next_number(settings, con, now.year), now)
        orig = diff.invoice
        doc = inv.to_json()
        doc.update(
            billTo=orig.extra.get("billTo"),
            issuer=orig.extra.get("issuer"),
            priceBookDigest=diff.new_book.digest,
            nominalPeriod=orig.extra.get("nominalPeriod"),
            rerateOf=_rerate_reference(diff),
        )
        store.write_invoice(con, inv, doc, insert=True)
        ledger.record(con, inv.id, inv.workspace_id, diff.entries)
        store.record_history(con, inv.id, None, "open", now, f"debit for {orig.number} (rerate)")
        final = with_document(inv, doc)
        emit(con, "billing.invoice.finalized", final, now)
    publish_invoice_files(settings, [final.id])  # its JSON and PDF, written once
    with state.opened(settings) as con:
        return store.load_invoice(con, final.id)


def issue_difference(
    settings: Settings, diff: RerateDiff, *, now: datetime | None = None
) -> dict[str, Any]:
    """``--issue``: a debit invoice for an undercharge, a credit note for an overcharge
    (through the credit-notes package), nothing for no difference."""
    if diff.total_difference == 0:
        raise InputError(f"invoice {diff.invoice.number}: the new prices change nothing")
    if diff.total_difference > 0:
        return {"debitInvoice": issue_debit(settings, diff, now=now).to_json()}
    from .credit_notes import issue_credit_note

    # money only (reason "other"): the usage stays billed, at the new prices; the lump is
    # the subtotal's difference, before tax (the credit note computes its tax)
    note = issue_credit_note(
        settings,
        diff.invoice.id,
        amount=-diff.subtotal_difference,
        reason="other",
        memo=f"re-rated with price book {diff.new_book.version} ({diff.new_book.digest})",
        now=now,
    )
    return {"creditNote": note.to_json()}


__all__ = [
    "LineDiff",
    "RerateDiff",
    "entry_deltas",
    "issue_debit",
    "issue_difference",
    "line_diffs",
    "rerate_invoice",
]
