"""Reading usage: period quantities, daily quantities and ``get_usage``.

The numbers invoices and analysts use come from one lake table, ``usage_daily``
(workspace x metric x UTC day), kept up to date by :mod:`.rollup`.
:func:`period_quantities` turns it into billable quantities over any range of days, for
one workspace or every workspace in one set-based query; :func:`daily_quantities` lists
one workspace's days; :func:`get_usage` is the seed's ``getUsage`` on top of both.

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
to :data:`GAUGE_PLACES` decimal places, computed exactly (integer arithmetic, no float),
by ``sql/gauge_quantities.sql``: the one gauge query, which the ``usage_monthly`` view
includes too.
Passing the billing period (``period_start``/``period_end``) lets an invoice split a
month into plan segments whose gauge quantities add up to the month's GB-months (to
within 1e-9 per segment from the rounding).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime
from decimal import Decimal, localcontext
from typing import TypedDict, overload

import duckdb

from .._core.errors import InputError, UsageQueryError
from .._core.ids import check_workspace_id
from ..config.settings import Settings, parse_date
from ..storage.lake import Lake
from ..storage.sqlfiles import run_sql
from .rollup import ensure_fresh

#: Decimal places of a gauge's period quantity (GB-months), rounded half-up.
GAUGE_PLACES = 9


class DayQuantity(TypedDict):
    date: str
    quantity: Decimal


class MetricUsage(TypedDict):
    """The seed's getUsage response for one metric."""

    metric: str
    total: Decimal
    breakdown: list[DayQuantity]


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
    results = [_metric_usage(name, workspace_id, totals, days) for name in names]
    return results[0] if metric is not None else results


def _metric_usage(
    name: str,
    workspace_id: str,
    totals: dict[tuple[str, str], Decimal],
    days: list[tuple[str, str, date, Decimal]],
) -> MetricUsage:
    return {
        "metric": name,
        "total": totals.get((workspace_id, name), Decimal(0)),
        "breakdown": [
            {"date": d.isoformat(), "quantity": q}
            for ws, m, d, q in days
            if m == name and ws == workspace_id
        ],
    }


__all__ = [
    "GAUGE_PLACES",
    "DayQuantity",
    "MetricUsage",
    "daily_quantities",
    "get_usage",
    "period_quantities",
]
