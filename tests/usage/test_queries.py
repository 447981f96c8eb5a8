"""usage.queries: period quantities, daily quantities and get_usage, per aggregation.

Golden tests use small hand-checked inputs (the arithmetic is in the comments); a
hypothesis property test compares everything with a brute-force Python computation.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from billing_batch._core.errors import UsageQueryError
from billing_batch._core.jsonutil import dumps
from billing_batch.config.metrics import MetricDef
from billing_batch.config.settings import Settings, load_settings
from billing_batch.storage.lake import Lake
from billing_batch.usage.ingest import ingest
from billing_batch.usage.queries import daily_quantities, get_usage, period_quantities
from billing_batch.usage.rollup import refresh_rollup
from tests.conftest import event, write_log
from tests.usage.support import EXTRA_METRICS, GAUGE_EVENTS, D, ev, load, q, with_extra_metrics


# --- golden: sum ---------------------------------------------------------------------------
def test_sum_metric_total_and_breakdown(settings: Settings, tmp_path: Path) -> None:
    load(
        settings,
        tmp_path,
        [
            ev("ws_123", "api_calls", 1000, "2024-01-15T10:00:00Z"),
            ev("ws_123", "api_calls", 500, "2024-01-15T23:59:59Z"),
            ev("ws_123", "api_calls", 2000, "2024-01-16T00:00:00Z"),
            ev("ws_123", "api_calls", 30, "2024-01-17T01:30:00+02:00"),  # Jan 16th, UTC
            ev("ws_123", "api_calls", 999, "2023-12-31T23:00:00Z"),  # before the range
            ev("ws_123", "api_calls", 7, "2024-02-01T00:00:00Z"),  # after it
            ev("ws_other", "api_calls", 5, "2024-01-15T10:00:00Z"),
            ev("ws_123", "contracts", 3, "2024-01-20T10:00:00Z"),
        ],
    )
    report = refresh_rollup(settings)
    assert report.days == [
        D("2023-12-31"),
        D("2024-01-15"),
        D("2024-01-16"),
        D("2024-01-20"),
        D("2024-02-01"),
    ]
    got = get_usage(settings, "ws_123", "2024-01-01", "2024-01-31", "api_calls")
    # Jan 15: 1000 + 500; Jan 16: 2000 + 30; total 3530
    assert got == {
        "metric": "api_calls",
        "total": Decimal(3530),
        "breakdown": [
            {"date": "2024-01-15", "quantity": Decimal(1500)},
            {"date": "2024-01-16", "quantity": Decimal(2030)},
        ],
    }
    assert dumps(got) == (
        '{"metric": "api_calls", "total": 3530, "breakdown": [{"date": "2024-01-15", '
        '"quantity": 1500}, {"date": "2024-01-16", "quantity": 2030}]}'
    )
    one_day = get_usage(settings, "ws_123", date(2024, 1, 16), date(2024, 1, 16), "api_calls")
    assert one_day["total"] == 2030 and len(one_day["breakdown"]) == 1
    every = get_usage(settings, "ws_123", "2024-01-01", "2024-01-31")
    assert [m["metric"] for m in every] == list(settings.metrics)
    assert {m["metric"]: m["total"] for m in every} == {
        "api_calls": 3530,
        "contracts": 3,
        "kyc_checks": 0,
        "storage": 0,
    }
    unknown = get_usage(settings, "ws_nobody", "2024-01-01", "2024-01-31", "api_calls")
    assert unknown == {"metric": "api_calls", "total": Decimal(0), "breakdown": []}


# --- golden: gauge -------------------------------------------------------------------------


def test_gauge_gb_months_with_carry_forward(settings: Settings, tmp_path: Path) -> None:
    load(settings, tmp_path, GAUGE_EVENTS)
    refresh_rollup(settings)
    con = Lake(settings).connect()

    def storage(ws: str, start: str, end: str) -> Any:
        return get_usage(settings, ws, start, end, "storage", con=con)

    def total(ws: str, start: str, end: str) -> Decimal:
        return storage(ws, start, end)["total"]

    jan = storage("ws_g", "2024-01-01", "2024-01-31")
    # Jan 1-10 carry 10 from December (10 days: 100), Jan 11-20 at 100 (1000), Jan 21-31 at
    # 50 (11 days: 550): 1650 / 31 = 53.2258064516... -> 53.225806452
    assert jan == {
        "metric": "storage",
        "total": Decimal("53.225806452"),
        "breakdown": [
            {"date": "2024-01-11", "quantity": Decimal(100)},
            {"date": "2024-01-21", "quantity": Decimal(50)},
        ],
    }
    assert dumps(jan["total"]) == "53.225806452"
    # February 2024 has 29 days: Feb 1-9 at 50 (450), Feb 10-29 at 20.5 (410): 860 / 29
    # = 29.6551724137... -> 29.655172414
    assert total("ws_g", "2024-02-01", "2024-02-29") == Decimal("29.655172414")
    # March (31 days) and April (30 days) without a reading: 20.5 carried all along
    assert total("ws_g", "2024-03-01", "2024-03-31") == Decimal("20.5")
    assert total("ws_g", "2024-04-01", "2024-04-30") == Decimal("20.5")
    # December 2023: 0 before the first reading, Dec 20-31 at 10: 120 / 31 -> 3.870967742
    assert total("ws_g", "2023-12-01", "2023-12-31") == Decimal("3.870967742")
    # A mid-month range: Jan 15-20 at 100 (600), Jan 21-25 at 50 (250): 850 / 11
    assert total("ws_g", "2024-01-15", "2024-01-25") == Decimal("77.272727273")
    # April for a workspace whose first reading ever is April 11th: 20 days x 30 / 30
    assert total("ws_new", "2024-04-01", "2024-04-30") == Decimal(20)
    assert storage("ws_new", "2024-03-01", "2024-03-31") == {
        "metric": "storage",
        "total": Decimal(0),
        "breakdown": [],
    }
    # carried over three months without a reading (from gauge_monthly, not a history scan)
    assert storage("ws_old", "2024-03-01", "2024-03-31") == {
        "metric": "storage",
        "total": Decimal("7.5"),
        "breakdown": [],
    }
    assert q(
        settings,
        "SELECT metric, month, last_day, quantity FROM gauge_monthly "
        "WHERE workspace_id = 'ws_g' ORDER BY month",
    ) == [
        ("storage", D("2023-12-01"), D("2023-12-20"), Decimal(10)),
        ("storage", D("2024-01-01"), D("2024-01-21"), Decimal(50)),
        ("storage", D("2024-02-01"), D("2024-02-10"), Decimal("20.5")),
    ]


def test_gauge_segments_add_up_and_every_workspace(settings: Settings, tmp_path: Path) -> None:
    load(settings, tmp_path, [*GAUGE_EVENTS, ev("ws_c", "api_calls", 5, "2024-01-03T00:00:00Z")])
    refresh_rollup(settings)
    con = Lake(settings).connect()
    try:
        month = period_quantities(con, D("2024-01-01"), D("2024-01-31"))
        # every workspace in one query, including those with only a carried-in gauge value
        assert month == {
            ("ws_c", "api_calls"): Decimal(5),
            ("ws_g", "storage"): Decimal("53.225806452"),
            ("ws_old", "storage"): Decimal("7.5"),
        }
        # plan segments of January: Jan 1-15 = (10 x 10 + 5 x 100) / 31 = 600 / 31;
        # Jan 16-31 = (5 x 100 + 11 x 50) / 31 = 1050 / 31
        seg1 = period_quantities(con, D("2024-01-01"), D("2024-01-15"), period_end=D("2024-01-31"))
        seg2 = period_quantities(
            con, D("2024-01-16"), D("2024-01-31"), period_start=D("2024-01-01")
        )
        assert seg1[("ws_g", "storage")] == Decimal("19.354838710")
        assert seg2[("ws_g", "storage")] == Decimal("33.870967742")
        assert seg1[("ws_g", "storage")] + seg2[("ws_g", "storage")] == month[("ws_g", "storage")]
        assert seg1[("ws_old", "storage")] + seg2[("ws_old", "storage")] == Decimal("7.5")
        # one workspace, one metric: the same numbers
        assert period_quantities(
            con, D("2024-01-01"), D("2024-01-31"), workspace_id="ws_g", metrics=["storage"]
        ) == {("ws_g", "storage"): Decimal("53.225806452")}
        assert period_quantities(con, D("2024-01-01"), D("2024-01-31"), metrics=["api_calls"]) == {
            ("ws_c", "api_calls"): Decimal(5)
        }
        assert daily_quantities(con, "ws_g", D("2024-01-01"), D("2024-02-29")) == [
            ("storage", D("2024-01-11"), Decimal(100)),
            ("storage", D("2024-01-21"), Decimal(50)),
            ("storage", D("2024-02-10"), Decimal("20.5")),
        ]
        with pytest.raises(UsageQueryError, match="before start"):
            period_quantities(con, D("2024-01-31"), D("2024-01-01"))
        with pytest.raises(UsageQueryError, match="must contain"):
            period_quantities(con, D("2024-01-01"), D("2024-02-15"), period_end=D("2024-01-31"))
    finally:
        con.close()


# --- golden: count, max, latest, unique_count -------------------------------------------------
def test_count_max_latest_unique_count(settings: Settings, tmp_path: Path) -> None:
    s = with_extra_metrics(settings)
    load(
        s,
        tmp_path,
        [
            # count: the number of events, whatever their quantity
            ev("ws_x", "requests", 5, "2024-01-02T10:00:00Z"),
            ev("ws_x", "requests", 6, "2024-01-02T11:00:00Z"),
            ev("ws_x", "requests", 7, "2024-01-02T12:00:00Z"),
            ev("ws_x", "requests", 9, "2024-01-03T12:00:00Z"),
            # max: the day's largest; the period's largest day
            ev("ws_x", "peak_seats", 5, "2024-01-02T10:00:00Z"),
            ev("ws_x", "peak_seats", 9.5, "2024-01-02T11:00:00Z"),
            ev("ws_x", "peak_seats", 2, "2024-01-02T12:00:00Z"),
            ev("ws_x", "peak_seats", 3, "2024-01-05T12:00:00Z"),
            # latest: the day's last event by timestamp; a tie goes to the largest value
            ev("ws_x", "plan_level", 1, "2024-01-02T10:00:00Z"),
            ev("ws_x", "plan_level", 3, "2024-01-02T12:00:00Z"),
            ev("ws_x", "plan_level", 4, "2024-01-02T12:00:00Z"),
            ev("ws_x", "plan_level", 7, "2024-01-04T09:00:00Z"),
            ev("ws_x", "plan_level", 9, "2024-01-04T08:00:00Z"),
            # unique_count: distinct properties.user per day, and over the whole period
            ev("ws_x", "active_users", 1, "2024-01-02T10:00:00Z", user="u1"),
            ev("ws_x", "active_users", 1, "2024-01-02T11:00:00Z", user="u2"),
            ev("ws_x", "active_users", 1, "2024-01-02T12:00:00Z", user="u1"),
            ev("ws_x", "active_users", 1, "2024-01-02T13:00:00Z"),  # no user: not counted
            ev("ws_x", "active_users", 1, "2024-01-03T10:00:00Z", user="u2"),
            ev("ws_x", "active_users", 1, "2024-01-03T11:00:00Z", user="u3"),
        ],
    )
    refresh_rollup(s)

    def usage(metric: str, start: str = "2024-01-01", end: str = "2024-01-31") -> Any:
        got = get_usage(s, "ws_x", start, end, metric)
        return got["total"], [(b["date"][-2:], b["quantity"]) for b in got["breakdown"]]

    assert usage("requests") == (4, [("02", 3), ("03", 1)])
    assert usage("peak_seats") == (Decimal("9.5"), [("02", Decimal("9.5")), ("05", 3)])
    assert usage("plan_level") == (7, [("02", 4), ("04", 7)])
    assert usage("plan_level", end="2024-01-03") == (4, [("02", 4)])
    # 2 + 2 by day, but 3 distinct users over the period
    assert usage("active_users") == (3, [("02", 2), ("03", 2)])
    assert usage("active_users", start="2024-01-03") == (2, [("03", 2)])
    con = Lake(s).connect()
    try:
        assert period_quantities(con, D("2024-01-01"), D("2024-01-31")) == {
            ("ws_x", "active_users"): 3,
            ("ws_x", "peak_seats"): Decimal("9.5"),
            ("ws_x", "plan_level"): 7,
            ("ws_x", "requests"): 4,
        }
    finally:
        con.close()
    rows = q(s, "SELECT DISTINCT metric, aggregation, property FROM usage_daily ORDER BY 1")
    assert rows == [
        ("active_users", "unique_count", "user"),
        ("peak_seats", "max", None),
        ("plan_level", "latest", None),
        ("requests", "count", None),
    ]


def test_library_errors(settings: Settings) -> None:
    with pytest.raises(UsageQueryError, match="YYYY-MM-DD"):
        get_usage(settings, "ws", "yesterday", "2024-01-31")
    with pytest.raises(UsageQueryError, match="expected a date"):
        get_usage(settings, "ws", datetime(2024, 1, 1, tzinfo=UTC), date(2024, 1, 31))
    with pytest.raises(UsageQueryError, match="before start"):
        get_usage(settings, "ws", "2024-02-01", "2024-01-31")
    with pytest.raises(UsageQueryError, match="unknown metric"):
        get_usage(settings, "ws", "2024-01-01", "2024-01-31", "bandwidth")


# --- property test ------------------------------------------------------------------------
PROP_METRICS = {
    "api_calls": MetricDef(display_name="API Calls"),
    "storage": MetricDef(display_name="Storage", unit="GB", aggregation="gauge", whole=False),
    **EXTRA_METRICS,
}
PROP_BASE = date(2023, 12, 20)
_TIMES = (0, 1, 3600, 43200, 86399)  # few distinct seconds: timestamp ties happen


@pytest.fixture(scope="module")
def prop_lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Any, Path]]:
    home = tmp_path_factory.mktemp("prop") / "home"
    s = load_settings(env={"BILLING_HOME": str(home), "BILLING_LAKE_MEMORY_LIMIT": "512MB"})
    s = s.model_copy(update={"metrics": PROP_METRICS})
    con = Lake(s).connect()
    yield s, con, home.parent
    con.close()


_event = st.tuples(
    st.integers(0, 2),  # workspace
    st.sampled_from(sorted(PROP_METRICS)),
    st.integers(0, 45),  # day offset from PROP_BASE
    st.sampled_from(_TIMES),
    st.integers(0, 40),  # quantity (quarters for the non-whole metrics)
    st.sampled_from([None, "u1", "u2", "u3"]),
)
_examples = itertools.count()


def _brute_force(
    events: list[tuple[str, str, date, int, Decimal, str | None]], start: date, end: date
) -> tuple[dict[tuple[str, str], Decimal], dict[tuple[str, str, date], Decimal]]:
    by_day: dict[tuple[str, str, date], list[tuple[int, Decimal, str | None]]] = defaultdict(list)
    for ws, metric, day, sec, qty, user in events:
        by_day[(ws, metric, day)].append((sec, qty, user))
    daily: dict[tuple[str, str, date], Decimal] = {}
    for (ws, metric, day), evs in by_day.items():
        kind = PROP_METRICS[metric].aggregation
        if kind == "sum":
            daily[(ws, metric, day)] = sum((e[1] for e in evs), Decimal(0))
        elif kind == "count":
            daily[(ws, metric, day)] = Decimal(len(evs))
        elif kind in ("gauge", "max"):
            daily[(ws, metric, day)] = max(e[1] for e in evs)
        elif kind == "latest":
            daily[(ws, metric, day)] = max(evs, key=lambda e: (e[0], e[1]))[1]
        else:
            daily[(ws, metric, day)] = Decimal(len({e[2] for e in evs if e[2] is not None}))
    totals: dict[tuple[str, str], Decimal] = {}
    pairs = {(ws, m) for ws, m, _ in daily}
    n_days = (end - start).days + 1
    for ws, metric in pairs:
        kind = PROP_METRICS[metric].aggregation
        days = sorted(d for w, m, d in daily if (w, m) == (ws, metric))
        inside = [d for d in days if start <= d <= end]
        if kind == "gauge":
            if not [d for d in days if d <= end]:
                continue
            if not inside and not [d for d in days if d < start]:
                continue
            unit_days = Decimal(0)
            for i in range(n_days):
                d = start + timedelta(days=i)
                before = [x for x in days if x <= d]
                if before:
                    unit_days += daily[(ws, metric, before[-1])]
            totals[(ws, metric)] = (unit_days / n_days).quantize(
                Decimal("1e-9"), rounding=ROUND_HALF_UP
            )
            continue
        if not inside:
            continue
        values = [daily[(ws, metric, d)] for d in inside]
        if kind in ("sum", "count"):
            totals[(ws, metric)] = sum(values, Decimal(0))
        elif kind == "max":
            totals[(ws, metric)] = max(values)
        elif kind == "latest":
            totals[(ws, metric)] = values[-1]
        else:
            users = {
                u for w, m, d, _, _, u in events if (w, m) == (ws, metric) and start <= d <= end
            }
            totals[(ws, metric)] = Decimal(len(users - {None}))
    return totals, daily


@hsettings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    raw=st.lists(_event, min_size=1, max_size=25),
    bounds=st.tuples(st.integers(0, 45), st.integers(0, 45)),
)
def test_totals_and_breakdowns_match_brute_force(
    prop_lake: tuple[Settings, Any, Path], raw: list[tuple[Any, ...]], bounds: tuple[int, int]
) -> None:
    s, con, root = prop_lake
    n = next(_examples)
    workspaces = [f"p{n}_w{i}" for i in range(3)]
    events: list[tuple[str, str, date, int, Decimal, str | None]] = []
    lines: list[dict[str, Any]] = []
    for i, (w, metric, offset, sec, k, user) in enumerate(raw):
        whole = PROP_METRICS[metric].whole
        qty = Decimal(k) if whole else Decimal(k) / 4
        day = PROP_BASE + timedelta(days=offset)
        ts = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(seconds=sec)
        line = event(
            id=f"p{n}_{i}",
            workspace=workspaces[w],
            metric=metric,
            quantity=int(qty) if whole else float(qty),
            timestamp=ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        if user is not None:
            line["properties"] = {"user": user}
        lines.append(line)
        events.append((workspaces[w], metric, day, sec, qty, user))
    report = ingest(s, [write_log(root / "prop" / f"ex{n}.jsonl", lines)])
    assert report.to_dict()["accepted"] == len(lines)
    refresh_rollup(s, con=con)

    lo, hi = sorted(bounds)
    start, end = PROP_BASE + timedelta(days=lo), PROP_BASE + timedelta(days=hi)
    expected_totals, expected_daily = _brute_force(events, start, end)
    got = {k: v for k, v in period_quantities(con, start, end).items() if k[0] in workspaces}
    assert got == expected_totals
    for ws in workspaces:
        mine = {k: v for k, v in expected_totals.items() if k[0] == ws}
        assert period_quantities(con, start, end, workspace_id=ws) == mine
        want = sorted(
            (m, d, v) for (w, m, d), v in expected_daily.items() if w == ws and start <= d <= end
        )
        assert daily_quantities(con, ws, start, end) == want
    ws = workspaces[raw[0][0]]
    for usage in get_usage(s, ws, start, end, con=con):
        metric = usage["metric"]
        assert usage["total"] == expected_totals.get((ws, metric), 0)
        assert usage["breakdown"] == [
            {"date": d.isoformat(), "quantity": v}
            for (w, m, d), v in sorted(expected_daily.items())
            if (w, m) == (ws, metric) and start <= d <= end
        ]
