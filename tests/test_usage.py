"""Usage analytics: the rollup, period quantities, get_usage, the CLI and the analyst docs.

Golden tests use small hand-checked inputs (the arithmetic is in the comments); a
hypothesis property test compares everything with a brute-force Python computation.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from billing_batch._core.errors import InputError, StaleUsageError, UsageQueryError
from billing_batch._core.jsonutil import dumps
from billing_batch.cli import main as cli_main
from billing_batch.cli.usage import interactive
from billing_batch.config.settings import PROJECT_ROOT, MetricDef, Settings, load_settings
from billing_batch.storage import mirror
from billing_batch.storage import state as store
from billing_batch.storage.lake import Lake, extension_directory
from billing_batch.usage.ingest import IngestReport, ingest
from billing_batch.usage.queries import (
    analyst_query,
    daily_quantities,
    get_usage,
    period_quantities,
    refresh_rollup,
)
from tests.conftest import event, write_log

GOLDEN = Path(__file__).parent / "golden"
DOCS = PROJECT_ROOT / "docs" / "analysts.md"
_ids = itertools.count(1)

EXTRA_METRICS = {
    "requests": MetricDef(display_name="Requests", aggregation="count"),
    "peak_seats": MetricDef(
        display_name="Peak seats", unit="seats", aggregation="max", whole=False
    ),
    "plan_level": MetricDef(display_name="Plan level", aggregation="latest", whole=False),
    "active_users": MetricDef(
        display_name="Active users", aggregation="unique_count", property="user"
    ),
}


def ev(ws: str, metric: str, quantity: Any, ts: str, **props: Any) -> dict[str, Any]:
    e = event(id=f"u{next(_ids)}", workspace=ws, metric=metric, quantity=quantity, timestamp=ts)
    if props:
        e["properties"] = props
    return e


def load(settings: Settings, folder: Path, lines: Sequence[dict[str, Any] | str]) -> IngestReport:
    f = write_log(folder / f"log-{next(_ids)}.jsonl", lines)
    report = ingest(settings, [f])
    assert not report.failed
    return report


_readers: dict[str, duckdb.DuckDBPyConnection] = {}


@pytest.fixture(autouse=True)
def _close_readers() -> Iterator[None]:
    yield
    while _readers:
        _readers.popitem()[1].close()


def q(settings: Settings, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """Query the lake read-only (one connection per lake and test: opening one costs more
    than most of these queries; each query still sees the last committed snapshot)."""
    con = _readers.get(str(settings.home))
    if con is None:
        con = _readers[str(settings.home)] = Lake(settings).connect(read_only=True)
    return con.execute(sql, params or []).fetchall()


def with_extra_metrics(settings: Settings) -> Settings:
    return settings.model_copy(update={"metrics": {**settings.metrics, **EXTRA_METRICS}})


def D(text: str) -> date:
    return date.fromisoformat(text)


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
GAUGE_EVENTS = [
    ev("ws_g", "storage", 10, "2023-12-20T08:00:00Z"),
    ev("ws_g", "storage", 100, "2024-01-11T01:00:00Z"),
    ev("ws_g", "storage", 40, "2024-01-11T20:00:00Z"),  # same day: the largest (100) counts
    ev("ws_g", "storage", 50, "2024-01-21T12:00:00Z"),
    ev("ws_g", "storage", 20.5, "2024-02-10T00:00:00Z"),
    ev("ws_new", "storage", 30, "2024-04-11T09:00:00Z"),
    ev("ws_old", "storage", 7.5, "2023-11-05T09:00:00Z"),
]


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


# --- incremental refresh -----------------------------------------------------------------
def _usage_files(settings: Settings) -> dict[str, set[str]]:
    """The data files of usage_daily, by day partition."""
    out: dict[str, set[str]] = defaultdict(set)
    for (path,) in q(settings, "SELECT data_file FROM ducklake_list_files('lake', 'usage_daily')"):
        day = re.search(r"day=(\d{4}-\d{2}-\d{2})", path)
        assert day, path
        out[day.group(1)].add(path)
    return dict(out)


def _snapshots(settings: Settings) -> list[tuple[int, str | None]]:
    return [
        (int(r[0]), r[1])
        for r in q(settings, "SELECT snapshot_id, commit_message FROM ducklake_snapshots('lake')")
    ]


def test_incremental_refresh_recomputes_only_changed_days(
    settings: Settings, tmp_path: Path
) -> None:
    a = load(
        settings,
        tmp_path,
        [ev("ws_a", "api_calls", n, f"2024-01-0{n}T10:00:00Z") for n in (1, 2, 3)],
    )
    r1 = refresh_rollup(settings)
    assert (r1.days, r1.ingest_ids) == (
        [D("2024-01-01"), D("2024-01-02"), D("2024-01-03")],
        [a.ingest_id],
    )
    assert r1.rows_written == 3 and r1.snapshot_id is not None
    files1 = _usage_files(settings)
    assert set(files1) == {"2024-01-01", "2024-01-02", "2024-01-03"}

    # nothing new: nothing written, no snapshot
    before = _snapshots(settings)
    r2 = refresh_rollup(settings)
    assert (r2.days, r2.ingest_ids, r2.rows_written, r2.snapshot_id) == ([], [], 0, None)
    assert _snapshots(settings) == before

    # a late event for Jan 2nd and a new day: exactly those two days are recomputed
    b = load(
        settings,
        tmp_path,
        [
            ev("ws_a", "api_calls", 40, "2024-01-02T23:00:00Z"),
            ev("ws_b", "api_calls", 4, "2024-01-04T00:00:00Z"),
        ],
    )
    r3 = refresh_rollup(settings)
    assert (r3.days, r3.ingest_ids) == ([D("2024-01-02"), D("2024-01-04")], [b.ingest_id])
    assert r3.rows_written == 2
    files3 = _usage_files(settings)
    assert files3["2024-01-01"] == files1["2024-01-01"]  # untouched partitions
    assert files3["2024-01-03"] == files1["2024-01-03"]
    assert files3["2024-01-02"].isdisjoint(files1["2024-01-02"])  # rewritten whole
    assert len(files3["2024-01-02"]) == 1
    assert _snapshots(settings)[-1] == (r3.snapshot_id, "rollup")
    assert get_usage(settings, "ws_a", "2024-01-01", "2024-01-31", "api_calls")["breakdown"] == [
        {"date": "2024-01-01", "quantity": 1},
        {"date": "2024-01-02", "quantity": 42},
        {"date": "2024-01-03", "quantity": 3},
    ]
    log = q(settings, "SELECT ingest_id, days, snapshot_id FROM rollup_log ORDER BY snapshot_id")
    assert log == [
        (a.ingest_id, [D("2024-01-01"), D("2024-01-02"), D("2024-01-03")], r1.snapshot_id),
        (b.ingest_id, [D("2024-01-02"), D("2024-01-04")], r3.snapshot_id),
    ]

    # an ingest that added nothing (all duplicates) is absorbed without touching a day
    c = ingest(settings, [next((tmp_path).glob("*.jsonl"))])
    assert c.to_dict()["accepted"] == 0
    r4 = refresh_rollup(settings)
    assert (r4.days, r4.ingest_ids, r4.rows_written) == ([], [c.ingest_id], 0)
    assert _usage_files(settings) == files3
    assert refresh_rollup(settings).snapshot_id is None


def test_late_gauge_reading_updates_carry_forward(settings: Settings, tmp_path: Path) -> None:
    load(settings, tmp_path, [ev("ws_g", "storage", 100, "2024-01-16T00:00:00Z")])
    refresh_rollup(settings)
    jan = get_usage(settings, "ws_g", "2024-01-01", "2024-01-31", "storage")
    assert jan["total"] == Decimal("51.612903226")  # 16 days x 100 / 31
    # a reading for December arrives late: it carries into January's first 15 days
    r = load(settings, tmp_path, [ev("ws_g", "storage", 31, "2023-12-31T00:00:00Z")])
    rep = refresh_rollup(settings)
    assert rep.days == [D("2023-12-31")] and rep.ingest_ids == [r.ingest_id]
    assert rep.gauge_rows_written == 1  # the 2023 partition: December
    jan = get_usage(settings, "ws_g", "2024-01-01", "2024-01-31", "storage")
    # (15 days x 31 + 16 days x 100) / 31 = 2065 / 31 = 66.6129032258... -> 66.612903226
    assert jan["total"] == Decimal("66.612903226")


def test_full_rebuild_after_an_aggregation_change(settings: Settings, tmp_path: Path) -> None:
    load(
        settings,
        tmp_path,
        [
            ev("ws_a", "api_calls", 10, "2024-01-01T10:00:00Z"),
            ev("ws_a", "api_calls", 30, "2024-01-01T11:00:00Z"),
            ev("ws_a", "api_calls", 20, "2024-01-02T10:00:00Z"),
        ],
    )
    refresh_rollup(settings)
    assert get_usage(settings, "ws_a", "2024-01-01", "2024-01-31", "api_calls")["total"] == 60
    as_max = settings.model_copy(
        update={
            "metrics": {
                **settings.metrics,
                "api_calls": MetricDef(display_name="API Calls", aggregation="max"),
            }
        }
    )
    assert refresh_rollup(as_max).snapshot_id is None  # nothing new: no rebuild by itself
    rep = refresh_rollup(as_max, full=True)
    assert rep.days == [D("2024-01-01"), D("2024-01-02")] and rep.ingest_ids == []
    got = get_usage(as_max, "ws_a", "2024-01-01", "2024-01-31", "api_calls")
    assert (got["total"], [b["quantity"] for b in got["breakdown"]]) == (30, [30, 20])


def test_reads_are_fresh_or_refuse_when_another_writer_holds_the_lake(
    settings: Settings, tmp_path: Path
) -> None:
    """Fresh reads (docs/billing-rules.md §9): every committed ingest is read; when the
    rollup is behind and cannot be refreshed, the read refuses instead of a stale zero."""
    load(settings, tmp_path, [ev("ws_a", "api_calls", 5, "2024-01-01T10:00:00Z")])
    assert get_usage(settings, "ws_a", "2024-01-01", "2024-01-01", "api_calls")["total"] == 5
    load(settings, tmp_path, [ev("ws_a", "api_calls", 7, "2024-01-01T11:00:00Z")])
    impatient = settings.model_copy(
        update={"ingest": settings.ingest.model_copy(update={"lock_timeout_seconds": 0.2})}
    )
    held, release = threading.Event(), threading.Event()

    def writer() -> None:  # another writer (here a thread) holds the lake
        with Lake(settings).write_lock():
            held.set()
            release.wait(30)

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert held.wait(30)
        with pytest.raises(StaleUsageError, match="behind by 1 ingest"):
            get_usage(impatient, "ws_a", "2024-01-01", "2024-01-01", "api_calls")
    finally:
        release.set()
        t.join()
    got = get_usage(impatient, "ws_a", "2024-01-01", "2024-01-01", "api_calls")
    assert got["total"] == 12


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


# --- readers during a write ----------------------------------------------------------------
_SLOW_INGEST = """
import pathlib, sys, time
import billing_batch.usage.ingest as m
from billing_batch.config import load_settings
real = m.run_sql
def slow(con, name, params=None, **kw):
    if name == "ingest_commit_manifest":  # inside the ingest's transaction
        pathlib.Path(sys.argv[2]).write_text("writing")
        deadline = time.time() + 60
        while not pathlib.Path(sys.argv[3]).exists():
            if time.time() > deadline:
                sys.exit(7)
            time.sleep(0.02)
    return real(con, name, params, **kw)
