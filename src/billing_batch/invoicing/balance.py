"""The customer balance: money a workspace has on account, per currency (table
``balance_transactions``, signed amounts in major units).

* A credit note on a **paid** invoice that is not refunded leaves its total on the
  account (:func:`credit_from_note`, a positive move).
* At finalization, :func:`apply_balances` applies what is on the account to the new
  invoice's amount due (a negative move), never below zero; what is left stays for the
  next invoice. Then the workspace's prepaid credits (grants, :mod:`.credits`) pay what
  is left. This is the one "credits applied" step of finalization, so the order in
  which credits apply has one home: discounts and tax make the total, the account
  balance (credit notes) applies first, prepaid grants next, Stripe charges the rest.

Every move has a stable id (its source), so a rerun writes nothing twice.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from .._core import clock
from .._core.ids import stable_id
from ..config.settings import Settings
from ..storage import state
from ..storage.state import StateConnection
from . import credits
from .model import Invoice


@dataclass(frozen=True)
class BalanceMove:
    id: str
    workspace_id: str
    currency: str
    kind: str  # credit_note | applied
    amount: Decimal
    credit_note_id: str | None
    invoice_id: str | None
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "balance_transaction",
            "workspaceId": self.workspace_id,
            "currency": self.currency,
            "kind": self.kind,
            "amount": self.amount,
            "creditNoteId": self.credit_note_id,
            "invoiceId": self.invoice_id,
            "createdAt": self.created_at,
        }


def moves(con: StateConnection, workspace_id: str, currency: str | None) -> list[BalanceMove]:
    """The workspace's balance moves (in one currency, or all), oldest first."""
    params = {"workspace_id": workspace_id, "currency": currency}
    return [
        BalanceMove(
            id=r["id"],
            workspace_id=r["workspace_id"],
            currency=r["currency"],
            kind=r["kind"],
            amount=Decimal(r["amount"]),
            credit_note_id=r["credit_note_id"],
            invoice_id=r["invoice_id"],
            created_at=clock.parse_ts(r["created_at"]),
        )
        for r in state.query(con, "credit_notes/balance_transactions", params)
    ]


def balance_of(con: StateConnection, workspace_id: str, currency: str) -> Decimal:
    """What the workspace has on account in ``currency`` (exact)."""
    return sum((m.amount for m in moves(con, workspace_id, currency)), Decimal(0))


def get_balance(settings: Settings, workspace_id: str) -> dict[str, Decimal]:
    """The workspace's balance per currency (currencies with moves only)."""
    out: dict[str, Decimal] = {}
    with state.opened(settings) as con:
        for m in moves(con, workspace_id, None):
            out[m.currency] = out.get(m.currency, Decimal(0)) + m.amount
    return out


def _insert(con: StateConnection, move: BalanceMove) -> None:
    state.query(
        con,
        "credit_notes/insert_balance_transaction",
        {
            "id": move.id,
            "workspace_id": move.workspace_id,
            "currency": move.currency,
            "kind": move.kind,
            "amount": str(move.amount),
            "credit_note_id": move.credit_note_id,
            "invoice_id": move.invoice_id,
            "created_at": clock.ts(move.created_at),
        },
    )


def credit_from_note(
    con: StateConnection,
    *,
    credit_note_id: str,
    workspace_id: str,
    currency: str,
    amount: Decimal,
    at: datetime,
) -> BalanceMove:
    """Put a credit note's total on the workspace's account (inside the caller's
    transaction)."""
    move = BalanceMove(
        id=stable_id("bal", "credit_note", credit_note_id),
        workspace_id=workspace_id,
        currency=currency,
        kind="credit_note",
        amount=amount,
        credit_note_id=credit_note_id,
        invoice_id=None,
        created_at=at,
    )
    _insert(con, move)
    return move


def set_amount_due(con: StateConnection, invoice_id: str, amount: Decimal, at: datetime) -> None:
    """Record what is left to pay on an invoice (inside the caller's transaction)."""
    params = {"id": invoice_id, "amount_due": str(amount), "at": clock.ts(at)}
    state.query(con, "credit_notes/set_invoice_amount_due", params)


def funded_workspaces(con: StateConnection) -> frozenset[str]:
    """The workspaces with a balance move or a credit grant (a superset of those with
    money on account). Inside a transaction that holds the write lock and only
    finalizes invoices, it stays true: finalizing moves money only for these."""
    return frozenset(r[0] for r in state.query(con, "credits/funded_workspaces"))


def apply_balances(
    con: StateConnection,
    invoice: Invoice,
    now: datetime,
    *,
    funded: Collection[str] | None = None,
) -> Invoice:
    """Apply the workspace's balance to a finalizing invoice (inside the transaction
    that finalizes it): its amount due becomes ``total - applied``, where ``applied`` is
    at most the balance and at most the total (an invoice of 0 or less takes nothing).
    Returns the invoice with ``amount_due`` set; the caller writes it with the invoice row
    (:func:`.lifecycle.finalize_draft`: one statement, not two).
    ``funded``: :func:`funded_workspaces`, read once by a caller finalizing many
    invoices; a workspace not in it has nothing to apply (nothing is read for it)."""
    if funded is not None and invoice.workspace_id not in funded:
        return replace(invoice, amount_due=invoice.total)
    applied = Decimal(0)
    if invoice.total > 0:
        available = balance_of(con, invoice.workspace_id, invoice.currency)
        applied = min(available, invoice.total) if available > 0 else Decimal(0)
    if applied:
        _insert(
            con,
            BalanceMove(
                id=stable_id("bal", "applied", invoice.id),
                workspace_id=invoice.workspace_id,
                currency=invoice.currency,
                kind="applied",
                amount=-applied,
                credit_note_id=None,
                invoice_id=invoice.id,
                created_at=now,
            ),
        )
    due = invoice.total - applied
    # then prepaid credits (grants) pay what is left: invoicing.credits, rating.credits
    draws = (
        credits.draw_down(
            con,
            invoice.id,
            invoice.workspace_id,
            invoice.currency,
            due,
            invoice.period_end,
            now,
        )
        if due > 0
        else []
    )
    extra = invoice.extra
    if draws:
        extra = {**extra, **credits.credits_document(draws, due)}
        due = extra["amountDue"]
    return replace(invoice, amount_due=due, extra=extra)


__all__ = [
    "BalanceMove",
    "apply_balances",
    "balance_of",
    "credit_from_note",
    "funded_workspaces",
    "get_balance",
    "moves",
    "set_amount_due",
]
