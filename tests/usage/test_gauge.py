"""The one gauge query (``sql/gauge_quantities.sql``): the library's period quantities
and the ``usage_monthly`` view use it, so they agree month by month."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from billing_batch._core.errors import LakeError
from billing_batch.config.settings import SQL_DIR, Settings, load_settings
from billing_batch.storage import sqlfiles
from billing_batch.storage.lake import Lake
from billing_batch.storage.sqlfiles import load_sql
from billing_batch.usage.queries import period_quantities
from billing_batch.usage.rollup import refresh_rollup
from tests.usage.support import GAUGE_EVENTS, D, ev, load, q, with_extra_metrics


def test_usage_monthly_view_matches_the_library(settings: Settings, tmp_path: Path) -> None:
    s = with_extra_metrics(settings)
    load(
        s,
        tmp_path,
        [
            *GAUGE_EVENTS,
            ev("ws_g", "api_calls", 10, "2024-01-05T00:00:00Z"),
            ev("ws_g", "api_calls", 15, "2024-02-05T00:00:00Z"),
            ev("ws_g", "active_users", 1, "2024-01-05T00:00:00Z", user="a"),
            ev("ws_g", "active_users", 1, "2024-01-06T00:00:00Z", user="a"),
            ev("ws_g", "plan_level", 2, "2024-01-06T00:00:00Z"),
        ],
    )
    refresh_rollup(s)
    view = {
        (r[0], r[1], r[2]): r[3]
        for r in q(s, "SELECT workspace_id, metric, month, quantity FROM usage_monthly")
    }
    con = Lake(s).connect()
    try:
        months = sorted({m for _, _, m in view})
        assert months[0] == D("2023-11-01") and months[-1] == D("2024-04-01")
        for m in months:
            end = (m + timedelta(days=32)).replace(day=1) - timedelta(days=1)
            lib = period_quantities(con, m, end)
            assert {k: v for k, v in view.items() if k[2] == m} == {
                (ws, metric, m): value for (ws, metric), value in lib.items()
            }, m
    finally:
        con.close()
    assert view[("ws_g", "active_users", D("2024-01-01"))] == 1
    assert view[("ws_old", "storage", D("2024-04-01"))] == Decimal("7.5")


# --- one home ---------------------------------------------------------------------------
def test_the_library_and_the_view_include_the_one_gauge_query() -> None:
    gauge = (SQL_DIR / "gauge_quantities.sql").read_text(encoding="utf-8").rstrip("\n")
    for name in ("usage_period", "views/usage_monthly"):
        own = (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")
        assert own.count("\n-- include: gauge_quantities\n") == 1, name
        # the rule is not written again: no carry-forward window, no rounding of its own
        assert "last_value" not in own and "lead(" not in own and "HUGEINT" not in own, name
        assert gauge in load_sql(name), name


def test_an_include_of_a_missing_file_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken.sql").write_text("SELECT 1 AS x FROM (\n-- include: nowhere\n)\n")
    monkeypatch.setattr(sqlfiles, "SQL_DIR", tmp_path)
    load_sql.cache_clear()
    try:
        with pytest.raises(LakeError, match="missing SQL file .*nowhere.sql"):
            load_sql("broken")
    finally:
        load_sql.cache_clear()


# --- property: the view, month by month, against a brute force ------------------------------
_BASE = date(2023, 11, 1)
_examples = itertools.count()


@pytest.fixture(scope="module")
def gauge_lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Path]]:
    home = tmp_path_factory.mktemp("gauge") / "home"
    yield load_settings(env={"BILLING_HOME": str(home), "BILLING_LAKE_MEMORY_LIMIT": "512MB"}), home


def _month_end(month: date) -> date:
    return (month + timedelta(days=32)).replace(day=1) - timedelta(days=1)


def _expected_months(
    readings: dict[tuple[str, date], Decimal], last_month: date
) -> dict[tuple[str, date], Decimal]:
    """Each workspace's storage GB-months per calendar month, from its first reading's
    month through ``last_month``, by brute force (day by day, carrying the last reading)."""
    out: dict[tuple[str, date], Decimal] = {}
    for ws in {w for w, _ in readings}:
        days = sorted(d for w, d in readings if w == ws)
        month = days[0].replace(day=1)
        while month <= last_month:
            end = _month_end(month)
            total, day = Decimal(0), month
            while day <= end:
                before = [d for d in days if d <= day]
                total += readings[(ws, before[-1])] if before else 0
                day += timedelta(days=1)
            n = (end - month).days + 1
            out[(ws, month)] = (total / n).quantize(Decimal("1e-9"), rounding=ROUND_HALF_UP)
            month = end + timedelta(days=1)
    return out


@hsettings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 150), st.integers(0, 4000)),
        min_size=1,
        max_size=12,
    )
)
def test_usage_monthly_gauges_match_a_brute_force(
    gauge_lake: tuple[Settings, Path], raw: list[tuple[int, int, int]]
) -> None:
    s, home = gauge_lake
    n = next(_examples)
    readings: dict[tuple[str, date], Decimal] = {}
    lines = []
    for w, offset, quarters in raw:
        ws, day, qty = f"g{n}_w{w}", _BASE + timedelta(days=offset), Decimal(quarters) / 4
        readings[(ws, day)] = max(readings.get((ws, day), qty), qty)  # a day's largest
        lines.append(ev(ws, "storage", float(qty), f"{day}T12:00:00Z"))
    load(s, home.parent, lines)
    refresh_rollup(s)
    last_month = q(s, "SELECT max(CAST(date_trunc('month', day) AS DATE)) FROM usage_daily")[0][0]
    expected = _expected_months(readings, last_month)
    view = {
        (ws, month): quantity
        for ws, month, quantity in q(
            s,
            "SELECT workspace_id, month, quantity FROM usage_monthly "
            "WHERE metric = 'storage' AND starts_with(workspace_id, ?)",
            [f"g{n}_w"],
        )
    }
    assert view == expected
    con = Lake(s).connect(read_only=True)
    try:
        for (ws, month), quantity in expected.items():
            got = period_quantities(con, month, _month_end(month), workspace_id=ws)
            assert got[(ws, "storage")] == quantity
    finally:
        con.close()
