"""``billing-batch lake expire|relocate``: lake housekeeping, and a moved home made whole."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..storage.maintenance import expire_lake_snapshots
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

    r = lsub.add_parser(
        "relocate",
        help="make a moved, copied or restored BILLING_HOME's lake this home's (JSON)",
        description="A home copied (cp -a), moved or restored elsewhere still records its "
        "former paths: the lake's catalog its data path (every command then refuses it), "
        "the ingest manifest which landing files were read, invoices their JSON and PDF "
        "files. This records this home's paths instead; nothing is re-ingested. Run it "
        "once in the new home, with no run in progress.",
    )
    r.add_argument(
        "--from",
        dest="former_home",
        metavar="OLD_HOME",
        help="where the home was (default: worked out from the data path the catalog records)",
    )
    r.add_argument("--dry-run", action="store_true", help="report, change nothing")
    r.set_defaults(handler=_relocate)


def _expire(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    expiry = expire_lake_snapshots(
        settings, retention_days=args.retention_days, dry_run=args.dry_run
    )
    print_json(asdict(expiry))
    return 0


def _relocate(args: argparse.Namespace) -> int:
    from ..storage.relocation import relocate_home

    settings = settings_from(args)
    former = Path(args.former_home) if args.former_home else None
    print_json(relocate_home(settings, former_home=former, dry_run=args.dry_run).to_json())
    return 0