m.run_sql = slow
print(m.ingest(load_settings(), [sys.argv[1]]).snapshot_id)
"""


def _wait_for(path: Path, proc: subprocess.Popen[str], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the writer never started its transaction"
        time.sleep(0.02)


def _start_slow_ingest(settings: Settings, tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    """An ingest in another process, paused inside its transaction until ``go`` exists."""
    load(settings, tmp_path, [ev("ws_a", "api_calls", 1, "2024-01-01T10:00:00Z")])
    refresh_rollup(settings)
    new = write_log(tmp_path / "new.jsonl", [ev("ws_a", "api_calls", 2, "2024-01-02T10:00:00Z")])
    started, go = tmp_path / "started", tmp_path / "go"
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_INGEST, str(new), str(started), str(go)],
        env={**os.environ, "BILLING_HOME": str(settings.home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(started, proc)
    return proc, go


def test_analyst_connection_during_a_write_sees_the_last_snapshot(
    settings: Settings, tmp_path: Path
) -> None:
    proc, go = _start_slow_ingest(settings, tmp_path)
    try:
        con = Lake(settings).analyst_connection()  # opened while the ingest writes
        try:
            assert con.execute("SELECT count(*) FROM events").fetchall() == [(1,)]
            result = analyst_query(con, "SELECT sum(quantity) AS total FROM events")
            assert result.rows == [(Decimal(1),)]
            go.write_text("go")  # the writer commits while the reader is connected
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            assert con.execute("SELECT count(*) FROM events").fetchall() == [(2,)]
            row = con.execute("SELECT id FROM billing.current_snapshot()").fetchall()
            assert row == [(int(out.strip()),)]
        finally:
            con.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_an_open_analyst_transaction_does_not_block_the_writer(
    settings: Settings, tmp_path: Path
) -> None:
    proc, go = _start_slow_ingest(settings, tmp_path)
    try:
        with sqlite3.connect(settings.lake_dir / "catalog.sqlite") as cat:
            mode = cat.execute("PRAGMA journal_mode").fetchall()
        assert mode == [("wal",)]  # lake.py puts the SQLite catalog in WAL mode
        con = Lake(settings).analyst_connection()
        try:
            con.execute("BEGIN TRANSACTION")
            assert con.execute("SELECT count(*) FROM events").fetchall() == [(1,)]
            go.write_text("go")  # the writer commits while the read transaction is open
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            # the open transaction keeps its snapshot; the next one sees the commit
            assert con.execute("SELECT count(*) FROM events").fetchall() == [(1,)]
            con.execute("COMMIT")
            assert con.execute("SELECT count(*) FROM events").fetchall() == [(2,)]
        finally:
            con.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


# --- the CLI -----------------------------------------------------------------------------
def run_cli(settings: Settings, *args: str) -> int:
    return cli_main(["--home", str(settings.home), *args])


INJECTIONS = [
    "ws_123' OR '1'='1",
    "ws_123'; DROP TABLE events; --",
    "' UNION SELECT metric, day, quantity FROM usage_daily --",
    "ws_123\\' OR 1=1 --",
    "%",
    "*",
    "ws_1%' OR workspace_id LIKE '%",
    'ws_123"; SELECT 1; --',
    "ws_123" + "x" * 5000,
    "wś_123 ☃",
]


def test_injection_through_workspace_returns_nothing(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load(
        settings,
        tmp_path,
        [
            ev("ws_123", "api_calls", 1000, "2024-01-15T10:00:00Z"),
            ev("ws_1", "api_calls", 1, "2024-01-15T10:00:00Z"),
        ],
    )
    refresh_rollup(settings)
    con = Lake(settings).connect()
    try:
        for attempt in INJECTIONS:
            code = run_cli(
                settings, "usage", "--workspace", attempt, "--metric", "api_calls",
                "--start", "2024-01-01", "--end", "2024-01-31",
            )  # fmt: skip
            # refused by the workspace id rule (ids.check_workspace_id) before any query
            assert code == 2, attempt
            out = capsys.readouterr()
            assert out.out == "" and "invalid --workspace" in out.err, attempt
            jan = (D("2024-01-01"), D("2024-01-31"))
            assert period_quantities(con, *jan, workspace_id=attempt) == {}
            assert daily_quantities(con, attempt, *jan) == []
    finally:
        con.close()
    # nothing broke
    assert q(settings, "SELECT count(*) FROM events") == [(2,)]
    assert get_usage(settings, "ws_123", "2024-01-01", "2024-01-31", "api_calls")["total"] == 1000
    # the sql command refuses anything but a read, whatever hides behind a semicolon
    assert run_cli(settings, "sql", "SELECT 1; DROP TABLE events") == 2
    assert "only SELECT" in capsys.readouterr().err
    assert q(settings, "SELECT count(*) FROM events") == [(2,)]


def test_cli_usage_shape_and_exit_codes(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load(
        settings,
        tmp_path,
        [
            ev("ws_123", "api_calls", 1500, "2024-01-15T10:00:00Z"),
            ev("ws_123", "api_calls", 2000, "2024-01-16T10:00:00Z"),
            ev("ws_123", "storage", 12.25, "2024-01-16T10:00:00Z"),
        ],
    )
    # the usage command absorbs the pending ingest itself
    args = ["usage", "--workspace", "ws_123", "--start", "2024-01-01", "--end", "2024-01-31"]
    assert run_cli(settings, *args, "--metric", "api_calls") == 0
    assert capsys.readouterr().out == (
        "{\n"
        '  "metric": "api_calls",\n'
        '  "total": 3500,\n'
        '  "breakdown": [\n'
        "    {\n"
        '      "date": "2024-01-15",\n'
        '      "quantity": 1500\n'
        "    },\n"
        "    {\n"
        '      "date": "2024-01-16",\n'
        '      "quantity": 2000\n'
        "    }\n"
        "  ]\n"
        "}\n"
    )
    assert run_cli(settings, *args) == 0
    out = capsys.readouterr().out
    assert out == (GOLDEN / "usage_all_metrics.json").read_text()
    # storage: 16 days x 12.25 / 31 = 196 / 31 = 6.3225806451... -> 6.322580645
    assert '"total": 6.322580645' in out

    bad = [
        (["--start", "2024-1-1", "--end", "2024-01-31"], "expected a date as YYYY-MM-DD"),
        (["--start", "2024-02-30", "--end", "2024-03-01"], "expected a date as YYYY-MM-DD"),
        (["--start", "2024-01-31", "--end", "2024-01-01"], "is before start date"),
        (["--start", "2024-01-01", "--end", "2024-01-31", "--metric", "bandwidth"],
         "unknown metric 'bandwidth'"),
    ]  # fmt: skip
    for extra, message in bad:
        assert run_cli(settings, "usage", "--workspace", "ws_123", *extra) == 2, extra
        captured = capsys.readouterr()
        assert message in captured.err and captured.out == "", (extra, captured)
    with pytest.raises(SystemExit) as exc:
        run_cli(settings, "usage", "--start", "2024-01-01", "--end", "2024-01-31")
    assert exc.value.code == 2
    capsys.readouterr()

    assert run_cli(settings, "rollup") == 0
    assert json.loads(capsys.readouterr().out)["snapshot_id"] is None
    assert run_cli(settings, "rollup", "--full") == 0
    assert json.loads(capsys.readouterr().out)["days"] == ["2024-01-15", "2024-01-16"]


def test_library_errors(settings: Settings) -> None:
    with pytest.raises(UsageQueryError, match="YYYY-MM-DD"):
        get_usage(settings, "ws", "yesterday", "2024-01-31")
    with pytest.raises(UsageQueryError, match="expected a date"):
        get_usage(settings, "ws", datetime(2024, 1, 1, tzinfo=UTC), date(2024, 1, 31))
    with pytest.raises(UsageQueryError, match="before start"):
        get_usage(settings, "ws", "2024-02-01", "2024-01-31")
    with pytest.raises(UsageQueryError, match="unknown metric"):
        get_usage(settings, "ws", "2024-01-01", "2024-01-31", "bandwidth")


def test_cli_sql_formats_sandbox_and_prompt(
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    load(settings, tmp_path, [ev("ws_a", "storage", 1.5, "2024-01-15T10:00:00Z"), "junk"])
    refresh_rollup(settings)
    query = "SELECT workspace_id, day, quantity, events FROM usage_daily"
    assert run_cli(settings, "sql", query, "--format", "csv") == 0
    assert capsys.readouterr().out == "workspace_id,day,quantity,events\nws_a,2024-01-15,1.5,1\n"
    assert run_cli(settings, "sql", query, "--format", "json") == 0
    assert json.loads(capsys.readouterr().out) == [
        {"workspace_id": "ws_a", "day": "2024-01-15", "quantity": 1.5, "events": 1}
    ]
    assert run_cli(settings, "sql", query) == 0
    out = capsys.readouterr().out
    assert "ws_a" in out and "2024-01-15" in out and "1.5" in out and "1 row" in out
    assert run_cli(settings, "sql", "SELECT * FROM range(5)", "--limit", "2") == 0
    assert "more not shown" in capsys.readouterr().out
    assert (
        run_cli(
            settings, "sql", "SELECT reason_kind, lines FROM rejects_by_reason", "--format", "csv"
        )
        == 0
    )
    assert capsys.readouterr().out == "reason_kind,lines\ninvalid JSON,1\n"

    outside = tmp_path / "secret.csv"
    outside.write_text("a\n1\n")
    sandbox = Lake(settings).analyst_connection()
    try:
        for refused, message in [
            ("DELETE FROM events", "only SELECT"),
            (f"COPY events TO '{tmp_path / 'x.csv'}'", "only SELECT"),
            ("ATTACH ':memory:' AS other", "only SELECT"),
            ("SET enable_external_access = true", "only SELECT"),
            ("SELECT 1; DROP TABLE events", "only SELECT"),
            (f"SELECT * FROM read_csv('{outside}')", "not allowed here"),
            ("SELECT * FROM no_such_table", "query failed"),
            ("SELEC 1", "invalid SQL"),
        ]:
            with pytest.raises(InputError, match=message):
                analyst_query(sandbox, refused)
    finally:
        sandbox.close()
    assert not (tmp_path / "x.csv").exists()
    for refused, message in [("DELETE FROM events", "only SELECT"), ("SELEC 1", "invalid SQL")]:
        assert run_cli(settings, "sql", refused) == 2, refused
        assert message in capsys.readouterr().err, refused

    # the prompt: statements end with ';', errors do not stop it, .quit does
    monkeypatch.setattr(
        sys,
        "stdin",
        io.StringIO("SELECT 1 AS x;\nSELECT\n  2 AS y;\nSELECT nope;\n\n.quit\nSELECT 3 AS z;\n"),
    )
    assert run_cli(settings, "sql", "--format", "csv") == 0
    captured = capsys.readouterr()
    assert captured.out == "x\n1\ny\n2\n"
    assert "query failed" in captured.err
    buf = io.StringIO()
    con = Lake(settings).analyst_connection()
    try:
        assert interactive(con, "json", None, io.StringIO("SELECT 42 AS answer;"), buf) == 0
    finally:
        con.close()
    assert json.loads(buf.getvalue()) == [{"answer": 42}]


# --- the analysts' documentation -------------------------------------------------------------
def _sql_blocks(text: str) -> list[str]:
    return re.findall(r"```sql\n(.*?)```", text, flags=re.S)


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^#### `([a-z_]+)`", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


@pytest.fixture(scope="module")
def documented_lake(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A small lake with every table: a sample month, its rollup, one invoice mirrored."""
    from billing_batch.usage.sample import generate

    root = tmp_path_factory.mktemp("docs")
    settings = load_settings(env={"BILLING_HOME": str(root / "home")})
    generate(root / "s", workspaces=5, events=5_000, seed=4, bad_lines=7)
    ingest(settings, [root / "s"])
    rollup = refresh_rollup(settings)
    with store.opened(settings) as con, store.transaction(con):
        con.execute(
            "INSERT INTO invoices (id, workspace_id, period_start, period_end, status, currency, "
            "subtotal, tax_rate, tax, total, total_minor, price_book_version, lake_snapshot_id, "
            "document, created_at, updated_at) VALUES ('inv_test', 'ws_0001', '2024-01-01', "
            "'2024-01-31', 'open', 'USD', '10', '0', '0', '10', 1000, 'v1', ?, '{}', "
            "'2024-02-01T00:00:00Z', '2024-02-01T00:00:00Z')",
            [rollup.snapshot_id],
        )
    mirror.mirror_to_lake(settings)
    return settings


