"""The daily rollup: ``usage_daily`` (workspace x metric x UTC day) and ``gauge_monthly``
kept up to date with ``events``, incrementally.

:func:`refresh_rollup` finds the ingests of ``ingest_manifest`` that ``rollup_log`` has
not absorbed yet, and recomputes exactly the union of their days from ``events`` (whole
day partitions: delete, then insert), plus the months of those days in
``gauge_monthly``; all in one DuckLake transaction under the lake write lock. The cost
follows the new days (``events`` and ``usage_daily`` are partitioned by day; each run of
consecutive days is one range-filtered pass), not the history; the gauge months re-read
at most a month of ``usage_daily`` each. With nothing new it writes nothing (no
snapshot). :func:`ensure_fresh` is what every reader calls first (fresh reads).

How a day of each aggregation is computed: :mod:`.queries` (the table of semantics) and
``sql/rollup_usage_daily*.sql``; each ``usage_daily`` row records the aggregation (and,
for ``unique_count``, the property) it was computed with.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import duckdb

from .._core import clock
from .._core.errors import ConfigError, LakeError, LockedError, StaleUsageError
from ..config.metrics import MetricDef
from ..config.settings import Settings
from ..storage.lake import LAKE, Lake
from ..storage.sqlfiles import load_sql, run_query, run_sql

#: Lake tables this module needs besides ``lake.TABLES`` (created on first use when the
#: lake does not create them itself).
USAGE_TABLES: tuple[str, ...] = ("gauge_monthly",)

#: Rows per Parquet row group of the rollup tables. A day of ``usage_daily`` is one file
#: sorted by workspace: small row groups let a one-workspace query skip most of each file
#: by its min/max statistics (a month for one workspace: ~16 ms instead of ~28 ms at
#: 10,000 workspaces).
ROLLUP_ROW_GROUP_ROWS = 4096

#: Aggregations computed by sql/rollup_usage_daily_second_look.sql (the others, by
#: sql/rollup_usage_daily.sql in one pass over all the days' events).
SECOND_LOOK = frozenset({"latest", "unique_count"})


# --- reports and result shapes -----------------------------------------------------------
@dataclass
class RollupReport:
    """What one :func:`refresh_rollup` call did."""

    #: The UTC days recomputed (sorted).
    days: list[date] = field(default_factory=list)
    #: The ingests absorbed (recorded in ``rollup_log``).
    ingest_ids: list[str] = field(default_factory=list)
    #: ``usage_daily`` rows written for those days.
    rows_written: int = 0
    #: ``gauge_monthly`` rows written (the touched year partitions, rewritten whole).
    gauge_rows_written: int = 0
    #: The lake snapshot committed, or None when there was nothing to do.
    snapshot_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "days": [d.isoformat() for d in self.days],
            "ingest_ids": list(self.ingest_ids),
            "rows_written": self.rows_written,
            "gauge_rows_written": self.gauge_rows_written,
            "snapshot_id": self.snapshot_id,
        }


# --- the metric catalogue as bound parameters ------------------------------------------
def catalogue_params(metrics: Mapping[str, MetricDef]) -> dict[str, list[Any]]:
    """The catalogue as the parallel lists the SQL files take (``$metric_names``,
    ``$aggregations``, ``$properties``).
    Raises ConfigError for a ``unique_count`` metric without a property."""
    names: list[str] = []
    aggregations: list[str] = []
    properties: list[str | None] = []
    for name, metric in metrics.items():
        if metric.aggregation == "unique_count" and not metric.property:
            raise ConfigError(f"metric {name!r}: aggregation unique_count needs a property")
        names.append(name)
        aggregations.append(metric.aggregation)
        properties.append(metric.property if metric.aggregation == "unique_count" else None)
    return {
        "metric_names": names,
        "aggregations": aggregations,
        "properties": properties,
    }


# --- the rollup --------------------------------------------------------------------------
def ensure_usage_tables(lake: Lake, con: duckdb.DuckDBPyConnection) -> list[str]:
    """Create the tables of :data:`USAGE_TABLES` missing from the lake (idempotent)."""
    existing = {
        r[0]
        for r in run_query(
            con, "SELECT table_name FROM duckdb_tables() WHERE database_name = ?", [LAKE]
        ).fetchall()
    }
    missing = [t for t in USAGE_TABLES if t not in existing]
    if missing:
        with lake.transaction(con, "schema", {"created": missing}):
            for table in missing:
                run_query(con, load_sql(f"schema/{table}"))
    return missing


def _ensure_row_groups(con: duckdb.DuckDBPyConnection) -> None:
    """Set the rollup tables' row group size in the catalog (once; under the write lock)."""
    current = {
        str(r[0]): str(r[1])
        for r in run_query(
            con,
            f"SELECT scope_entry, value FROM {LAKE}.options() "
            "WHERE option_name = 'parquet_row_group_size'",
        ).fetchall()
    }
    for table in ("usage_daily", "gauge_monthly"):
        if current.get(f"main.{table}") != str(ROLLUP_ROW_GROUP_ROWS):
            run_query(
                con,
                f"CALL {LAKE}.set_option('parquet_row_group_size', ?, table_name => ?)",
                [ROLLUP_ROW_GROUP_ROWS, table],
            ).fetchall()


