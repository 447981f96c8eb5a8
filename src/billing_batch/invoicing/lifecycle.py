"""The moves of an invoice inside the caller's state transaction, each with its status
history row and its event in the outbox (atomically with the change):

* :func:`store_draft`: insert or refresh the draft of a (workspace, period), same id on
  every refresh; refused when the period already has a finalized live invoice or
  overlaps another live invoice;
* :func:`finalize_draft`: number it (:mod:`.numbering`), issue and due dates, apply the
  customer balance (:mod:`.balance`), freeze its document, record what it billed in the
  ledger (:mod:`.ledger`);
* :func:`issue`: both for one planned invoice, in a savepoint (a failure undoes only it);
* :func:`transition`: every later move (paid, void, overdue), checked against
  :data:`~.model.TRANSITIONS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from .._core import clock
from .._core.errors import BillingError, StateError
from .._core.ids import new_id
from ..config.settings import Settings
from ..rating.plans import PriceBook
from ..storage.state import StateConnection
from ..webhooks.outbox import record_event
from . import ledger, price_books, store
from .balance import apply_balances, funded_workspaces
from .model import STATUS_EVENTS, TRANSITIONS, Invoice, Rated, with_document
from .numbering import NumberBlock, next_number
from .planner import PlannedInvoice
from .positions import Positions
from .rate import rate_planned


def build_document(settings: Settings, inv: Invoice, rated: Rated) -> dict[str, Any]:
    """The invoice document as stored (and, once finalized, frozen): the invoice JSON,
    bill-to, issuer, the price book's digest and the nominal period."""
    doc = inv.to_json()
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
    doc["nominalPeriod"] = {"start": rated.period.nominal_start, "end": rated.period.nominal_end}
    return doc


def emit(con: StateConnection, type_: str, inv: Invoice, at: datetime) -> None:
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


def _check_draftable(con: StateConnection, rated: Rated) -> Invoice | None:
    """The period's live draft (None: no live invoice); refused when it has a finalized
    invoice or overlaps another live invoice."""
    p = rated.period
    existing, clash = store.period_invoices(con, rated.workspace_id, p.start, p.end)
    if existing is not None and existing.status != "draft":
        raise StateError(
            f"workspace {rated.workspace_id} already has invoice "
            f"{existing.number or existing.id} ({existing.status}) for {p.start}..{p.end}; "
            "void it to invoice that period again"
        )
    if clash is not None:
        raise StateError(
            f"period {p.start}..{p.end} overlaps invoice {clash.number or clash.id} "
            f"({clash.period_start}..{clash.period_end}) of workspace {rated.workspace_id}"
        )
    return existing


