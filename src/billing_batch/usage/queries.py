"""Usage analytics: the daily rollup, period quantities and ``get_usage``.

The numbers invoices and analysts use come from one lake table, ``usage_daily``
(workspace x metric x UTC day), kept up to date incrementally:

* :func:`refresh_rollup` finds the ingests of ``ingest_manifest`` that ``rollup_log`` has
  not absorbed yet, and recomputes exactly the union of their days from ``events``
  (whole day partitions: delete, then insert), plus the months of those days in
  ``gauge_monthly``; all in one DuckLake transaction under the lake write lock. The cost
  follows the new days (``events`` and ``usage_daily`` are partitioned by day; each run
  of consecutive days is one range-filtered pass), not the history; the gauge months
  re-read at most a month of ``usage_daily`` each. With nothing new it writes nothing
  (no snapshot).
* :func:`period_quantities` turns the rollup into billable quantities over any range of
  days, for one workspace or every workspace in one set-based query;
  :func:`daily_quantities` lists one workspace's days; :func:`get_usage` is the seed's
  ``getUsage`` on top of both.

Aggregation semantics (per metric, from ``settings.metrics``, see
:class:`~billing_batch.config.MetricDef`); each ``usage_daily`` row records the
aggregation (and, for ``unique_count``, the property) it was computed with, so a period
is always totalled with the semantics of its days:

=============== ================================== ====================================
aggregation     a day                              a period [start, end]
=============== ================================== ====================================
sum             sum of the day's quantities        sum of its days
count           number of the day's events         sum of its days
gauge           the day's largest reading          mean over every day of the period of
                                                   the value in force that day (the last
                                                   reading on or before it, from before
                                                   the period too, 0 before any reading
                                                   ever): GB-months for ``storage``
max             the day's largest quantity         the largest of its days
latest          the quantity of the day's last     the value of its last day with usage
                event by timestamp; same
                timestamp: the largest quantity
unique_count    distinct values of                 distinct values over the whole
                ``properties.<property>``          period (from ``events``)
=============== ================================== ====================================

A gauge's period quantity is ``unit-days / days-of-the-billing-period`` rounded half-up
to :data:`GAUGE_PLACES` decimal places, computed exactly (integer arithmetic, no float).
Passing the billing period (``period_start``/``period_end``) lets an invoice split a
month into plan segments whose gauge quantities add up to the month's GB-months (to
within 1e-9 per segment from the rounding).
"""

from __future__ import annotations

import calendar
import logging
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any, TypedDict, overload

import duckdb

from .._core.errors import (
    ConfigError,
    InputError,
    LakeError,
    LockedError,
    StaleUsageError,
    UsageQueryError,
)
from .._core.ids import check_workspace_id
from ..config.metrics import MetricDef
from ..config.settings import Settings, parse_date
from ..storage.lake import LAKE, Lake, check_read_only_sql, load_sql, run_query, run_sql

log = logging.getLogger(__name__)

#: Decimal places of a gauge's period quantity (GB-months), rounded half-up.
GAUGE_PLACES = 9

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


class DayQuantity(TypedDict):
    date: str
    quantity: Decimal


class MetricUsage(TypedDict):
    """The seed's getUsage response for one metric."""

    metric: str
    total: Decimal
    breakdown: list[DayQuantity]


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
    gauges = [
        name
        for name, kind in zip(catalogue["metric_names"], catalogue["aggregations"], strict=True)
        if kind == "gauge"
    ]
    # latest and unique_count metrics need their own look at their events
    second_look = any(kind in SECOND_LOOK for kind in catalogue["aggregations"])
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
            run_sql(con, "rollup_delete_days", {"days": days})
            for first, last in _day_runs(days):
                params = {"first_day": first, "last_day": last, **catalogue}
                report.rows_written += _count(run_sql(con, "rollup_usage_daily", params))
                if second_look:
                    report.rows_written += _count(
                        run_sql(con, "rollup_usage_daily_second_look", params)
                    )
            report.gauge_rows_written = _refresh_gauge_months(con, days, gauges)
        if ingest_ids:
            run_sql(
                con,
                "rollup_log_insert",
                {
                    "ingest_ids": ingest_ids,
                    "ingest_days": [ds for _, ds in pending],
                    "now": datetime.now(UTC),
                    "snapshot_id": expected_snapshot,
                },
            )
    snapshot = _current_snapshot(con)
    if snapshot != expected_snapshot:  # another writer slipped in: the lock was bypassed
        raise LakeError(f"rollup committed as snapshot {snapshot}, expected {expected_snapshot}")
    report.snapshot_id = snapshot
    return report


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


