"""``billing-batch reconcile [--period YYYY-MM]``: lake usage ↔ invoices ↔ Stripe."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import print_json, settings_from


def register(sub: argparse._SubParsersAction[Any]) -> None:
    r = sub.add_parser(
        "reconcile",
        help="three-way reconciliation: lake usage, invoices, Stripe (exit 1: mismatches)",
        description="The audit's unexplained differences (usage vs invoices), then, when "
        "STRIPE_API_KEY is set, each finalized invoice against Stripe: one succeeded "
        "PaymentIntent for the amount due of a paid invoice, none for an unpaid one, each "
        "refund matching its credit note. Every mismatch is listed and recorded "
        "(reconcile_findings). Exit status 1 when there is any.",
    )
    r.add_argument("--period", help="invoices whose period starts in this month (YYYY-MM)")
    r.set_defaults(handler=_reconcile)


def _reconcile(args: argparse.Namespace) -> int:
    from ..invoicing.reconcile import parse_period, reconcile

    period = parse_period(args.period) if args.period else None
    report = reconcile(settings_from(args), period=period)
    print_json(report.to_json())
    for m in report.mismatches[:20]:
        print(f"{m.kind}: {m.message}", file=sys.stderr)
    return 1 if report.mismatches else 0


__all__ = ["register"]
