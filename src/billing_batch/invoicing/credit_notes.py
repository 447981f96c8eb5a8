"""Credit notes: correcting a finalized invoice without voiding it (docs/credit-notes.md).

:func:`issue_credit_note` credits an ``open``, ``overdue`` or ``paid`` invoice, fully or
partly (by line: a quantity or an amount; or a lump amount before tax), for a reason
(``duplicate``, ``product_unsatisfactory``, ``order_change``, ``other``). In one state
transaction: its gap-free number ``CN-YYYY-nnnnnn``, its frozen document, its lines, the
ledger rows it releases (``order_change`` only), its settlement and the event
``billing.credit_note.created``. Then its JSON and PDF are written (once), and a refund,
if one was asked for, is sent to Stripe (:mod:`billing_batch.payments.refunds`).

Settlement: an unpaid invoice's amount due drops by the credit's total (to 0: the
invoice is paid, nothing left to pay); a paid invoice's credit is refunded
(``refund=True``) or left on the customer balance (:mod:`.balance`; the default),
applied to the next invoice at finalization.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from .._core import clock
from .._core.errors import InputError, NotFoundError, StateError
from .._core.ids import new_id
from .._core.jsonutil import dumps, loads
from ..config.settings import Settings
from ..storage import state
from ..storage.state import Row, StateConnection
from ..webhooks.outbox import record_event
from . import store
from .balance import credit_from_note, set_amount_due
from .credit_note_model import (
    REASONS,
    RELEASING_REASONS,
    Computed,
    Credited,
    CreditLine,
    CreditNote,
    CreditNoteLine,
    compute_credit,
)
from .lifecycle import transition
from .model import Invoice

NUMBER_PREFIX = "CN"
CREDITABLE = ("open", "overdue", "paid")
EVENT = "billing.credit_note.created"


# --- reading -----------------------------------------------------------------------------
def _lines(con: StateConnection, credit_note_id: str) -> tuple[CreditNoteLine, ...]:
    rows = state.query(con, "credit_notes/credit_note_lines", {"credit_note_id": credit_note_id})
    return tuple(
        CreditNoteLine(
            line_no=int(r["line_no"]),
            invoice_line_no=None if r["invoice_line_no"] is None else int(r["invoice_line_no"]),
            kind=r["kind"],
            description=r["description"],
            metric=r["metric"],
            quantity=None if r["quantity"] is None else Decimal(r["quantity"]),
            amount=Decimal(r["amount"]),
        )
        for r in rows
    )


def _from_row(con: StateConnection, r: Row) -> CreditNote:
    doc = loads(r["document"])
    return CreditNote(
        id=r["id"],
        number=r["number"],
        invoice_id=r["invoice_id"],
        invoice_number=r["invoice_number"],
        workspace_id=r["workspace_id"],
        currency=r["currency"],
        reason=r["reason"],
        memo=r["memo"],
        invoice_status=r["invoice_status"],
        lines=_lines(con, r["id"]),
        subtotal=Decimal(r["subtotal"]),
        tax_rate=Decimal(str(doc.get("taxRate", 0))),
        tax=Decimal(r["tax"]),
        total=Decimal(r["total"]),
        settlement=r["settlement"],
        releases_ledger=bool(r["releases_ledger"]),
        issued_at=clock.parse_ts(r["issued_at"]),
        json_path=r["json_path"],
        pdf_path=r["pdf_path"],
        extra={"billTo": doc.get("billTo"), "issuer": doc.get("issuer")},
    )


def load_credit_note(con: StateConnection, reference: str) -> CreditNote:
    """The credit note with this id or number (NotFoundError if none)."""
    row = state.query(con, "credit_notes/credit_note_by_reference", {"reference": reference})
    found = row.fetchone()
    if found is None:
        raise NotFoundError(f"no credit note {reference!r}")
    return _from_row(con, found)


def get_credit_note(settings: Settings, reference: str) -> CreditNote:
    with state.opened(settings) as con:
        return load_credit_note(con, reference)


def list_credit_notes(
    settings: Settings,
    *,
    workspace_id: str | None = None,
    invoice_id: str | None = None,
    limit: int = 100,
) -> list[CreditNote]:
    """Credit notes in issue order (of a workspace, of an invoice given by id or number)."""
    with state.opened(settings) as con:
        if invoice_id is not None:
            invoice_id = store.find_invoice(con, invoice_id).id
        params = {"workspace_id": workspace_id, "invoice_id": invoice_id, "limit": limit}
        rows = state.query(con, "credit_notes/list_credit_notes", params).fetchall()
        return [_from_row(con, r) for r in rows]


def credited(con: StateConnection, invoice_id: str) -> Credited:
    """What the invoice's credit notes credited so far (exact sums)."""
    per_line: dict[int, tuple[Decimal, Decimal]] = {}
    subtotal = Decimal(0)
    taxes: dict[str, Decimal] = {}
    for r in state.query(con, "credit_notes/credited_lines_of_invoice", {"invoice_id": invoice_id}):
        amount = Decimal(r["amount"])
        subtotal += amount
        taxes[r["credit_note_id"]] = Decimal(r["tax"])
        if r["invoice_line_no"] is not None:
            q, a = per_line.get(int(r["invoice_line_no"]), (Decimal(0), Decimal(0)))
            qty = Decimal(r["quantity"]) if r["quantity"] is not None else Decimal(0)
            per_line[int(r["invoice_line_no"])] = (q + qty, a + amount)
    return Credited(per_line, subtotal, sum(taxes.values(), Decimal(0)))