# --- reading -----------------------------------------------------------------------------
def _clean(value: Decimal) -> Decimal:
    """``Decimal('45000.000000000')`` → ``Decimal('45000')``; ``12.500000000`` → ``12.5``."""
    with localcontext() as ctx:
        ctx.prec = 80
        if value == value.to_integral_value():
            return value.quantize(Decimal(1))
        return value.normalize()


def _check_range(start: date, end: date) -> None:
    for what, value in (("start", start), ("end", end)):
        if isinstance(value, datetime) or not isinstance(value, date):
            raise UsageQueryError(f"{what}: expected a date, got {value!r}")
    if end < start:
        raise UsageQueryError(
            f"end date {end.isoformat()} is before start date {start.isoformat()}"
        )


def period_quantities(
    con: duckdb.DuckDBPyConnection,
    start: date,
    end: date,
    *,
    period_start: date | None = None,
    period_end: date | None = None,
    workspace_id: str | None = None,
    metrics: Collection[str] | None = None,
) -> dict[tuple[str, str], Decimal]:
    """Billable quantity of each metric over the UTC days [start, end], keyed by
    ``(workspace_id, metric)``, following each metric's aggregation (module docstring).

    A gauge's quantity is (sum over the days of [start, end] of the day's value with
    carry-forward) / (number of days in [period_start, period_end], by default
    [start, end]). ``workspace_id=None`` covers every workspace in one set-based query;
    workspaces whose only usage is a gauge value carried from before the period are
    included. ``metrics`` restricts the metric names (None: every metric of the rollup).
    A (workspace, metric) absent from the result has no usage: its quantity is 0.
    ``con`` is a job connection (``Lake(settings).connect()``).
    """
    totals, _ = _read_period(
        con,
        start,
        end,
        period_start=period_start,
        period_end=period_end,
        workspace_id=workspace_id,
        metrics=metrics,
        with_days=False,
    )
    return totals


def _read_period(
    con: duckdb.DuckDBPyConnection,
    start: date,
    end: date,
    *,
    period_start: date | None,
    period_end: date | None,
    workspace_id: str | None,
    metrics: Collection[str] | None,
    with_days: bool,
) -> tuple[dict[tuple[str, str], Decimal], list[tuple[str, str, date, Decimal]]]:
    """Period totals and (``with_days``) the daily rows, from one read of the rollup."""
    _check_range(start, end)
    p_start = start if period_start is None else period_start
    p_end = end if period_end is None else period_end
    _check_range(p_start, p_end)
    if not (p_start <= start and end <= p_end):
        raise UsageQueryError(
            f"the billing period {p_start}..{p_end} must contain the days {start}..{end}"
        )
    params = {
        "start": start,
        "end": end,
        "period_days": (p_end - p_start).days + 1,
        "workspace_id": workspace_id,
        "metric_names": None if metrics is None else sorted(metrics),
        "with_days": with_days,
    }
    totals: dict[tuple[str, str], Decimal] = {}
    days: list[tuple[str, str, date, Decimal]] = []
    counted: dict[str, str] = {}
    for ws, metric, day, aggregation, quantity, prop in run_sql(
        con, "usage_period", params
    ).fetchall():
        if day is not None:
            days.append((str(ws), str(metric), day, _clean(quantity)))
        elif aggregation == "unique_count":
            counted.setdefault(str(metric), str(prop))
        else:
            totals[(str(ws), str(metric))] = _clean(quantity)
    if counted:
        rows = run_sql(
            con,
            "usage_period_unique",
            {
                "start": start,
                "end": end,
                "workspace_id": workspace_id,
                "metric_names": list(counted),
                "properties": list(counted.values()),
            },
        ).fetchall()
        for ws, metric, quantity in rows:
            totals[(str(ws), str(metric))] = _clean(quantity)
    return totals, days


def daily_quantities(
    con: duckdb.DuckDBPyConnection,
    workspace_id: str,
    start: date,
    end: date,
    *,
    metrics: Collection[str] | None = None,
) -> list[tuple[str, date, Decimal]]:
    """One workspace's ``(metric, day, quantity)`` over [start, end], by metric then day;
    days without usage (for a gauge: without a reading) are absent."""
    _check_range(start, end)
    params = {
        "workspace_id": workspace_id,
        "start": start,
        "end": end,
        "metric_names": None if metrics is None else sorted(metrics),
    }
    return [
        (str(m), d, _clean(q))
        for m, d, q in run_sql(con, "usage_daily_quantities", params).fetchall()
    ]


def _as_date(value: date | str, what: str) -> date:
    if isinstance(value, str):
        try:
            return parse_date(value, what=what)
        except InputError as exc:
            raise UsageQueryError(str(exc)) from None
    if isinstance(value, datetime) or not isinstance(value, date):
        raise UsageQueryError(f"{what}: expected a date as YYYY-MM-DD, got {value!r}")
    return value