def refresh_rollup(
    settings: Settings,
    *,
    lake: Lake | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
    full: bool = False,
    lock_timeout: float | None = None,
) -> RollupReport:
    """Bring ``usage_daily`` (and ``gauge_monthly``) up to date with ``events``.

    Recomputes the days of the ingests not yet in ``rollup_log`` and records those
    ingests, in one DuckLake transaction under the lake write lock. ``full=True``
    recomputes every day of the history instead (after a change of a metric's
    aggregation; its cost grows with the history). ``con`` reuses a job connection
    (``Lake(settings).connect()``); ``lock_timeout`` overrides how long to wait for
    another writer (0: fail at once with LockedError).
    """
    lake = lake or Lake(settings)
    catalogue = catalogue_params(settings.metrics)
    with lake.write_lock(timeout=lock_timeout):
        job = con if con is not None else lake.connect()
        try:
            ensure_usage_tables(lake, job)
            _ensure_row_groups(job)
            return _refresh(lake, job, catalogue, full=full)
        finally:
            if con is None:
                job.close()


def ensure_fresh(settings: Settings, *, lake: Lake | None = None) -> RollupReport | None:
    """Fresh reads (docs/billing-rules.md §9): bring ``usage_daily`` up to date with every
    committed ingest before reading it. Waits for the lake write lock up to
    ``[ingest] lock_timeout_seconds``; raises :class:`StaleUsageError` when the rollup is
    behind and cannot be refreshed. Returns what the refresh did (None: nothing pending)."""
    lake = lake or Lake(settings)
    con = lake.connect(read_only=True)
    try:
        ensure_usage_tables(lake, con)
        pending = run_sql(con, "rollup_pending").fetchall()
    finally:
        con.close()
    if not pending:
        return None
    try:
        return refresh_rollup(settings, lake=lake)
    except LockedError as exc:
        raise StaleUsageError(
            f"the usage rollup is behind by {len(pending)} ingest(s) and cannot be brought "
            f"up to date now: {exc}"
        ) from None


def _refresh(
    lake: Lake,
    con: duckdb.DuckDBPyConnection,
    catalogue: dict[str, list[Any]],
    *,
    full: bool,
) -> RollupReport:
    pending = [(str(r[0]), list(r[1] or [])) for r in run_sql(con, "rollup_pending").fetchall()]
    if not pending and not full:
        return RollupReport()
    ingest_ids = [ingest_id for ingest_id, _ in pending]
    if full:
        days = [r[0] for r in run_sql(con, "rollup_all_days").fetchall()]
        if not days and not pending:
            return RollupReport()
    else:
        days = sorted({d for _, ds in pending for d in ds})
    expected_snapshot = _current_snapshot(con) + 1
    extra = {
        "ingests": len(ingest_ids),
        "days": len(days),
        "first_day": days[0].isoformat() if days else None,
        "last_day": days[-1].isoformat() if days else None,
        "full": full,
    }
    report = RollupReport(days=days, ingest_ids=ingest_ids)
    with lake.transaction(con, "rollup", extra):
        if days:
            _recompute_days(con, days, catalogue, report)
        if ingest_ids:
            run_sql(
                con,
                "rollup_log_insert",
                {
                    "ingest_ids": ingest_ids,
                    "ingest_days": [ds for _, ds in pending],
                    "now": clock.utcnow(),
                    "snapshot_id": expected_snapshot,
                },
            )
    snapshot = _current_snapshot(con)
    if snapshot != expected_snapshot:  # another writer slipped in: the lock was bypassed
        raise LakeError(f"rollup committed as snapshot {snapshot}, expected {expected_snapshot}")
    report.snapshot_id = snapshot
    return report


