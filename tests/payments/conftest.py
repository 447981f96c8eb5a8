"""Fixtures of the payments tests: real invoices (built once per session), a copy of
their state store per test, the fake Stripe (in process, and over a loopback HTTP server
for transport errors and STRIPE_API_BASE)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import stripe

from billing_batch.config.settings import Settings, load_settings
from billing_batch.invoicing import service as invoices
from billing_batch.payments import stripe_gateway
from billing_batch.storage import state as store
from tests.fake_stripe import FakeStripe, FakeStripeHTTPClient, FakeStripeServer
from tests.payments.support import DAY0, KEY, WORKSPACES, month_bounds, payments_env


@pytest.fixture(scope="session")
def invoice_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once: usage ingested and rolled up into a lake, then real invoices through
    invoices.create_invoices + finalize (open, numbered, issued DAY0, due 30 days later)
    for January and February of every workspace, and March drafts. Each test gets a
    copy of the state store (the lake is only read, by rating, here)."""
    from billing_batch.usage.ingest import ingest
    from billing_batch.usage.rollup import refresh_rollup
    from tests.conftest import event, write_log

    root = tmp_path_factory.mktemp("payments-template")
    settings = load_settings(env=payments_env(root, root / "lake"))
    lines = [
        event(
            id=f"{ws}-{month}-{metric}",
            workspace=ws,
            metric=metric,
            quantity=quantity,
            timestamp=f"2024-{month:02d}-15T10:00:00Z",
        )
        for ws in WORKSPACES
        for month in (1, 2)
        for metric, quantity in (("api_calls", 45000), ("contracts", 100))
    ]
    ingest(settings, [write_log(root / "landing" / "usage.jsonl", lines)])
    refresh_rollup(settings)
    finalized = invoices.create_invoices(
        settings,
        [(ws, *month_bounds(m)) for ws in (*WORKSPACES, "ws_empty") for m in (1, 2)],
        now=DAY0,
        finalize=True,
    )
    drafts = invoices.create_invoices(
        settings, [(ws, *month_bounds(3)) for ws in WORKSPACES], now=DAY0
    )
    bad = [r for r in (*finalized, *drafts) if not isinstance(r, invoices.Invoice)]
    assert not bad, bad
    with store.opened(settings) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return root


@pytest.fixture
def psettings(home: Path, monkeypatch: pytest.MonkeyPatch, invoice_template: Path) -> Settings:
    env = payments_env(home, invoice_template / "lake")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("STRIPE_API_KEY", KEY)
    monkeypatch.delenv("STRIPE_API_BASE", raising=False)
    settings = load_settings(env=env)
    shutil.copyfile(invoice_template / "state.sqlite", settings.state_path)
    return settings


@pytest.fixture
def fake() -> FakeStripe:
    f = FakeStripe(api_key=KEY)
    f.add_customer("cus_known", name="Known Inc.")
    return f


@pytest.fixture
def http(fake: FakeStripe) -> FakeStripeHTTPClient:
    return FakeStripeHTTPClient(fake)


@pytest.fixture(autouse=True)
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Our rate-limit backoff sleeps are recorded, not slept."""
    slept: list[float] = []
    monkeypatch.setattr(stripe_gateway, "_sleep", slept.append)
    return slept


@pytest.fixture
def no_sdk_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's own retry delays (>= 0.5 s) skipped for the real requests client."""
    monkeypatch.setattr(stripe.RequestsClient, "_sleep_time_seconds", lambda self, n: 0.0)


@pytest.fixture
def server(fake: FakeStripe, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeStripeServer]:
    with FakeStripeServer(fake) as srv:
        monkeypatch.setenv("STRIPE_API_BASE", srv.url)
        yield srv
