"""Price simulation over history: past usage priced with a candidate price book, per
workspace and billing period, beside what was invoiced. Touches no invoice, no ledger,
no state: it reads the lake (one snapshot) and the state, and writes one report file.

* **simulated**: each billing period that lies within [start, end] rated in full (as if
  nothing had been billed) with the candidate book: its plans (the workspace's
  subscriptions, else the candidate's plan for the workspace), prices, discounts and tax
  rate: the same pure rules as an invoice (:func:`.rate.rate_discounted`);
* **invoiced**: the lines of live finalized invoices that bill days of that period
  (its own invoice, late lines carried by later invoices, discounts), summed;
* **difference** = simulated subtotal − invoiced subtotal (before tax, in the currency).

Quantities are read by DuckDB (one query per segment shape for all workspaces,
:func:`.positions.load_positions`); the report is an Arrow table, totals by Arrow's
group-by, written as Parquet or CSV (by the file's suffix), atomically.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .._core.errors import BillingError, InputError
from .._core.files import atomic_write_bytes
from ..config.price_book import read_price_book
from ..config.settings import Settings
from ..rating import Billed, SegmentState
from ..rating.plans import PriceBook, totals
from ..storage import state
from ..storage.lake import Lake
from ..subscriptions.service import load_subscriptions
from ..usage.rollup import ensure_fresh
from .positions import PeriodPosition, load_positions
from .rate import rate_discounted

ZERO = Decimal(0)
_MONEY = pa.decimal128(38, 9)
SCHEMA = pa.schema(
    [
        ("workspace_id", pa.string()),
        ("period_start", pa.date32()),
        ("period_end", pa.date32()),
        ("currency", pa.string()),
        ("invoiced_currency", pa.string()),
        ("invoiced_subtotal", _MONEY),
        ("invoices", pa.string()),
        ("simulated_subtotal", _MONEY),
        ("simulated_tax", _MONEY),
        ("simulated_total", _MONEY),
        ("difference", _MONEY),
        ("error", pa.string()),
    ]
)


@dataclass(frozen=True)
class Simulation:
    book_version: str
    book_digest: str
    start: date
    end: date
    rows: pa.Table  # one row per (workspace, billing period), SCHEMA
    by_workspace: pa.Table  # per (workspace, currency): periods and sums
    by_currency: pa.Table  # per currency: the grand totals
    path: Path | None


@dataclass
class _Invoiced:
    amount: Decimal = ZERO
    currency: str | None = None


def _invoiced(con: Any, start: date, end: date) -> dict[str, list[tuple[date, Decimal, str, str]]]:
    """Per workspace: (day billed, amount, currency, invoice number) of every line of a
    live finalized invoice that bills days in [start, end]."""
    out: dict[str, list[tuple[date, Decimal, str, str]]] = defaultdict(list)
    params = {"start": start.isoformat(), "end": end.isoformat()}
    for r in state.query(con, "price_books/invoiced_lines", params):
        day = date.fromisoformat(r["period_start"])
        out[r["workspace_id"]].append((day, Decimal(r["amount"]), r["currency"], r["number"]))
    return out


def _row(
    settings: Settings,
    book: PriceBook,
    pos: PeriodPosition,
    lines: Sequence[tuple[date, Decimal, str, str]],
) -> dict[str, Any] | None:
    p = pos.period
    got = _Invoiced()
    numbers: set[str] = set()
    for day, amount, currency, number in lines:
        if p.start <= day <= p.end:
            got.amount += amount
            got.currency = currency
            numbers.add(number)
    account = book.account(pos.workspace_id)
    row: dict[str, Any] = {
        "workspace_id": pos.workspace_id,
        "period_start": p.start,
        "period_end": p.end,
        "currency": account.currency,
        "invoiced_currency": got.currency,
        "invoiced_subtotal": got.amount,
        "invoices": ",".join(sorted(numbers)),
        "error": None,
    }
    fresh = [SegmentState(s.span, s.usage, Billed()) for s in pos.segments]
    try:
        rated = rate_discounted(settings, book, pos.workspace_id, p, fresh)
    except BillingError as exc:
        row.update(simulated_subtotal=None, simulated_tax=None, simulated_total=None)
        row.update(difference=None, error=str(exc))
        return row
    sums = totals([x.amount for x in rated.lines], account.tax_rate, account.currency)
    if not rated.lines and not numbers:
        return None  # nothing priced, nothing invoiced: not a row
    row.update(
        simulated_subtotal=sums.subtotal,
        simulated_tax=sums.tax,
        simulated_total=sums.total,
        difference=sums.subtotal - got.amount,
    )
    if got.currency not in (None, account.currency):
        row["error"] = f"invoiced in {got.currency}, simulated in {account.currency}"
        row["difference"] = None
    return row


def _sums(table: pa.Table, keys: list[str]) -> pa.Table:
    cols = ["invoiced_subtotal", "simulated_subtotal", "simulated_total", "difference"]
    agg = table.group_by(keys).aggregate([("period_start", "count"), *((c, "sum") for c in cols)])
    agg = agg.rename_columns([*(c.removesuffix("_sum") for c in agg.column_names)])
    names = {"period_start_count": "periods"}
    agg = agg.rename_columns([names.get(c, c) for c in agg.column_names])
    return agg.sort_by([(k, "ascending") for k in keys])


def _write(table: pa.Table, path: Path) -> Path:
    sink = io.BytesIO()
    if path.suffix == ".csv":
        pacsv.write_csv(table, sink)
    elif path.suffix == ".parquet":
        pq.write_table(table, sink)
    else:
        raise InputError(f"{path}: the report is written as .parquet or .csv")
    return atomic_write_bytes(path, sink.getvalue())


def simulate(
    settings: Settings,
    book_path: Path,
    start: date,
    end: date,
    *,
    out: Path | None = None,
    workspace_ids: Sequence[str] | None = None,
) -> Simulation:
    """Price the billing periods within [start, end] with the book at ``book_path``
    beside what was invoiced; write the rows to ``out`` (.parquet or .csv) when given."""
    if end < start:
        raise InputError(f"--end {end} is before --start {start}")
    book = read_price_book(book_path, metrics=settings.metrics)
    ensure_fresh(settings)
    lake_con = Lake(settings).connect(read_only=True)
    try:
        with state.opened(settings) as con:
            positions = load_positions(
                lake_con,
                con,
                book=book,
                subscriptions=load_subscriptions(con),
                as_of=end + timedelta(days=1),
                workspace_ids=workspace_ids,
            )
            invoiced = _invoiced(con, start, end)
    finally:
        lake_con.close()
    rows = [
        row
        for ws, periods in sorted(positions.by_workspace.items())
        for pos in periods
        if start <= pos.period.start and pos.period.end <= end
        for row in [_row(settings, book, pos, invoiced.get(ws, []))]
        if row is not None
    ]
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    return Simulation(
        book_version=book.version,
        book_digest=book.digest,
        start=start,
        end=end,
        rows=table,
        by_workspace=_sums(table, ["workspace_id", "currency"]),
        by_currency=_sums(table, ["currency"]),
        path=_write(table, out) if out is not None else None,
    )


def summary_rows(sim: Simulation) -> list[Mapping[str, Any]]:
    """Per workspace then per currency ("TOTAL"): what the terminal table shows."""
    per_ws = sim.by_workspace.to_pylist()
    total = [{"workspace_id": "TOTAL", **r} for r in sim.by_currency.to_pylist()]
    return [*per_ws, *total]


__all__ = ["SCHEMA", "Simulation", "simulate", "summary_rows"]
