"""Invoices in the state store: rows ↔ :class:`~.model.Invoice`, and every read and write
of the tables ``invoices``, ``invoice_lines`` and ``invoice_status_history``. The SQL is in
``sql/state/invoicing/*.sql``; every function runs on the caller's connection (writes
inside the caller's transaction).

Stored as: amounts decimal strings in major units (exact), dates ISO ``YYYY-MM-DD``,
times ISO 8601 UTC (``_core.clock.ts``), the invoice's document and each line's detail
as JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from .._core import clock
from .._core.errors import NotFoundError
from .._core.jsonutil import dumps, loads
from ..rating import Line
from ..storage import state
from ..storage.state import Row, StateConnection
from .model import STATUS_STAMPS, Invoice, with_document


# --- reading -----------------------------------------------------------------------------
def _dt(v: str | None) -> datetime | None:
    return clock.parse_ts(v) if v else None


def _d(v: str | None) -> date | None:
    return date.fromisoformat(v) if v else None


def _dec(v: Any) -> Decimal | None:
    return None if v is None else Decimal(str(v))


def _line_from_row(r: Row) -> Line:
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


def _invoice_from_row(con: StateConnection, r: Row) -> Invoice:
    rows = state.query(con, "invoicing/invoice_lines", {"invoice_id": r["id"]})
    return with_document(
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
            lines=tuple(_line_from_row(x) for x in rows),
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
            amount_due=_dec(r["amount_due"]),
            dispute_id=r["dispute_id"],
            dispute_status=r["dispute_status"],
        ),
        loads(r["document"]),
    )


def _one(con: StateConnection, name: str, params: Mapping[str, Any]) -> Invoice | None:
    row = state.query(con, name, params).fetchone()
    return _invoice_from_row(con, row) if row is not None else None


def load_invoice(con: StateConnection, invoice_id: str) -> Invoice:
    """The invoice with this id (NotFoundError if there is none)."""
    inv = _one(con, "invoicing/invoice_by_id", {"id": invoice_id})
    if inv is None:
        raise NotFoundError(f"no invoice {invoice_id!r}")
    return inv


def find_invoice(con: StateConnection, reference: str) -> Invoice:
    """The invoice with this id or number (NotFoundError if there is none)."""
    inv = _one(con, "invoicing/invoice_by_reference", {"reference": reference})
    if inv is None:
        raise NotFoundError(f"no invoice {reference!r}")
    return inv


def select_invoices(
    con: StateConnection, *, workspace_id: str | None, status: str | None, limit: int
) -> list[Invoice]:
    """Invoices by period, workspace and creation time (None: any workspace, status)."""
    params = {"workspace_id": workspace_id, "status": status, "limit": limit}
    rows = state.query(con, "invoicing/list_invoices", params).fetchall()
    return [_invoice_from_row(con, r) for r in rows]


def _period(workspace_id: str, start: date, end: date) -> dict[str, str]:
    return {
        "workspace_id": workspace_id,
        "period_start": start.isoformat(),
        "period_end": end.isoformat(),
    }


def period_invoices(
    con: StateConnection, workspace_id: str, start: date, end: date
) -> tuple[Invoice | None, Invoice | None]:
    """In one query: the live (not void, not debit) invoice of the workspace for exactly
    [start, end], and a live invoice whose period overlaps [start, end] without being
    exactly that period (None when there is none)."""
    live: Invoice | None = None
    clash: Invoice | None = None
    rows = state.query(con, "invoicing/period_invoices", _period(workspace_id, start, end))
    for row in rows.fetchall():
        if row["same_period"]:
            if live is None and row["kind"] != "debit":
                live = _invoice_from_row(con, row)
        elif clash is None:
            clash = _invoice_from_row(con, row)
    return live, clash


def open_invoices_due_before(con: StateConnection, as_of: date) -> list[str]:
    """The ids of the open invoices due before ``as_of``, by due date."""
    rows = state.query(con, "invoicing/open_invoices_due_before", {"as_of": as_of.isoformat()})
    return [r["id"] for r in rows]


def unpublished_invoices(con: StateConnection) -> list[tuple[str, str, str]]:
    """(id, number, document JSON) of the finalized invoices missing their JSON or PDF."""
    rows = state.query(con, "invoicing/unpublished_invoices")
    return [(r["id"], r["number"], r["document"]) for r in rows]


def frozen_document(con: StateConnection, invoice_id: str) -> dict[str, Any] | None:
    """The invoice's stored document (frozen at finalization), or None."""
    row = state.query(con, "invoicing/invoice_by_id", {"id": invoice_id}).fetchone()
    doc = loads(row["document"]) if row is not None and row["document"] else None
    return doc if isinstance(doc, dict) else None


