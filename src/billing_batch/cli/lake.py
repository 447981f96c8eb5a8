"""``billing-batch lake expire``: lake housekeeping."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from ..maintenance import expire_lake_snapshots
from ._common import print_json, settings_from


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("lake", help="lake housekeeping (the nightly run does it too)")
    lsub = p.add_subparsers(dest="lake_command", metavar="SUBCOMMAND", required=True)
    e = lsub.add_parser(
        "expire",
        help="expire old lake snapshots and delete the data files no snapshot reads (JSON)",
        description="Expire the snapshots committed more than --retention-days ago, except "
        "the current one and those invoices were rated at, then delete the data files no "
        "remaining snapshot reads.",
    )
    e.add_argument(
        "--retention-days",
        type=int,
        help="keep this many days of time travel (default: [lake] snapshot_retention_days)",
    )
    e.add_argument("--dry-run", action="store_true", help="report, change nothing")
    e.set_defaults(handler=_expire)


def _expire(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    expiry = expire_lake_snapshots(
        settings, retention_days=args.retention_days, dry_run=args.dry_run
    )
    print_json(asdict(expiry))
    return 0
