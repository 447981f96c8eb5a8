"""``billing-batch simulate``: price past usage with a candidate price book, beside what
was invoiced (a table on the terminal, the rows in a Parquet or CSV file)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from .._core import money
from ..config.settings import parse_date
from ..invoicing.simulate import simulate, summary_rows
from ._common import settings_from

_COLUMNS = (
    ("workspace_id", "workspace"),
    ("currency", "cur"),
    ("periods", "periods"),
    ("invoiced_subtotal", "invoiced"),
    ("simulated_subtotal", "simulated"),
    ("difference", "difference"),
)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    s = sub.add_parser(
        "simulate", help="price past usage with a candidate price book (touches no invoice)"
    )
    s.add_argument("--price-book", required=True, type=Path, help="the candidate book (TOML)")
    s.add_argument("--start", required=True, help="first day, YYYY-MM-DD")
    s.add_argument("--end", required=True, help="last day (inclusive), YYYY-MM-DD")
    s.add_argument("--out", type=Path, help="write the rows to this .parquet or .csv file")
    s.add_argument("--workspace", action="append", help="only this workspace (repeatable)")
    s.set_defaults(handler=_simulate)


def _cell(value: object, currency: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, Decimal):
        return money.format_amount(money.quantize(value, currency), currency)
    return str(value)


def render_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Subtotals (before tax) per workspace and in total, aligned."""
    cells = [[h for _, h in _COLUMNS]]
    for r in rows:
        cells.append([_cell(r.get(k), str(r.get("currency") or "USD")) for k, _ in _COLUMNS])
    widths = [max(len(row[i]) for row in cells) for i in range(len(_COLUMNS))]
    lines = []
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _simulate(args: argparse.Namespace) -> int:
    sim = simulate(
        settings_from(args),
        args.price_book,
        parse_date(args.start, what="--start"),
        parse_date(args.end, what="--end"),
        out=args.out,
        workspace_ids=args.workspace,
    )
    print(f"price book {sim.book_version} ({sim.book_digest}), periods {sim.start}..{sim.end}")
    print(render_table(summary_rows(sim)))
    errors = [r for r in sim.rows.to_pylist() if r["error"]]
    for r in errors:
        print(f"! {r['workspace_id']} {r['period_start']}..{r['period_end']}: {r['error']}")
    if sim.path is not None:
        print(f"rows: {sim.path}")
    return 0
