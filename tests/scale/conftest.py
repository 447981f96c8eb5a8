"""Fixtures of the ``scale`` tests: a throwaway PostgreSQL (tests/postgres_harness.py),
and ``settings`` whose state store is a fresh database there (the modules that re-run
the existing state tests on PostgreSQL collect them here, so they get this fixture)."""

from __future__ import annotations

from pathlib import Path

import pytest

from billing_batch.config.settings import Settings, load_settings
from tests.payments.conftest import (  # the payments tests re-run on PostgreSQL
    fake,
    http,
    invoice_template,
    no_sdk_sleep,
    server,
    sleeps,
)
from tests.postgres_harness import PgServer, pg_database, pg_server

__all__ = [
    "fake",
    "http",
    "invoice_template",
    "no_sdk_sleep",
    "pg_database",
    "pg_server",
    "server",
    "settings",
    "sleeps",
    "state_url",
]


@pytest.fixture
def state_url(pg_server: PgServer, pg_database: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh PostgreSQL database as the state store, also for ``load_settings()``
    calls that read the environment (``BILLING_STATE_URL``)."""
    url = pg_server.url(pg_database)
    monkeypatch.setenv("BILLING_STATE_URL", url)
    return url


@pytest.fixture
def settings(home: Path, monkeypatch: pytest.MonkeyPatch, state_url: str) -> Settings:
    monkeypatch.setenv("BILLING_HOME", str(home))
    return load_settings(
        env={
            "BILLING_HOME": str(home),
            "BILLING_LAKE_MEMORY_LIMIT": "512MB",
            "BILLING_STATE_URL": state_url,
        }
    )
