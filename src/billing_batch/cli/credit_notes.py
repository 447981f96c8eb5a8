"""``billing-batch credit-note create|get|list|refunds``: credit notes (docs/credit-notes.md)."""

from __future__ import annotations

import argparse
from decimal import Decimal
from typing import Any

from .._core.errors import InputError
from .._core.money import parse_decimal
from ..invoicing.credit_note_model import REASONS, CreditLine
from ._common import print_json, settings_from


def register(sub: argparse._SubParsersAction[Any]) -> None:
    cn = sub.add_parser("credit-note", help="credit notes: correct a finalized invoice")
    verbs = cn.add_subparsers(dest="verb", required=True)
    c = verbs.add_parser(
        "create",
        help="issue a credit note against an open, overdue or paid invoice",
        description="Without --line or --amount: everything left of the invoice. An unpaid "
        "invoice's amount due drops; a paid one's credit goes to the customer balance, or "
        "is refunded through Stripe with --refund.",
    )
    c.add_argument("invoice", help="invoice id or number")
    c.add_argument("--reason", required=True, choices=REASONS)
    c.add_argument(
        "--line",
        action="append",
        default=[],
        metavar="N:qty=Q|N:amount=A",
        help="credit invoice line N by a quantity or an amount (before tax); repeatable",
    )
    c.add_argument("--amount", help="a lump amount before tax (instead of --line)")
    c.add_argument("--refund", action="store_true", help="refund a paid invoice through Stripe")
    c.add_argument("--memo", default="", help="a note printed on the credit note")
    c.set_defaults(handler=_create)
    g = verbs.add_parser("get", help="a credit note (id or number), with its refund")
    g.add_argument("reference")
    g.set_defaults(handler=_get)
    ls = verbs.add_parser("list", help="credit notes in issue order")
    ls.add_argument("--workspace")
    ls.add_argument("--invoice", help="invoice id or number")
    ls.add_argument("--limit", type=int, default=100)
    ls.set_defaults(handler=_list)
    r = verbs.add_parser("refunds", help="send the pending refunds to Stripe again")
    r.set_defaults(handler=_refunds)


def parse_line(text: str) -> CreditLine:
    """``3:qty=1000`` or ``3:amount=12.50`` as a :class:`CreditLine`."""
    try:
        number, spec = text.split(":", 1)
        key, value = spec.split("=", 1)
        line_no = int(number)
    except ValueError:
        raise InputError(f"--line {text!r}: expected N:qty=Q or N:amount=A") from None
    amount: Decimal = parse_decimal(value, what=f"--line {text}")
    if key in ("qty", "quantity"):
        return CreditLine(line_no, quantity=amount)
    if key == "amount":
        return CreditLine(line_no, amount=amount)
    raise InputError(f"--line {text!r}: {key!r} is not qty or amount")


def _create(args: argparse.Namespace) -> int:
    from ..invoicing.credit_notes import issue_credit_note

    settings = settings_from(args)
    note = issue_credit_note(
        settings,
        args.invoice,
        reason=args.reason,
        lines=[parse_line(x) for x in args.line] or None,
        amount=parse_decimal(args.amount, what="--amount") if args.amount else None,
        refund=args.refund,
        memo=args.memo,
    )
    return _show(settings, note.id)


def _show(settings: Any, reference: str) -> int:
    from ..invoicing.credit_notes import get_credit_note
    from ..payments.refunds import refund_of
    from ..storage import state

    note = get_credit_note(settings, reference)
    out = note.to_json()
    out["files"] = {"json": note.json_path, "pdf": note.pdf_path}
    with state.opened(settings) as con:
        refund = refund_of(con, note.id)
    out["refund"] = refund.to_json() if refund is not None else None
    print_json(out)
    return 1 if refund is not None and refund.status == "failed" else 0


def _get(args: argparse.Namespace) -> int:
    return _show(settings_from(args), args.reference)


def _list(args: argparse.Namespace) -> int:
    from ..invoicing.credit_notes import list_credit_notes

    notes = list_credit_notes(
        settings_from(args), workspace_id=args.workspace, invoice_id=args.invoice, limit=args.limit
    )
    print_json([n.to_json() for n in notes])
    return 0


def _refunds(args: argparse.Namespace) -> int:
    from ..payments.refunds import resolve_pending_refunds

    done = resolve_pending_refunds(settings_from(args))
    print_json([r.to_json() for r in done])
    return 1 if any(r.status != "succeeded" for r in done) else 0


__all__ = ["parse_line", "register"]
