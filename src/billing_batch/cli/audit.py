"""``billing-batch audit``: usage in the lake against what invoices billed."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..config.settings import parse_date
from ..invoicing.audit import audit, describe
from ._common import print_json, settings_from


def register(sub: argparse._SubParsersAction[Any]) -> None:
    a = sub.add_parser(
        "audit",
        help="compare usage in the lake with what invoices billed (exit 1: unexplained)",
        description="For each workspace, closed billing period, segment and metric: usage in "
        "the lake vs. quantity on non-void invoices; fee days in force vs. billed; closed "
        "periods not billed. Default: today; what the next run will bill is explained, "
        "anything no run can make right (billed twice, more fee days than in force) is "
        "not. --strict checks what a run must leave (default: the newest nightly run's "
        "date and lake snapshot). Exit status 1 when a difference is unexplained.",
    )
    a.add_argument("--date", help="check the periods that ended before this day (YYYY-MM-DD)")
    a.add_argument(
        "--strict",
        action="store_true",
        help="what a run on --date must leave (default: the newest nightly run)",
    )
    a.add_argument("--record", action="store_true", help="store the audit (audit_runs table)")
    a.set_defaults(handler=_audit)


def _audit(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    report = audit(
        settings,
        as_of=parse_date(args.date, what="--date") if args.date else None,
        mode="strict" if args.strict else "now",
        record=args.record,
    )
    print_json(report.to_dict())
    for line in describe(report.unexplained[:20]):
        print(line, file=sys.stderr)
    return 0 if report.healthy else 1
