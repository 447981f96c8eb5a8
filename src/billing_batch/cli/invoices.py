"""``billing-batch invoice ...``: create, finalize, get, void, pay, explain, rerate, list.

Every subcommand prints the invoice's JSON on success and exits non-zero with a clear
message on failure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .._core.errors import PaymentRefusedError
from .._core.files import atomic_write_bytes
from .._core.ids import check_workspace_id
from ..config.settings import parse_date
from ..invoicing.explain import explain_invoice
from ..invoicing.service import (
    create_invoice,
    finalize_invoice,
    get_invoice,
    list_invoices,
    void_invoice,
)
from ._common import print_json, settings_from


def register(sub: argparse._SubParsersAction[Any]) -> None:
    inv = sub.add_parser("invoice", help="create, finalize, get, void, pay or explain invoices")
    isub = inv.add_subparsers(dest="invoice_command", metavar="ACTION", required=True)

    c = isub.add_parser("create", help="create (or refresh) the draft for a workspace and period")
    c.add_argument("--workspace", required=True)
    c.add_argument("--start", required=True, help="first day, YYYY-MM-DD")
    c.add_argument("--end", required=True, help="last day (inclusive), YYYY-MM-DD")
    c.set_defaults(handler=_create)

    f = isub.add_parser("finalize", help="number and freeze a draft (status open), write JSON+PDF")
    f.add_argument("id")
    f.set_defaults(handler=_finalize)

    g = isub.add_parser("get", help="print an invoice (by id or number)")
    g.add_argument("id")
    g.add_argument("--pdf", metavar="OUT", help="also write its PDF to OUT")
    g.add_argument(
        "--copy",
        choices=("current", "original"),
        default="current",
        help="with --pdf: 'current' (default) states the status now; 'original' is the "
        "archival copy written at finalization",
    )
    g.set_defaults(handler=_get)

    v = isub.add_parser("void", help="cancel an open or overdue invoice")
    v.add_argument("id")
    v.add_argument("--reason", default="")
    v.set_defaults(handler=_void)

    p = isub.add_parser(
        "pay", help="charge an invoice through Stripe (a draft is finalized first, as on Stripe)"
    )
    p.add_argument("id")
    p.add_argument("--payment-method", help="pm_... (default: the workspace's default)")
    p.set_defaults(handler=_pay)

    e = isub.add_parser("explain", help="daily quantities, tier arithmetic, snapshot, recheck")
    e.add_argument("id")
    e.set_defaults(handler=_explain)

    _register_rerate(isub)

    ls = isub.add_parser("list", help="list invoices")
    ls.add_argument("--workspace")
    ls.add_argument("--status")
    ls.set_defaults(handler=_list)


def _register_rerate(isub: argparse._SubParsersAction[Any]) -> None:
    r = isub.add_parser(
        "rerate", help="re-rate a finalized invoice with another price book: the diff by line"
    )
    r.add_argument("id")
    r.add_argument("--price-book", type=Path, help="the book to re-rate with (default: today's)")
    r.add_argument(
        "--as-of", type=int, metavar="SNAPSHOT", help="lake snapshot (default: the invoice's)"
    )
    r.add_argument(
        "--issue",
        action="store_true",
        help="issue exactly the difference: a debit invoice, or a credit note",
    )
    r.add_argument("--json", action="store_true", help="print JSON instead of a table")
    r.set_defaults(handler=_rerate)


def _create(args: argparse.Namespace) -> int:
    workspace = check_workspace_id(args.workspace, what="--workspace")
    start = parse_date(args.start, what="--start")
    end = parse_date(args.end, what="--end")
    settings = settings_from(args)
    inv = create_invoice(settings, workspace, start, end)
    print_json(inv.to_json())
    return 0


def _finalize(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    inv = finalize_invoice(settings, args.id)
    print_json(inv.to_json())
    return 0


def _get(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    inv = get_invoice(settings, args.id)
    if args.pdf:
        from ..documents.copies import invoice_pdf

        out = Path(args.pdf).expanduser().resolve()
        atomic_write_bytes(out, invoice_pdf(settings, inv, args.copy).data)
    print_json(inv.to_json())
    return 0


def _void(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    inv = void_invoice(settings, args.id, reason=args.reason)
    print_json(inv.to_json())
    return 0


def _pay(args: argparse.Namespace) -> int:
    from ..payments.charging import pay_invoice

    settings = settings_from(args)
    result = pay_invoice(settings, args.id, payment_method=args.payment_method)
    print_json(result.to_json())
    if result.succeeded:
        return 0
    error = result.error()
    if error is None:
        print(
            f"billing-batch: invoice {args.id}: Stripe's answer is not known yet; "
            "it is looked up on the next run",
            file=sys.stderr,
        )
        return 1
    print(f"billing-batch: error: {error}", file=sys.stderr)
    # Stripe refused the request (an unknown payment method): bad input, exit 2.
    return 2 if isinstance(error, PaymentRefusedError) else 1


def _explain(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    print_json(explain_invoice(settings, args.id))
    return 0


def _rerate(args: argparse.Namespace) -> int:
    from ..invoicing.rerate import issue_difference, rerate_invoice

    settings = settings_from(args)
    diff = rerate_invoice(settings, args.id, book_path=args.price_book, as_of=args.as_of)
    issued = issue_difference(settings, diff) if args.issue else None
    if args.json:
        print_json({**diff.to_json(), **({"issued": issued} if issued else {})})
        return 0
    print(render_diff(diff))
    if issued:
        doc = issued.get("debitInvoice") or issued.get("creditNote") or {}
        print(f"issued: {doc.get('number')} for {doc.get('total')} {diff.invoice.currency}")
    return 0


def render_diff(diff: Any) -> str:
    """The rerate's lines: old amount, new amount, difference; then the totals."""
    cur = diff.invoice.currency
    rows = [("line", "old", "new", "difference")]
    rows += [
        (x.description, fmt(x.old, cur), fmt(x.new, cur), fmt(x.difference, cur))
        for x in diff.lines
    ]
    rows.append(
        (
            "Subtotal",
            fmt(diff.old_subtotal, cur),
            fmt(diff.new_subtotal, cur),
            fmt(diff.subtotal_difference, cur),
        )
    )
    rows.append(("Tax", "", "", fmt(diff.tax_difference, cur)))
    rows.append(("Total difference", "", "", fmt(diff.total_difference, cur)))
    width = [max(len(r[i]) for r in rows) for i in range(4)]
    head = (
        f"invoice {diff.invoice.number} ({cur}): price book {diff.old_book.version} -> "
        f"{diff.new_book.version}, lake snapshot {diff.snapshot}"
    )
    body = [
        "  ".join(c.ljust(width[0]) if i == 0 else c.rjust(width[i]) for i, c in enumerate(r))
        for r in rows
    ]
    return "\n".join([head, *body])


def fmt(amount: Any, currency: str) -> str:
    from .._core.money import format_amount

    return format_amount(amount, currency)


def _list(args: argparse.Namespace) -> int:
    if args.workspace is not None:
        check_workspace_id(args.workspace, what="--workspace")
    settings = settings_from(args)
    invs = list_invoices(settings, workspace_id=args.workspace, status=args.status)
    print_json([i.to_json() for i in invs])
    return 0
