"""``billing-batch credit ...``: grant, list and balance of prepaid credits (JSON out)."""

from __future__ import annotations

import argparse
from typing import Any

from .._core import clock, money
from ..config.settings import parse_date
from ..invoicing.credits import balances, grant_credit, list_grants
from ._common import print_json, settings_from


def register(sub: argparse._SubParsersAction[Any]) -> None:
    c = sub.add_parser("credit", help="prepaid credits: grants drawn down at finalization")
    csub = c.add_subparsers(dest="credit_command", metavar="ACTION", required=True)

    g = csub.add_parser("grant", help="grant a workspace an amount of prepaid credit")
    g.add_argument("--workspace", required=True)
    g.add_argument("--amount", required=True, help="decimal, major units (e.g. 100.00)")
    g.add_argument("--currency", required=True, help="ISO 4217 code, e.g. USD")
    g.add_argument("--effective", required=True, help="first day usable, YYYY-MM-DD")
    g.add_argument("--expires", help="last day usable, YYYY-MM-DD (default: never)")
    g.add_argument("--priority", type=int, default=0, help="lower is drawn first (default 0)")
    g.add_argument("--reason", default="")
    g.add_argument(
        "--idempotency-key",
        help="e.g. the order reference: run again with the same key, nothing more is granted",
    )
    g.set_defaults(handler=_grant)

    ls = csub.add_parser("list", help="grants with their balance")
    ls.add_argument("--workspace")
    ls.set_defaults(handler=_list)

    b = csub.add_parser("balance", help="usable credit per currency on a day")
    b.add_argument("workspace")
    b.add_argument("--on", help="YYYY-MM-DD (default: today, UTC)")
    b.set_defaults(handler=_balance)


def _grant(args: argparse.Namespace) -> int:
    grant = grant_credit(
        settings_from(args),
        args.workspace,
        money.parse_decimal(args.amount, what="--amount"),
        args.currency,
        effective_on=parse_date(args.effective, what="--effective"),
        expires_on=parse_date(args.expires, what="--expires") if args.expires else None,
        priority=args.priority,
        reason=args.reason,
        idempotency_key=args.idempotency_key,
    )
    print_json(grant.to_json())
    return 0


def _list(args: argparse.Namespace) -> int:
    print_json([g.to_json() for g in list_grants(settings_from(args), args.workspace)])
    return 0


def _balance(args: argparse.Namespace) -> int:
    on = parse_date(args.on, what="--on") if args.on else clock.utcnow().date()
    got = balances(settings_from(args), args.workspace, on)
    print_json({"workspaceId": args.workspace, "on": on, "balances": got})
    return 0