# --- issuing -----------------------------------------------------------------------------
def _check(
    settings: Settings, con: StateConnection, inv: Invoice, reason: str, refund: bool | None
) -> str:
    """Refusals before anything is written; returns the settlement."""
    name = inv.number or inv.id
    if reason not in REASONS:
        raise InputError(f"unknown credit note reason {reason!r} (one of: {', '.join(REASONS)})")
    if inv.status not in CREDITABLE:
        raise StateError(
            f"invoice {name} is {inv.status}: only open, overdue or paid invoices are credited"
        )
    if inv.status != "paid":
        if refund:
            raise InputError(f"invoice {name} is {inv.status}: nothing was paid to refund")
        flying = state.query(con, "credit_notes/payments_in_flight", {"invoice_id": inv.id})
        if flying.fetchone() is not None:
            raise StateError(
                f"invoice {name} has a payment whose outcome is not known yet; resolve it "
                f"first (billing-batch invoice pay {name})"
            )
        return "amount_due"
    if refund and not inv.payment_intent_id:
        raise InputError(f"invoice {name} was not paid through Stripe: nothing to refund")
    if refund:
        from ..payments.stripe_gateway import require_api_key

        require_api_key(settings)  # before anything is written
    return "refund" if refund else "balance"


def _releases(con: StateConnection, inv: Invoice, computed: Computed) -> list[dict[str, Any]]:
    """The negative ledger rows of an order_change credit: per credited line, its ledger
    row (same kind, metric and segment), by the credited units (days) and amount."""
    rows = state.query(con, "credit_notes/invoice_ledger_rows", {"invoice_id": inv.id})
    by_key = {
        (r["kind"], r["metric"], r["segment_start"], r["segment_end"]): r for r in rows.fetchall()
    }
    out: list[dict[str, Any]] = []
    for cl in computed.lines:
        if cl.invoice_line_no is None:
            raise InputError(
                "an order_change credit gives units back to the ledger: credit lines by "
                "quantity, not a lump amount"
            )
        line = inv.lines[cl.invoice_line_no - 1]
        kind = line.kind.removeprefix("late_")
        key = (kind, line.metric or "", line.period_start.isoformat(), line.period_end.isoformat())
        row = by_key.get(key)
        if row is None:
            raise StateError(f"line {cl.invoice_line_no} matches no ledger row of the invoice")
        if cl.quantity is not None:
            quantity = cl.quantity
        elif kind == "minimum" and cl.amount == line.amount:
            quantity = Decimal(row["quantity"])  # the whole minimum row: its days
        else:
            raise InputError(
                f"an order_change credit of line {cl.invoice_line_no} gives units back to the "
                "ledger: credit it by quantity (or a whole minimum line)"
            )
        out.append(
            {
                **{k: row[k] for k in ("invoice_id", "workspace_id", "period_start", "period_end")},
                **{k: row[k] for k in ("segment_start", "segment_end", "kind", "metric", "plan")},
                "quantity": str(-quantity),
                "amount": str(-cl.amount),
            }
        )
    return out


def _insert(con: StateConnection, note: CreditNote, document: dict[str, Any]) -> None:
    state.query(
        con,
        "credit_notes/insert_credit_note",
        {
            "id": note.id,
            "number": note.number,
            "invoice_id": note.invoice_id,
            "workspace_id": note.workspace_id,
            "currency": note.currency,
            "reason": note.reason,
            "memo": note.memo,
            "invoice_status": note.invoice_status,
            "subtotal": str(note.subtotal),
            "tax": str(note.tax),
            "total": str(note.total),
            "total_minor": note.total_minor,
            "settlement": note.settlement,
            "releases_ledger": int(note.releases_ledger),
            "document": dumps(document),
            "issued_at": clock.ts(note.issued_at),
        },
    )
    state.query_many(
        con,
        "credit_notes/insert_credit_note_line",
        [
            {
                "credit_note_id": note.id,
                "line_no": x.line_no,
                "invoice_line_no": x.invoice_line_no,
                "kind": x.kind,
                "description": x.description,
                "metric": x.metric,
                "quantity": None if x.quantity is None else str(x.quantity),
                "amount": str(x.amount),
            }
            for x in note.lines
        ],
    )


