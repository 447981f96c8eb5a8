"""usage.rollup: incremental refresh of usage_daily and gauge_monthly, a full rebuild,
fresh reads (or a refusal when the lake is held)."""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from billing_batch._core.errors import StaleUsageError
from billing_batch.config.metrics import MetricDef
from billing_batch.config.settings import Settings
from billing_batch.storage.lake import Lake
from billing_batch.usage.ingest import ingest
from billing_batch.usage.queries import get_usage
from billing_batch.usage.rollup import refresh_rollup
from tests.usage.support import D, ev, load, q


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
