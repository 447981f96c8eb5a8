"""``billing-batch usage``, ``billing-batch rollup`` and ``billing-batch sql``."""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import IO, Any

import duckdb

from .._core.errors import BillingError
from .._core.ids import check_workspace_id
from .._core.jsonutil import decimal_text, dumps
from ..storage.analyst import QueryResult, analyst_query, open_analyst_session
from ..usage.queries import get_usage
from ..usage.rollup import refresh_rollup
from ._common import print_json, settings_from

#: Rows shown by the table format unless --limit says otherwise.
TABLE_ROWS = 1000


def register(sub: argparse._SubParsersAction[Any]) -> None:
    u = sub.add_parser(
        "usage",
        help="a workspace's usage over a date range: total and daily breakdown (JSON)",
        description="Print {metric, total, breakdown} for one metric, or a list of them "
        "(one per catalogue metric) without --metric. Dates are UTC days, inclusive.",
    )
    u.add_argument("--workspace", required=True, help="workspace id, e.g. ws_123")
    u.add_argument("--metric", help="metric name (default: every metric)")
    u.add_argument("--start", required=True, help="first day, YYYY-MM-DD")
    u.add_argument("--end", required=True, help="last day, YYYY-MM-DD (inclusive)")
    u.set_defaults(handler=_usage)

    r = sub.add_parser(
        "rollup", help="refresh the daily usage rollup (recompute the days of new ingests)"
    )
    r.add_argument(
        "--full", action="store_true", help="recompute every day (after a catalogue change)"
    )
    r.set_defaults(handler=_rollup)

    s = sub.add_parser(
        "sql",
        help="run a read-only SQL query against the lake (no query: interactive prompt)",
        description="Queries run on a sandboxed, read-only connection to the lake: "
        "SELECT/EXPLAIN over its tables, views and snapshots only (no other file or "
        "database: read_csv, sqlite_scan, ... are refused; no COPY, ATTACH, LOAD, SET, "
        "PRAGMA; see docs/analysts.md). Interactive mode reads statements ending with ';' "
        "and stops at '.quit' or end of input.",
    )
    s.add_argument("query", nargs="?", help="the SQL query (omit for a prompt)")
    s.add_argument("--format", choices=("table", "csv", "json"), default="table")
    s.add_argument(
        "--limit",
        type=int,
        default=None,
        help=f"at most N rows (default: {TABLE_ROWS} for the table format, all otherwise)",
    )
    s.set_defaults(handler=_sql)


def _usage(args: argparse.Namespace) -> int:
    workspace = check_workspace_id(args.workspace, what="--workspace")
    settings = settings_from(args)
    result = get_usage(
        settings,
        workspace,
        args.start,
        args.end,
        args.metric,
    )
    print_json(result)
    return 0


def _rollup(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    print_json(refresh_rollup(settings, full=args.full).to_dict())
    return 0


def _sql(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    limit = args.limit
    if limit is None and args.format == "table":
        limit = TABLE_ROWS
    con = open_analyst_session(settings)
    try:
        if args.query is not None:
            print_result(analyst_query(con, args.query, limit=limit), args.format, sys.stdout)
            return 0
        return interactive(con, args.format, limit, sys.stdin, sys.stdout)
    finally:
        con.close()


def interactive(
    con: duckdb.DuckDBPyConnection, fmt: str, limit: int | None, stdin: IO[str], out: IO[str]
) -> int:
    """Read statements (ending with ';') until '.quit' or end of input; print each result.
    An error is printed and the prompt goes on."""
    tty = stdin.isatty()
    buf: list[str] = []
    while True:
        if tty:
            sys.stderr.write("billing> " if not buf else "    ...> ")
            sys.stderr.flush()
        line = stdin.readline()
        if not line:
            break
        text = line.strip()
        if not buf and text in (".quit", ".exit"):
            break
        if not buf and not text:
            continue
        buf.append(line)
        if text.endswith(";"):
            sql = "".join(buf)
            buf = []
            try:
                print_result(analyst_query(con, sql, limit=limit), fmt, out)
            except BillingError as exc:
                print(f"error: {exc}", file=sys.stderr)
    if buf:
        print("error: statement not terminated with ';', not run", file=sys.stderr)
    return 0


# --- printing ----------------------------------------------------------------------------
def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return decimal_text(value) if value.is_finite() else str(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (list, tuple, dict)):
        return dumps(_plain(value))
    return str(value)


def _plain(value: Any) -> Any:
    """A query value as something jsonutil can write."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, Decimal):
        return value if value.is_finite() else str(value)
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.isoformat()
    if isinstance(value, date):
        return value
    if isinstance(value, (time, timedelta)):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return str(value)


def print_result(result: QueryResult, fmt: str, out: IO[str]) -> None:
    if fmt == "json":
        rows = [
            {c: _plain(v) for c, v in zip(result.columns, row, strict=True)} for row in result.rows
        ]
        out.write(dumps(rows, indent=2) + "\n")
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(result.columns)
        for row in result.rows:
            writer.writerow([_text(v) for v in row])
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(show_header=True, header_style="bold")
        for c in result.columns:
            table.add_column(c, overflow="fold")
        for row in result.rows:
            table.add_row(*["NULL" if v is None else _text(v) for v in row])
        Console(file=out, soft_wrap=False).print(table)
        count = f"{len(result.rows)} row{'s' if len(result.rows) != 1 else ''}"
        more = " (more not shown: raise --limit)" if result.truncated else ""
        out.write(count + more + "\n")
    out.flush()
    if result.truncated and fmt != "table":
        print(f"billing-batch: output cut at {len(result.rows)} rows (--limit)", file=sys.stderr)