# --- writing (inside the caller's transaction) ---------------------------------------------
def _opt_ts(value: datetime | None) -> str | None:
    return clock.ts(value) if value else None


def _invoice_params(inv: Invoice, document: Mapping[str, Any]) -> dict[str, Any]:
    return {
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
        "issued_at": _opt_ts(inv.issued_at),
        "due_date": inv.due_date.isoformat() if inv.due_date else None,
        "finalized_at": _opt_ts(inv.finalized_at),
        "amount_due": None if inv.amount_due is None else str(inv.amount_due),
    }


def _line_params(invoice_id: str, n: int, x: Line) -> dict[str, Any]:
    return {
        "invoice_id": invoice_id,
        "line_no": n,
        "kind": x.kind,
        "description": x.description,
        "metric": x.metric,
        "plan": x.plan,
        "quantity": None if x.quantity is None else str(x.quantity),
        "unit": x.unit,
        "unit_price": None if x.unit_price is None else str(x.unit_price),
        "amount": str(x.amount),
        "period_start": x.period_start.isoformat(),
        "period_end": x.period_end.isoformat(),
        "detail": dumps(dict(x.detail)),
    }


def write_invoice(
    con: StateConnection,
    inv: Invoice,
    document: Mapping[str, Any],
    *,
    insert: bool,
    lines: bool = True,
) -> None:
    """Insert (``insert``) or rewrite the invoice row with ``document``, and its lines
    (``lines=False``: the stored lines are ``inv.lines`` already, left as they are)."""
    name = "invoicing/insert_invoice" if insert else "invoicing/update_invoice"
    state.query(con, name, _invoice_params(inv, document))
    if not lines:
        return
    if not insert:
        state.query(con, "invoicing/delete_invoice_lines", {"invoice_id": inv.id})
    state.query_many(
        con,
        "invoicing/insert_invoice_line",
        [_line_params(inv.id, n, x) for n, x in enumerate(inv.lines, start=1)],
    )


def record_history(
    con: StateConnection, invoice_id: str, frm: str | None, to: str, at: datetime, reason: str
) -> None:
    """One row of the invoice's status history."""
    params = {
        "invoice_id": invoice_id,
        "from_status": frm,
        "to_status": to,
        "at": clock.ts(at),
        "reason": reason,
    }
    state.query(con, "invoicing/insert_status_history", params)


def set_status(
    con: StateConnection,
    invoice_id: str,
    status: str,
    *,
    at: datetime,
    payment_intent_id: str | None = None,
) -> None:
    """Set the status (and the move's own timestamp column, and the payment reference
    when given); the caller checks that the move is allowed."""
    stamps: dict[str, str | None] = {column: None for column in STATUS_STAMPS.values()}
    if status in STATUS_STAMPS:
        stamps[STATUS_STAMPS[status]] = clock.ts(at)
    params = {
        "id": invoice_id,
        "status": status,
        "at": clock.ts(at),
        "payment_intent_id": payment_intent_id,
        **stamps,
    }
    state.query(con, "invoicing/set_invoice_status", params)


def set_files(con: StateConnection, files: Sequence[tuple[str, str, str]]) -> None:
    """Record the paths of published JSON and PDF files: (invoice id, JSON, PDF) each,
    in one batch."""
    rows = [{"id": i, "json_path": j, "pdf_path": p} for i, j, p in files]
    if rows:
        state.query_many(con, "invoicing/set_invoice_files", rows)


__all__ = [
    "find_invoice",
    "frozen_document",
    "load_invoice",
    "open_invoices_due_before",
    "period_invoices",
    "record_history",
    "select_invoices",
    "set_files",
    "set_status",
    "unpublished_invoices",
    "write_invoice",
]
