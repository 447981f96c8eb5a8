"""What a credit note is (:class:`CreditNote`, its lines and its JSON shape), what a caller
asks to credit (:class:`CreditLine`), and the pure arithmetic that turns a request into
exact amounts against an invoice and the credit notes it already has
(:func:`compute_credit`).

Rules (docs/credit-notes.md):

* a line credited by **quantity** is credited at the line's average unit price, computed
  on the cumulative quantity credited so far, so that the credits of a line always add up
  to its amount exactly (``A(Q_before + q) - A(Q_before)``, each rounded once);
* a line credited by **amount** gets that amount (at most what is left of the line);
* a **lump** amount is an amount before tax (at most what is left of the subtotal);
* tax is the invoice's rate on the cumulative credited subtotal, rounded once; the credit
  note that brings the credited subtotal to the invoice's subtotal takes exactly the
  invoice's remaining tax, so a full credit is exactly the invoice's total;
* nothing is credited twice: each line's quantity and amount, and the subtotal, are
  bounded by what earlier credit notes left.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from .._core.errors import InputError
from .._core.money import quantize, to_minor
from .model import Invoice

REASONS = ("duplicate", "product_unsatisfactory", "order_change", "other")
#: Reasons whose credit gives the credited units back to the billing ledger (they are
#: billed again, at the terms in force, by the next run); the others only give money back.
RELEASING_REASONS = frozenset({"order_change"})
SETTLEMENTS = ("amount_due", "refund", "balance")


@dataclass(frozen=True)
class CreditLine:
    """Credit invoice line ``line_no`` (1-based, as on the invoice) by ``quantity`` units
    (days for a fee) or by ``amount`` (major units, before tax): exactly one of them."""

    line_no: int
    quantity: Decimal | int | None = None
    amount: Decimal | int | None = None


@dataclass(frozen=True)
class CreditNoteLine:
    line_no: int
    invoice_line_no: int | None  # None: a lump amount
    kind: str  # the invoice line's kind, or "lump"
    description: str
    metric: str | None
    quantity: Decimal | None
    amount: Decimal

    def to_json(self) -> dict[str, Any]:
        return {
            "lineNo": self.line_no,
            "invoiceLineNo": self.invoice_line_no,
            "kind": self.kind,
            "description": self.description,
            "metric": self.metric,
            "quantity": self.quantity,
            "amount": self.amount,
        }


@dataclass(frozen=True)
class CreditNote:
    id: str
    number: str
    invoice_id: str
    invoice_number: str
    workspace_id: str
    currency: str
    reason: str
    memo: str
    invoice_status: str
    lines: tuple[CreditNoteLine, ...]
    subtotal: Decimal
    tax_rate: Decimal
    tax: Decimal
    total: Decimal
    settlement: str  # amount_due | refund | balance
    releases_ledger: bool
    issued_at: datetime
    json_path: str | None = None
    pdf_path: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # billTo, issuer (the document)

    @property
    def total_minor(self) -> int:
        return to_minor(self.total, self.currency)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "credit_note",
            "number": self.number,
            "invoiceId": self.invoice_id,
            "invoiceNumber": self.invoice_number,
            "workspaceId": self.workspace_id,
            "currency": self.currency,
            "reason": self.reason,
            "memo": self.memo,
            "invoiceStatus": self.invoice_status,
            "lineItems": [x.to_json() for x in self.lines],
            "subtotal": self.subtotal,
            "taxRate": self.tax_rate,
            "tax": self.tax,
            "total": self.total,
            "settlement": self.settlement,
            "releasesLedger": self.releases_ledger,
            "issuedAt": self.issued_at,
            "billTo": self.extra.get("billTo"),
            "issuer": self.extra.get("issuer"),
        }


@dataclass(frozen=True)
class Credited:
    """What earlier credit notes of an invoice credited: per invoice line (quantity,
    amount), and the subtotal and tax in all."""

    lines: Mapping[int, tuple[Decimal, Decimal]]
    subtotal: Decimal
    tax: Decimal


@dataclass(frozen=True)
class Computed:
    lines: tuple[CreditNoteLine, ...]
    subtotal: Decimal
    tax: Decimal
    total: Decimal


def _positive(value: Decimal | int, what: str) -> Decimal:
    if isinstance(value, int) and not isinstance(value, bool):
        value = Decimal(value)
    if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
        raise InputError(f"{what} must be a positive exact number, got {value!r}")
    return value


def _by_line(
    inv: Invoice, credited: Credited, req: CreditLine, no: int
) -> tuple[CreditNoteLine, Decimal]:
    """One credit line: (the line, its amount)."""
    name = inv.number or inv.id
    if not 1 <= req.line_no <= len(inv.lines):
        raise InputError(f"invoice {name} has no line {req.line_no} (lines 1..{len(inv.lines)})")
    if (req.quantity is None) == (req.amount is None):
        raise InputError(f"credit of line {req.line_no}: give a quantity or an amount, not both")
    line = inv.lines[req.line_no - 1]
    done_q, done_a = credited.lines.get(req.line_no, (Decimal(0), Decimal(0)))
    left_a = line.amount - done_a
    if line.amount <= 0 or left_a <= 0:
        raise InputError(f"line {req.line_no} of invoice {name} has nothing left to credit")
    quantity: Decimal | None = None
    if req.quantity is not None:
        q = _positive(req.quantity, f"credit of line {req.line_no}: quantity")
        if not line.quantity:
            raise InputError(
                f"line {req.line_no} of invoice {name} has no quantity: credit an amount"
            )
        if done_q + q > line.quantity:
            raise InputError(
                f"line {req.line_no} of invoice {name}: {q} more units would credit "
                f"{done_q + q} of its {line.quantity}"
            )
        before = quantize(line.amount * done_q / line.quantity, inv.currency)
        after = (
            line.amount
            if done_q + q == line.quantity
            else quantize(line.amount * (done_q + q) / line.quantity, inv.currency)
        )
        amount, quantity = after - before, q
    else:
        amount = _positive(req.amount or Decimal(0), f"credit of line {req.line_no}: amount")
        if quantize(amount, inv.currency) != amount:
            raise InputError(f"credit of line {req.line_no}: {amount} is finer than {inv.currency}")
        if amount > left_a:
            raise InputError(
                f"line {req.line_no} of invoice {name}: {amount} is more than the "
                f"{left_a} left to credit"
            )
    return (
        CreditNoteLine(no, req.line_no, line.kind, line.description, line.metric, quantity, amount),
        amount,
    )


def _full(inv: Invoice, credited: Credited) -> list[CreditLine]:
    """Every line's remainder: its remaining quantity when nothing was credited by
    amount, else its remaining amount."""
    out: list[CreditLine] = []
    for no, line in enumerate(inv.lines, start=1):
        done_q, done_a = credited.lines.get(no, (Decimal(0), Decimal(0)))
        if line.amount <= 0 or line.amount - done_a <= 0:
            continue
        by_quantity = line.quantity and done_a == quantize(
            line.amount * done_q / line.quantity, inv.currency
        )
        if by_quantity and line.quantity is not None:
            out.append(CreditLine(no, quantity=line.quantity - done_q))
        else:
            out.append(CreditLine(no, amount=line.amount - done_a))
    return out


def _tax(inv: Invoice, credited_subtotal: Decimal) -> Decimal:
    if credited_subtotal == inv.subtotal:
        return inv.tax
    return quantize(credited_subtotal * inv.tax_rate, inv.currency)


def compute_credit(
    inv: Invoice,
    credited: Credited,
    *,
    lines: Sequence[CreditLine] | None,
    amount: Decimal | None,
) -> Computed:
    """The credit note's lines and amounts for a request (``lines``, or a lump
    ``amount``, or neither: everything left of the invoice)."""
    name = inv.number or inv.id
    if lines is not None and amount is not None:
        raise InputError("credit by lines or by a lump amount, not both")
    out: list[CreditNoteLine] = []
    if amount is not None:
        lump = _positive(amount, "the credit amount")
        if quantize(lump, inv.currency) != lump:
            raise InputError(f"the credit amount {lump} is finer than {inv.currency}")
        out.append(CreditNoteLine(1, None, "lump", "Credit", None, None, lump))
    else:
        requests = list(lines) if lines is not None else _full(inv, credited)
        if not requests:
            raise InputError(f"invoice {name} has nothing left to credit")
        seen = {r.line_no for r in requests}
        if len(seen) != len(requests):
            raise InputError("each invoice line may be credited once per credit note")
        for no, req in enumerate(requests, start=1):
            out.append(_by_line(inv, credited, req, no)[0])
    subtotal = sum((x.amount for x in out), Decimal(0))
    if credited.subtotal + subtotal > inv.subtotal:
        raise InputError(
            f"invoice {name}: crediting {subtotal} more would credit "
            f"{credited.subtotal + subtotal} of its subtotal {inv.subtotal}"
        )
    tax = _tax(inv, credited.subtotal + subtotal) - credited.tax
    return Computed(tuple(out), subtotal, tax, subtotal + tax)


__all__ = [
    "REASONS",
    "RELEASING_REASONS",
    "SETTLEMENTS",
    "Computed",
    "CreditLine",
    "CreditNote",
    "CreditNoteLine",
    "Credited",
    "compute_credit",
]
