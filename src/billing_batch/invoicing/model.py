"""What an invoice is: its statuses and the moves allowed between them, the invoice as
stored (:class:`Invoice`, with its JSON shape), and a rating result not yet stored
(:class:`Rated`).

Lifecycle: ``draft → open`` (finalize), ``open → paid | void | overdue`` and
``overdue → paid | void``; anything else is refused (``invoicing.service.transition``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from .._core.money import to_minor
from ..periods import Period
from ..rating import LedgerEntry, Line
from ..rating.plans import Account

STATUSES = ("draft", "open", "paid", "void", "overdue")
TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"open"}),
    "open": frozenset({"paid", "void", "overdue"}),
    "overdue": frozenset({"paid", "void"}),
    "paid": frozenset(),
    "void": frozenset(),
}
#: The statuses of a finalized live invoice: numbered, frozen, its ledger rows billed.
FINALIZED = ("open", "paid", "overdue")

#: The timestamp column a move sets (``paid_at`` ...), and the event it emits.
STATUS_STAMPS: dict[str, str] = {"paid": "paid_at", "void": "voided_at", "overdue": "overdue_at"}
STATUS_EVENTS: dict[str, str] = {
    "paid": "billing.invoice.paid",
    "void": "billing.invoice.voided",
    "overdue": "billing.invoice.overdue",
}


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
    #: What is left to pay: the total minus credit notes issued while unpaid and the
    #: customer balance applied at finalization (None: the total; invoicing.credit_notes).
    amount_due: Decimal | None = None
    #: A chargeback Stripe reported on the invoice's payment (``charge.dispute.created``).
    dispute_id: str | None = None
    dispute_status: str | None = None

    @property
    def total_minor(self) -> int:
        return to_minor(self.total, self.currency)

    @property
    def due(self) -> Decimal:
        """The amount due (the total until a credit or a balance reduced it)."""
        return self.total if self.amount_due is None else self.amount_due

    @property
    def due_minor(self) -> int:
        """The amount due in the currency's minor unit: what a payment charges."""
        return to_minor(self.due, self.currency)

    def to_json(self) -> dict[str, Any]:
        """The seed's invoice shape, plus period, currency, number, dates and detail."""
        payment: dict[str, Any] | None = None
        if self.paid_at is not None or self.payment_intent_id is not None:
            payment = {
                "status": "succeeded" if self.paid_at else "pending",
                "paidAt": self.paid_at,
                "paymentIntentId": self.payment_intent_id,
            }
        out: dict[str, Any] = {
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
            "amountDue": self.due,
            "lineItems": [line.to_json() for line in self.lines],
            "billTo": self.extra.get("billTo"),
            "issuer": self.extra.get("issuer"),
            "priceBookVersion": self.price_book_version,
            "priceBookDigest": self.extra.get("priceBookDigest"),
            "lakeSnapshotId": self.lake_snapshot_id,
            "payment": payment,
            "dispute": {"id": self.dispute_id, "status": self.dispute_status}
            if self.dispute_id
            else None,
            "createdAt": self.created_at,
            "finalizedAt": self.finalized_at,
            "paidAt": self.paid_at,
            "voidedAt": self.voided_at,
            "overdueAt": self.overdue_at,
        }
        if self.extra.get("creditsApplied"):  # prepaid credits drawn at finalization
            out["creditsApplied"] = self.extra["creditsApplied"]
            out["amountDue"] = self.amount_due
        return out


def with_document(inv: Invoice, doc: Mapping[str, Any]) -> Invoice:
    """The invoice with what it keeps of its stored document (as the store reads it
    back: bill-to, issuer, price-book digest, nominal period)."""
    return replace(
        inv,
        extra={
            "billTo": doc.get("billTo"),
            "issuer": doc.get("issuer"),
            "priceBookDigest": doc.get("priceBookDigest"),
            "nominalPeriod": doc.get("nominalPeriod"),
            "creditsApplied": doc.get("creditsApplied"),
            "amountDue": doc.get("amountDue"),
        },
    )


def invoice_basename(inv: Invoice) -> str:
    """The name of an invoice's files (``invoices/<basename>.json|pdf``): its number,
    or its id while it has none."""
    return inv.number or inv.id


__all__ = [
    "FINALIZED",
    "STATUSES",
    "STATUS_EVENTS",
    "STATUS_STAMPS",
    "TRANSITIONS",
    "Invoice",
    "Rated",
    "invoice_basename",
    "with_document",
]
