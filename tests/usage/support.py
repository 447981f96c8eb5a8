"""Shared by the usage tests: events, loading them through the real ingest, and a
read-only look at the lake."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from billing_batch.config.metrics import MetricDef
from billing_batch.config.settings import Settings
from billing_batch.storage.lake import Lake
from billing_batch.usage.ingest import IngestReport, ingest
from tests.conftest import event, write_log

GOLDEN = Path(__file__).parents[1] / "golden"
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


def close_readers() -> None:
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


# the gauge's golden events (storage, GB): the arithmetic is in tests/usage/test_queries.py
GAUGE_EVENTS = [
    ev("ws_g", "storage", 10, "2023-12-20T08:00:00Z"),
    ev("ws_g", "storage", 100, "2024-01-11T01:00:00Z"),
    ev("ws_g", "storage", 40, "2024-01-11T20:00:00Z"),  # same day: the largest (100) counts
    ev("ws_g", "storage", 50, "2024-01-21T12:00:00Z"),
    ev("ws_g", "storage", 20.5, "2024-02-10T00:00:00Z"),
    ev("ws_new", "storage", 30, "2024-04-11T09:00:00Z"),
    ev("ws_old", "storage", 7.5, "2023-11-05T09:00:00Z"),
]