def test_every_table_and_view_is_documented_and_commented(documented_lake: Settings) -> None:
    s = documented_lake
    text = DOCS.read_text()
    sections = _sections(text)
    con = Lake(s).connect(read_only=True)
    try:
        objects = con.execute(
            "SELECT table_name, comment FROM duckdb_tables() WHERE database_name = 'lake' "
            "UNION ALL SELECT view_name, comment FROM duckdb_views() WHERE database_name = 'lake'"
        ).fetchall()
        assert len(objects) >= 6 + 3 + len(mirror.MIRRORED)
        for name, comment in objects:
            assert comment, f"{name} has no COMMENT"
            assert name in sections, f"docs/analysts.md has no section #### `{name}`"
            columns = [
                r[0]
                for r in con.execute(
                    "SELECT column_name FROM duckdb_columns() WHERE database_name = 'lake' "
                    "AND table_name = ?",
                    [name],
                ).fetchall()
            ]
            for column in columns:
                assert f"`{column}`" in sections[name], f"{name}.{column} is not documented"
    finally:
        con.close()


def test_every_example_in_the_analyst_docs_runs(documented_lake: Settings) -> None:
    s = documented_lake
    blocks = _sql_blocks(DOCS.read_text())
    assert len(blocks) >= 12
    attach = [b for b in blocks if "ATTACH" in b]
    assert len(attach) == 1
    # the documented recipe, as an analyst's own DuckDB session would run it
    recipe = (
        attach[0]
        .replace("<extension_directory>", extension_directory())
        .replace("<billing_home>", str(s.home))
    )
    con = duckdb.connect()
    con.execute(recipe)
    examples = [b for b in blocks if b not in attach]
    titled = 0
    for block in examples:
        con.execute(block).fetchall()
        titled += 1
    assert titled >= 11  # ten day-one queries and the time travel
    con.close()
    # each single-SELECT example also runs through the sandboxed `billing-batch sql`
    sandbox = Lake(s).analyst_connection()
    try:
        for block in examples:
            statements = sandbox.extract_statements(block)
            if len(statements) == 1 and statements[0].type.name == "SELECT":
                analyst_query(sandbox, block)
        with pytest.raises(InputError):
            analyst_query(sandbox, "SET VARIABLE x = 1")
    finally:
        sandbox.close()
