"""``billing-batch subscription ...``: create, change, cancel, show (JSON out)."""

from __future__ import annotations

import argparse
from typing import Any

from ..config.settings import parse_date
from ..subscriptions.service import (
    cancel_subscription,
    change_subscription,
    create_subscription,
    show_subscription,
)
from ._common import print_json, settings_from


def register(sub: argparse._SubParsersAction[Any]) -> None:
    s = sub.add_parser("subscription", help="plans per workspace over time")
    ssub = s.add_subparsers(dest="subscription_command", metavar="ACTION", required=True)

    c = ssub.add_parser("create", help="subscribe a workspace to a plan from a date")
    c.add_argument("--workspace", required=True)
    c.add_argument("--plan", required=True)
    c.add_argument("--start", required=True, help="first day in force, YYYY-MM-DD")
    c.add_argument("--anchor-day", type=int, default=1, help="billing anchor day 1-28 (default 1)")
    c.add_argument("--trial-days", type=int, default=0, help="days without the base fee")
    c.set_defaults(handler=_create)

    ch = ssub.add_parser("change", help="switch plan from an effective date")
    ch.add_argument("workspace")
    ch.add_argument("--plan", required=True)
    ch.add_argument("--effective", required=True, help="first day of the new plan")
    ch.set_defaults(handler=_change)

    x = ssub.add_parser("cancel", help="cancel from an effective date (first day without it)")
    x.add_argument("workspace")
    x.add_argument("--effective", required=True)
    x.set_defaults(handler=_cancel)

    sh = ssub.add_parser("show", help="current plan and history")
    sh.add_argument("workspace")
    sh.set_defaults(handler=_show)


def _create(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    create_subscription(
        settings,
        args.workspace,
        args.plan,
        parse_date(args.start, what="--start"),
        anchor_day=args.anchor_day,
        trial_days=args.trial_days,
    )
    return _after(settings, args.workspace)


def _change(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    change_subscription(
        settings, args.workspace, args.plan, parse_date(args.effective, what="--effective")
    )
    return _after(settings, args.workspace)


def _cancel(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    cancel_subscription(settings, args.workspace, parse_date(args.effective, what="--effective"))
    return _after(settings, args.workspace)


def _after(settings: Any, workspace: str) -> int:
    print_json(show_subscription(settings, workspace))
    return 0


def _show(args: argparse.Namespace) -> int:
    print_json(show_subscription(settings_from(args), args.workspace))
    return 0
