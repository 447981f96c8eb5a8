"""``billing-batch invoice ...``: create, finalize, get, void, pay, explain, list.

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

    ls = isub.add_parser("list", help="list invoices")
    ls.add_argument("--workspace")
    ls.add_argument("--status")
    ls.set_defaults(handler=_list)


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


def _list(args: argparse.Namespace) -> int:
    if args.workspace is not None:
        check_workspace_id(args.workspace, what="--workspace")
    settings = settings_from(args)
    invs = list_invoices(settings, workspace_id=args.workspace, status=args.status)
    print_json([i.to_json() for i in invs])
    return 0