def _recompute_days(
    con: duckdb.DuckDBPyConnection,
    days: Sequence[date],
    catalogue: dict[str, list[Any]],
    report: RollupReport,
) -> None:
    """Replace the ``usage_daily`` partitions of ``days`` and the ``gauge_monthly`` years
    of their months (inside the caller's transaction); count the rows into ``report``."""
    gauges = [
        name
        for name, kind in zip(catalogue["metric_names"], catalogue["aggregations"], strict=True)
        if kind == "gauge"
    ]
    # latest and unique_count metrics need their own look at their events
    second_look = any(kind in SECOND_LOOK for kind in catalogue["aggregations"])
    run_sql(con, "rollup_delete_days", {"days": days})
    for first, last in _day_runs(days):
        params = {"first_day": first, "last_day": last, **catalogue}
        report.rows_written += _count(run_sql(con, "rollup_usage_daily", params))
        if second_look:
            report.rows_written += _count(run_sql(con, "rollup_usage_daily_second_look", params))
    report.gauge_rows_written = _refresh_gauge_months(con, days, gauges)


def _current_snapshot(con: duckdb.DuckDBPyConnection) -> int:
    # fetchall, not fetchone: a result left open keeps the connection's read transaction
    # on the SQLite catalog, and another connection of this process then cannot commit
    # ("database is locked").
    rows = run_query(con, f"SELECT id FROM {LAKE}.current_snapshot()").fetchall()
    return int(rows[0][0]) if rows else 0


def _count(result: duckdb.DuckDBPyConnection) -> int:
    """The row count an INSERT returns (fetched whole, see _current_snapshot)."""
    rows = result.fetchall()
    return int(rows[0][0]) if rows else 0


def _day_runs(days: Sequence[date]) -> list[tuple[date, date]]:
    """Sorted days → runs of consecutive days, as (first, last)."""
    runs: list[tuple[date, date]] = []
    for d in sorted(set(days)):
        if runs and d == runs[-1][1] + timedelta(days=1):
            runs[-1] = (runs[-1][0], d)
        else:
            runs.append((d, d))
    return runs


def _month_start(d: date) -> date:
    return d.replace(day=1)


def _month_days(month: date) -> Iterator[date]:
    for i in range(calendar.monthrange(month.year, month.month)[1]):
        yield month + timedelta(days=i)


def _refresh_gauge_months(
    con: duckdb.DuckDBPyConnection, days: Sequence[date], gauges: list[str]
) -> int:
    """Rewrite the ``gauge_monthly`` year partitions of the months of ``days``."""
    months = sorted({_month_start(d) for d in days})
    params = {
        "months": months,
        "month_days": [d for m in months for d in _month_days(m)],
        "year_starts": sorted({date(m.year, 1, 1) for m in months}),
        "gauge_metrics": gauges,
    }
    run_sql(
        con, "rollup_gauge_monthly", params, prefix="CREATE OR REPLACE TEMP TABLE rollup_gauge AS "
    )
    try:
        run_sql(con, "rollup_gauge_replace", {"year_starts": params["year_starts"]})
        written = _count(run_sql(con, "rollup_gauge_insert"))
    finally:
        run_query(con, "DROP TABLE IF EXISTS temp.rollup_gauge")
    return written


__all__ = [
    "ROLLUP_ROW_GROUP_ROWS",
    "SECOND_LOOK",
    "USAGE_TABLES",
    "RollupReport",
    "catalogue_params",
    "ensure_fresh",
    "ensure_usage_tables",
    "refresh_rollup",
]