def _settle(con: StateConnection, inv: Invoice, note: CreditNote, now: datetime) -> None:
    """The credit's money: the amount due drops (0: paid), a refund is recorded pending
    (sent after the commit), or the balance is credited."""
    if note.settlement == "amount_due":
        due = inv.due - note.total
        set_amount_due(con, inv.id, due, now)
        if due == 0:
            transition(con, inv.id, "paid", at=now, reason=f"nothing left to pay: {note.number}")
    elif note.settlement == "balance":
        credit_from_note(
            con,
            credit_note_id=note.id,
            workspace_id=note.workspace_id,
            currency=note.currency,
            amount=note.total,
            at=now,
        )
    else:
        from ..payments.refunds import record_pending_refund

        record_pending_refund(con, note, inv, now)


def _issue(
    con: StateConnection,
    inv: Invoice,
    *,
    reason: str,
    memo: str,
    settlement: str,
    computed: Computed,
    now: datetime,
) -> CreditNote:
    """Write the credit note and its consequences (inside the caller's transaction)."""
    name = inv.number or inv.id
    if settlement == "amount_due" and computed.total > inv.due:
        raise InputError(
            f"invoice {name}: a credit of {computed.total} is more than its amount due {inv.due}"
        )
    releases = _releases(con, inv, computed) if reason in RELEASING_REASONS else []
    row = state.query(con, "credit_notes/next_credit_note_number", {"year": now.year}).fetchone()
    note = CreditNote(
        id=new_id("cn"),
        number=f"{NUMBER_PREFIX}-{now.year}-{int(row[0]):06d}",
        invoice_id=inv.id,
        invoice_number=inv.number or inv.id,
        workspace_id=inv.workspace_id,
        currency=inv.currency,
        reason=reason,
        memo=memo,
        invoice_status=inv.status,
        lines=computed.lines,
        subtotal=computed.subtotal,
        tax_rate=inv.tax_rate,
        tax=computed.tax,
        total=computed.total,
        settlement=settlement,
        releases_ledger=bool(releases),
        issued_at=now,
        extra={"billTo": inv.extra.get("billTo"), "issuer": inv.extra.get("issuer")},
    )
    document = note.to_json()
    _insert(con, note, document)
    rows = [{"credit_note_id": note.id, **r} for r in releases]
    state.query_many(con, "credit_notes/insert_ledger_release", rows)
    _settle(con, inv, note, now)
    record_event(
        con,
        EVENT,
        subject_id=note.id,
        workspace_id=note.workspace_id,
        data=document,
        at=now,
        recorded_at=clock.utcnow(),
    )
    return note


def issue_credit_note(
    settings: Settings,
    invoice_id: str,
    *,
    reason: str,
    lines: Sequence[CreditLine] | None = None,
    amount: Decimal | None = None,
    refund: bool | None = None,
    memo: str = "",
    now: datetime | None = None,
    http_client: Any = None,
) -> CreditNote:
    """Issue a credit note against an invoice (id or number): ``lines`` (by quantity or
    amount), or a lump ``amount`` before tax, or neither (all that is left). ``refund``
    applies to a paid invoice: True refunds through Stripe, False or None leaves the
    credit on the customer balance. Returns the credit note as issued (its files
    written; its refund, if any, sent to Stripe: ``payments.refunds.refund_of`` says how
    it went; ``http_client`` is the Stripe HTTP client tests inject)."""
    now = clock.aware(now)
    with state.opened(settings) as con, state.transaction(con):
        inv = store.find_invoice(con, invoice_id)
        settlement = _check(settings, con, inv, reason, refund)
        computed = compute_credit(inv, credited(con, inv.id), lines=lines, amount=amount)
        note = _issue(
            con, inv, reason=reason, memo=memo, settlement=settlement, computed=computed, now=now
        )
    publish_credit_notes(settings)
    if note.settlement == "refund":
        from ..payments.refunds import send_refund

        send_refund(settings, note.id, now=now, http_client=http_client)
    return get_credit_note(settings, note.id)


def publish_credit_notes(settings: Settings) -> list[tuple[str, str | None]]:
    """Write the JSON and PDF of every credit note that has none yet (the frozen
    document). Returns (credit note id, error or None) per note attempted; a failure
    leaves no file and is retried by the next call."""
    from .._core.errors import RenderError
    from ..documents.credit_note import write_credit_note_files

    with state.opened(settings) as con:
        todo = [tuple(r) for r in state.query(con, "credit_notes/unpublished_credit_notes")]
    report: list[tuple[str, str | None]] = []
    for note_id, _number, document in todo:
        try:
            json_path, pdf_path = write_credit_note_files(loads(document), settings.invoices_dir)
        except RenderError as exc:
            report.append((note_id, exc.message))
            continue
        with state.opened(settings) as con, state.transaction(con):
            params = {"id": note_id, "json_path": str(json_path), "pdf_path": str(pdf_path)}
            state.query(con, "credit_notes/set_credit_note_files", params)
        report.append((note_id, None))
    return report


__all__ = [
    "CREDITABLE",
    "EVENT",
    "NUMBER_PREFIX",
    "CreditLine",
    "CreditNote",
    "credited",
    "get_credit_note",
    "issue_credit_note",
    "list_credit_notes",
    "load_credit_note",
    "publish_credit_notes",
]