@overload
def get_usage(
    settings: Settings,
    workspace_id: str,
    start: date | str,
    end: date | str,
    metric: str,
    *,
    con: duckdb.DuckDBPyConnection | None = ...,
    refresh: bool = ...,
) -> MetricUsage: ...


@overload
def get_usage(
    settings: Settings,
    workspace_id: str,
    start: date | str,
    end: date | str,
    metric: None = ...,
    *,
    con: duckdb.DuckDBPyConnection | None = ...,
    refresh: bool = ...,
) -> list[MetricUsage]: ...


def get_usage(
    settings: Settings,
    workspace_id: str,
    start: date | str,
    end: date | str,
    metric: str | None = None,
    *,
    con: duckdb.DuckDBPyConnection | None = None,
    refresh: bool = True,
) -> MetricUsage | list[MetricUsage]:
    """The seed's ``getUsage``: one workspace's usage over the UTC days [start, end].

    With ``metric``: ``{"metric", "total", "breakdown": [{"date", "quantity"}, ...]}``
    (days ascending, days without usage omitted; a gauge's breakdown lists the days with
    a reading and its total is in unit-months, e.g. GB-months). With ``metric=None``: a
    list of those objects, one per catalogue metric, in catalogue order. Numbers are
    Decimal (whole for counts). An unknown workspace gives total 0 and an empty
    breakdown. Bad dates, end before start or an unknown metric raise UsageQueryError.

    Every committed ingest is read (:func:`ensure_fresh`): the rollup is brought up to
    date first, or :class:`StaleUsageError` says why it cannot be. ``refresh=False`` skips
    that (the caller has just refreshed it). ``con`` reuses a job connection.
    """
    check_workspace_id(workspace_id, error=UsageQueryError)
    start_d = _as_date(start, "start")
    end_d = _as_date(end, "end")
    _check_range(start_d, end_d)
    if metric is not None:
        settings.metric(metric)  # UsageQueryError for an unknown metric
    names = [metric] if metric is not None else list(settings.metrics)
    lake = Lake(settings)
    if refresh:
        ensure_fresh(settings, lake=lake)
    job = con if con is not None else lake.connect(read_only=True)
    try:
        totals, days = _read_period(
            job,
            start_d,
            end_d,
            period_start=None,
            period_end=None,
            workspace_id=workspace_id,
            metrics=names,
            with_days=True,
        )
    finally:
        if con is None:
            job.close()
    results: list[MetricUsage] = []
    for name in names:
        results.append(
            {
                "metric": name,
                "total": totals.get((workspace_id, name), Decimal(0)),
                "breakdown": [
                    {"date": d.isoformat(), "quantity": q}
                    for ws, m, d, q in days
                    if m == name and ws == workspace_id
                ],
            }
        )
    return results[0] if metric is not None else results


# --- analyst queries ---------------------------------------------------------------------
@dataclass
class QueryResult:
    """The outcome of one analyst query."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    #: True when ``limit`` cut the result short.
    truncated: bool = False


_USER_ERRORS = (
    duckdb.ProgrammingError,
    duckdb.DataError,
    duckdb.NotSupportedError,
    duckdb.PermissionException,
)


def analyst_query(
    con: duckdb.DuckDBPyConnection, sql: str, *, limit: int | None = None
) -> QueryResult:
    """Run one read-only query on an analyst connection (``Lake.analyst_connection()``).

    Anything but SELECT/EXPLAIN is refused (InputError); so is a query DuckDB rejects
    (syntax, unknown table, a file outside the lake). ``limit`` caps the rows fetched.
    """
    check_read_only_sql(con, sql)
    try:
        cursor = run_query(con, sql)
        columns = [d[0] for d in (cursor.description or [])]
        if limit is None:
            rows = cursor.fetchall()
            truncated = False
        else:
            rows = cursor.fetchmany(limit + 1)
            truncated = len(rows) > limit
            rows = rows[:limit]
            # release the rest of the result and, with it, the read transaction it holds
            # on the catalog (see _current_snapshot)
            run_query(con, "SELECT 1").fetchall()
    except LakeError as exc:
        if isinstance(exc.__cause__, _USER_ERRORS):
            raise InputError(f"query failed: {exc}") from exc
        raise
    except _USER_ERRORS as exc:  # raised while fetching
        raise InputError(f"query failed: {exc}") from exc
    except duckdb.Error as exc:
        raise LakeError(f"query failed: {exc}") from exc
    return QueryResult(columns=columns, rows=rows, truncated=truncated)


__all__ = [
    "GAUGE_PLACES",
    "DayQuantity",
    "MetricUsage",
    "QueryResult",
    "RollupReport",
    "analyst_query",
    "catalogue_params",
    "daily_quantities",
    "ensure_fresh",
    "ensure_usage_tables",
    "get_usage",
    "period_quantities",
    "refresh_rollup",
]
