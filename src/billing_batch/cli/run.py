"""``billing-batch run``, ``backfill`` and ``schedule``: the nightly flow."""

from __future__ import annotations

import argparse
import sys
from datetime import date, timedelta
from typing import Any

from rich.console import Console
from rich.table import Table

from .._core.errors import InputError
from .._core.ids import new_id
from ..config.settings import Settings, parse_date
from ..nightly.prefect_server import ensure_api
from ..nightly.schedule import prefect_defaults
from ..nightly.steps import default_run_date, run_lock
from ..nightly.summary import read_summary
from ._common import settings_from


def register(sub: argparse._SubParsersAction[Any]) -> None:
    r = sub.add_parser("run", help="run the nightly job for a date (default: yesterday, UTC)")
    r.add_argument("--date", help="run date YYYY-MM-DD: closes the periods that ended before it")
    r.set_defaults(handler=_run)

    b = sub.add_parser("backfill", help="run the nightly job day by day")
    b.add_argument("--start", required=True)
    b.add_argument("--end", required=True)
    b.set_defaults(handler=_backfill)

    s = sub.add_parser("schedule", help="serve the nightly flow on its cron (needs a Prefect API)")
    s.set_defaults(handler=_schedule)


def _flow(settings: Settings) -> Any:
    """The nightly flow, against a Prefect API: ``PREFECT_API_URL`` or a supervised
    temporary server, started here (a slow start is waited for, and reported)."""
    prefect_defaults(settings)
    ensure_api(settings)
    from ..nightly.flow import nightly  # after prefect_defaults: Prefect reads them at import

    return nightly


def run_dates(settings: Settings, dates: list[date]) -> int:
    """Run the nightly flow for each date, in order, holding the run lock throughout.

    The lock comes first, before anything slow (Prefect's import, its server's start): a
    second run started meanwhile exits at once (LockedError, exit 3). A run that stops
    on an error still has its summary (the flow writes it); it is printed, and the
    remaining dates are not run (exit 1)."""
    with run_lock(settings):
        flow = _flow(settings)
        console = Console()
        config = str(settings.config_file) if settings.config_file else None
        worst = 0
        for day in dates:
            run_id = new_id("run")
            try:
                out = flow(run_date=day, config=config, home=str(settings.home), run_id=run_id)
            except Exception as exc:  # the flow failed as a whole: its summary says where
                summary = read_summary(settings, day, run_id)
                if summary is not None:
                    print_summary(console, summary)
                print(
                    f"billing-batch: error: the run for {day} stopped: {type(exc).__name__}: {exc}",
                    file=sys.stderr,
                )
                if day != dates[-1]:
                    print(f"billing-batch: the dates after {day} were not run", file=sys.stderr)
                return 1
            print_summary(console, out)
            if out["status"] != "succeeded":
                worst = 1
        return worst


def print_summary(console: Console, out: dict[str, Any]) -> None:
    steps = out["steps"]

    def c(step: str, key: str) -> Any:
        return steps.get(step, {}).get("counts", {}).get(key, "-")

    amounts = c("invoices", "amounts")
    invoiced = (
        ", ".join(f"{v:,} {k}" for k, v in amounts.items()) if isinstance(amounts, dict) else "-"
    )
    table = Table(title=f"billing-batch run {out['runDate']} ({out['runId']})")
    table.add_column("", style="bold")
    table.add_column("value", justify="right")
    rows = [
        ("files ingested", c("ingest", "files")),
        ("events ingested", c("ingest", "accepted")),
        ("duplicates", c("ingest", "duplicates")),
        ("rejected lines", c("ingest", "rejected")),
        ("days rolled up", c("rollup", "days")),
        ("invoices finalized", c("invoices", "invoices_finalized")),
        ("late periods carried", c("invoices", "late_periods_carried")),
        ("audit: unexplained", c("audit", "unexplained")),
        ("invoiced", invoiced),
        ("PDFs rendered", c("documents", "rendered")),
        ("payments succeeded", c("payments", "succeeded")),
        ("payments failed", c("payments", "failed")),
        ("marked overdue", c("overdue", "marked_overdue")),
        ("webhooks delivered", c("webhooks", "delivered")),
        ("failures", len(out["failures"])),
        ("status", out["status"]),
    ]
    for label, value in rows:
        table.add_row(label, f"{value:,}" if isinstance(value, int) else str(value or "0"))
    console.print(table)
    for step in steps.values():
        for note in step.get("notes", []):
            console.print(f"[yellow]note:[/yellow] {note}")
    for f in out["failures"][:20]:
        console.print(f"[red]failure:[/red] {f}")
    console.print(f"summary: {out.get('summaryFile')}")


def _run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    day = parse_date(args.date, what="--date") if args.date else default_run_date()
    return run_dates(settings, [day])


def _backfill(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    start = parse_date(args.start, what="--start")
    end = parse_date(args.end, what="--end")
    if end < start:
        raise InputError(f"--end {end} is before --start {start}")
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    return run_dates(settings, days)


def _schedule(args: argparse.Namespace) -> int:
    from ..nightly.schedule import serve

    return serve(settings_from(args))
