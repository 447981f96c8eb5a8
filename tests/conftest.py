"""Shared fixtures: an isolated $BILLING_HOME per test and a seeded log factory."""

from __future__ import annotations

import gzip
import json
import os
import random
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from billing_batch.config.settings import Settings, load_settings

# Nothing a test does may touch the developer's own data or Prefect home.
os.environ.pop("BILLING_HOME", None)
os.environ.pop("BILLING_CONFIG", None)
os.environ.pop("STRIPE_API_KEY", None)

# `pytest --hypothesis-profile=long`: many more examples (and, for the stateful timeline
# test, longer timelines) than the default suite can afford. No deadline: examples drive
# real lakes on a shared machine.
hypothesis_settings.register_profile(
    "long", max_examples=300, stateful_step_count=40, deadline=None
)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture
def settings(home: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("BILLING_HOME", str(home))
    return load_settings(env={"BILLING_HOME": str(home), "BILLING_LAKE_MEMORY_LIMIT": "512MB"})


def event(
    id: str | None = "evt_1",
    workspace: str = "ws_123",
    metric: str = "api_calls",
    quantity: Any = 1000,
    timestamp: str = "2024-01-15T10:00:00Z",
    **extra: Any,
) -> dict[str, Any]:
    e: dict[str, Any] = {}
    if id is not None:
        e["id"] = id
    e.update(workspaceId=workspace, metric=metric, quantity=quantity, timestamp=timestamp)
    e.update(extra)
    return e


def write_log(path: Path, lines: Sequence[dict[str, Any] | str], *, gz: bool = False) -> Path:
    """Write JSON lines (dicts are serialized, strings written as they are)."""
    text = "".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path, "wb") as fh:
            fh.write(text.encode())
    else:
        path.write_text(text)
    return path


def random_events(
    n: int,
    *,
    seed: int = 1,
    workspaces: Sequence[str] = ("ws_a", "ws_b", "ws_c"),
    metrics: Sequence[str] = ("api_calls", "contracts", "kyc_checks", "storage"),
    start: datetime = datetime(2024, 1, 1, tzinfo=UTC),
    days: int = 31,
) -> Iterator[dict[str, Any]]:
    """A seeded stream of valid events (storage quantities with 3 decimals)."""
    rng = random.Random(seed)
    for i in range(n):
        metric = rng.choice(list(metrics))
        ts = start + timedelta(seconds=rng.randrange(days * 86400))
        qty: Any = rng.randrange(1, 1000)
        if metric == "storage":
            qty = float(f"{rng.randrange(0, 500_000) / 1000:.3f}")
        yield event(
            id=f"evt_{seed}_{i}",
            workspace=rng.choice(list(workspaces)),
            metric=metric,
            quantity=qty,
            timestamp=ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
