"""Shared by the invoicing tests: usage loaded into the lake, and the seed's events."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from billing_batch.config.settings import Settings
from billing_batch.usage.ingest import ingest
from billing_batch.usage.rollup import refresh_rollup
from tests.conftest import event, write_log

NOW = datetime(2024, 2, 1, 9, 30, tzinfo=UTC)
_counter = itertools.count()


def load(settings: Settings, tmp_path: Path, events: list[dict[str, Any]]) -> None:
    f = write_log(tmp_path / "logs" / f"batch-{next(_counter)}.jsonl", events)
    ingest(settings, [f])
    refresh_rollup(settings)


def api_calls(
    ws: str, n: int, day: str, qty: int = 1000, prefix: str = "a"
) -> list[dict[str, Any]]:
    return [
        event(
            id=f"{prefix}-{ws}-{day}-{i}", workspace=ws, quantity=qty, timestamp=f"{day}T10:00:00Z"
        )
        for i in range(n)
    ]


def seed_usage(ws: str = "ws_123") -> list[dict[str, Any]]:
    calls = [
        event(
            id=f"api-{i}",
            workspace=ws,
            quantity=1000,
            timestamp=f"2024-01-{i % 28 + 1:02d}T10:00:00Z",
        )
        for i in range(45)
    ]
    contracts = [
        event(
            id=f"ctr-{i}",
            workspace=ws,
            metric="contracts",
            quantity=1,
            timestamp="2024-01-20T12:00:00Z",
        )
        for i in range(100)
    ]
    return calls + contracts