def _draft(rated: Rated, existing: Invoice | None, now: datetime) -> Invoice:
    p = rated.period
    return Invoice(
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


def store_draft(settings: Settings, con: StateConnection, rated: Rated, now: datetime) -> Invoice:
    """Insert or refresh the draft of (workspace, period), inside the caller's transaction."""
    existing = _check_draftable(con, rated)
    inv = _draft(rated, existing, now)
    doc = build_document(settings, inv, rated)
    store.write_invoice(con, inv, doc, insert=existing is None)
    stored = with_document(inv, doc)
    if existing is None:
        store.record_history(con, inv.id, None, "draft", now, "created")
        emit(con, "billing.invoice.created", stored, now)
    return stored


def finalize_draft(
    settings: Settings,
    con: StateConnection,
    draft: Invoice,
    rated: Rated,
    now: datetime,
    *,
    known: Issuing | None = None,
) -> Invoice:
    """Number, issue and freeze a draft as :func:`store_draft` stored it from ``rated``
    (status ``open``), inside the caller's transaction (``known``: see :class:`Issuing`)."""
    if draft.status != "draft":
        raise StateError(f"invoice {draft.number or draft.id} is {draft.status}, not a draft")
    known = known or Issuing()
    number = next_number(settings, con, now.year, known.numbers)
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
    inv = apply_balances(con, inv, now, funded=known.funded)  # the balance, credits
    doc = build_document(settings, inv, rated)
    store.write_invoice(con, inv, doc, insert=False, lines=False)  # lines: the draft's
    ledger.record(con, inv.id, inv.workspace_id, rated.entries)
    store.record_history(con, inv.id, "draft", "open", now, f"finalized as {number}")
    final = with_document(inv, doc)
    emit(con, "billing.invoice.finalized", final, now)
    return final


@dataclass
class Issuing:
    """What one transaction issuing many invoices reads once for all of them (it holds
    the write lock, so nothing else changes it): the workspaces with a balance or a
    credit grant (:func:`.balance.funded_workspaces`), the price-book digests known to be
    stored (grown as invoices are issued), and the invoice numbers it takes (a
    :class:`.numbering.NumberBlock`: :meth:`finish` writes the counter back before the
    transaction commits). The default (nothing read) reads everything per invoice."""

    funded: frozenset[str] | None = None
    stored_books: set[str] = field(default_factory=set)
    numbers: NumberBlock | None = None

    @classmethod
    def read(cls, con: StateConnection) -> Issuing:
        return cls(funded=funded_workspaces(con), numbers=NumberBlock())

    def finish(self, con: StateConnection) -> None:
        """Before the transaction commits: the invoice counters it moved."""
        if self.numbers is not None:
            self.numbers.flush(con)


def _remember_book(con: StateConnection, book: PriceBook, now: datetime, known: Issuing) -> None:
    """The book that priced it, kept by digest (read once per transaction)."""
    if book.digest not in known.stored_books:
        price_books.remember(con, book, now)


def issue(
    settings: Settings,
    con: StateConnection,
    book: PriceBook,
    positions: Positions,
    item: PlannedInvoice,
    now: datetime,
    *,
    finalize: bool,
    rated: Rated | BillingError | None = None,
    known: Issuing | None = None,
) -> Invoice | BillingError:
    """Rate, store (and finalize) one invoice inside the caller's transaction; its own
    savepoint, so that a failure undoes only this invoice. ``rated``: its rating, made
    beforehand (on a worker: :func:`.rate.rate_batch`), or the error that refused it.
    ``known``: what the caller's transaction read once for all its invoices."""
    if isinstance(rated, BillingError):
        return rated
    known = known or Issuing()
    taken = known.numbers.mark() if known.numbers is not None else {}
    con.execute("SAVEPOINT one")
    try:
        if rated is None:
            rated = rate_planned(settings, book, positions, item)
        _remember_book(con, book, now, known)
        inv = store_draft(settings, con, rated, now)
        if finalize:
            inv = finalize_draft(settings, con, inv, rated, now, known=known)
    except BillingError as exc:
        con.execute("ROLLBACK TO one")
        con.execute("RELEASE one")
        if known.numbers is not None:
            known.numbers.restore(taken)  # its number, if it took one, goes back
        return exc
    con.execute("RELEASE one")
    known.stored_books.add(book.digest)  # kept: the savepoint that stored it is released
    return inv


def transition(
    con: StateConnection,
    invoice_id: str,
    to_status: str,
    *,
    at: datetime,
    reason: str = "",
    payment_intent_id: str | None = None,
) -> Invoice:
    """Move an invoice to ``to_status`` inside the caller's transaction (with its event)."""
    inv = store.load_invoice(con, invoice_id)
    if to_status not in TRANSITIONS[inv.status]:
        allowed = ", ".join(sorted(TRANSITIONS[inv.status])) or "nothing"
        raise StateError(
            f"invoice {inv.number or inv.id} is {inv.status}: it cannot become {to_status} "
            f"(allowed: {allowed})"
        )
    store.set_status(con, invoice_id, to_status, at=at, payment_intent_id=payment_intent_id)
    store.record_history(con, invoice_id, inv.status, to_status, at, reason)
    updated = store.load_invoice(con, invoice_id)
    event = STATUS_EVENTS.get(to_status)
    if event:
        emit(con, event, updated, at)
    return updated


__all__ = [
    "Issuing",
    "build_document",
    "emit",
    "finalize_draft",
    "issue",
    "store_draft",
    "transition",
]
