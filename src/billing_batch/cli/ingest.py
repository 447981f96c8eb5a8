"""``billing-batch ingest`` and ``billing-batch sample``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..usage.ingest import IngestReport
from ..usage.ingest import ingest as run_ingest
from ..usage.sample import generate
from ..webhooks.outbox import record_usage_events
from ._common import print_json, settings_from


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "ingest",
        help="ingest usage logs (files or folders; default: new files in the landing folder)",
    )
    p.add_argument("paths", nargs="*", help=".jsonl / .jsonl.gz files or folders")
    p.set_defaults(handler=_ingest)

    s = sub.add_parser("sample", help="write a realistic, seeded month of usage logs")
    s.add_argument("--out", help="output folder (default: the landing folder)")
    s.add_argument("--month", default="2024-01", help="YYYY-MM (default 2024-01)")
    s.add_argument("--workspaces", type=int, default=50)
    s.add_argument("--events", type=int, default=1_000_000)
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--bad-lines", type=int, default=10)
    s.set_defaults(handler=_sample)


def _ingest(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    report = run_ingest(settings, args.paths or None)
    out = report.to_dict()
    # one billing.usage.recorded event per workspace of each ingest (idempotent)
    out["usage_events"] = len(record_usage_events(settings))
    print_json(out)
    _explain(report)
    return 1 if report.failed else 0


def _explain(report: IngestReport) -> None:
    """Say on stderr what was left out and where it is kept: nothing goes silently."""
    kept = f"kept in {report.rejects_file} and the lake table rejects"
    for f in report.all_rejected:
        print(
            f"billing-batch: warning: all {f.rejected:,} line(s) of {f.source_file} were "
            f"rejected (most often: {f.top_reject_reason}); {kept}",
            file=sys.stderr,
        )
    everything = report.all_rejected
    partial = [f for f in report.files if not f.error and f.rejected and f not in everything]
    if partial:
        lines = sum(f.rejected for f in partial)
        print(
            f"billing-batch: {lines:,} line(s) rejected in {len(partial)} file(s); {kept}",
            file=sys.stderr,
        )
    for f in report.failed:
        print(f"billing-batch: error: {f.error}", file=sys.stderr)


def _sample(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    out = args.out or str(settings.landing_dir)
    report = generate(
        out,
        month=args.month,
        workspaces=args.workspaces,
        events=args.events,
        seed=args.seed,
        bad_lines=args.bad_lines,
    )
    print_json(
        {
            "out": out,
            "files": len(report.files),
            "events": report.events,
            "lines": report.lines,
            "retried_lines": report.duplicate_lines,
            "bad_lines": report.bad_lines,
            "workspaces": report.workspaces,
        }
    )
    return 0
