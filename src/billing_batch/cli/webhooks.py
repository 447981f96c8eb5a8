"""``billing-batch webhooks deliver|list|endpoints|enable``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import webhooks
from ._common import print_json, settings_from


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("webhooks", help="deliver webhook events and inspect deliveries")
    wsub = p.add_subparsers(dest="webhooks_command", metavar="SUBCOMMAND", required=True)

    d = wsub.add_parser(
        "deliver",
        help="run one delivery pass: send every due event to its endpoints (JSON summary)",
    )
    d.add_argument("--limit", type=int, help="at most this many attempts in this pass")
    d.set_defaults(handler=_deliver)

    ls = wsub.add_parser("list", help="deliveries with their attempts (newest event first)")
    ls.add_argument("--status", choices=("pending", "delivered", "failed"))
    ls.add_argument("--endpoint", help="only this endpoint id")
    ls.add_argument("--event", help="only this event id (evt_...)")
    ls.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    ls.set_defaults(handler=_list)

    e = wsub.add_parser("endpoints", help="configured endpoints and their state (no secrets)")
    e.set_defaults(handler=_endpoints)

    en = wsub.add_parser("enable", help="re-enable an endpoint disabled by a 410 Gone answer")
    en.add_argument("endpoint", help="endpoint id")
    en.set_defaults(handler=_enable)


def _deliver(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    report = webhooks.deliver(settings, limit=args.limit)
    print_json(report.to_dict())
    if report.retry_scheduled:
        print(
            f"billing-batch: {report.retry_scheduled} webhook attempt(s) failed at the "
            "receiver; retries are scheduled (not an error of this pass)",
            file=sys.stderr,
        )
    return 0


def _list(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    print_json(
        webhooks.list_deliveries(
            settings,
            status=args.status,
            endpoint_id=args.endpoint,
            event_id=args.event,
            limit=args.limit,
        )
    )
    return 0


def _endpoints(args: argparse.Namespace) -> int:
    print_json(webhooks.list_endpoints(settings_from(args)))
    return 0


def _enable(args: argparse.Namespace) -> int:
    print_json(webhooks.enable_endpoint(settings_from(args), args.endpoint))
    return 0
