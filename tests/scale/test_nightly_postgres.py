"""A month close with the state and the lake's catalog on PostgreSQL, the HTTP API
serving that state from another process while the nightly runs, then the same close on
the embedded default (SQLite state and catalog): the same invoices (numbers, totals,
lines, documents), and no 5xx from the API."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from billing_batch.config.settings import Settings, load_settings
from billing_batch.storage import state as store
from billing_batch.usage.sample import generate
from tests.fake_stripe import FakeStripe, FakeStripeServer
from tests.nightly.test_flow import (  # noqa: F401 (prefect_home: an autouse fixture)
    RUN_DATE,
    SECRET,
    Receiver,
    month_settings,
    prefect_home,
)
from tests.postgres_harness import PgServer

pytestmark = [pytest.mark.scale, pytest.mark.slow]

ADMIN = "bbk_scale_admin"


@pytest.fixture
def rcv() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def fake_stripe(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeStripe]:
    """The fake Stripe on a loopback server, for the nightly's subprocess too."""
    fake = FakeStripe(api_key="sk_test_nightly")
    with FakeStripeServer(fake) as server:
        monkeypatch.setenv("STRIPE_API_KEY", "sk_test_nightly")
        monkeypatch.setenv("STRIPE_API_BASE", server.url)
        monkeypatch.setenv("TEST_WHSEC", SECRET)
        yield fake


def home_for(home: Path, rcv: Receiver, extra: str) -> Settings:
    month_settings(home, rcv)
    digest = hashlib.sha256(ADMIN.encode()).hexdigest()
    with (home / "billing.toml").open("a") as fh:
        fh.write(f'[[api.keys]]\nhash = "sha256:{digest}"\n' + extra)
    settings = load_settings(env={"BILLING_HOME": str(home)})
    generate(settings.landing_dir, workspaces=5, events=5_000, seed=7, bad_lines=2)
    return settings


def nightly(home: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "billing_batch", "run", "--date", RUN_DATE.isoformat()],
        env={**os.environ, "BILLING_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (summary,) = sorted((home / "runs").glob(f"{RUN_DATE}-*.json"))
    result: dict[str, Any] = json.loads(summary.read_text())
    return result


def invoices_of(settings: Settings) -> list[dict[str, Any]]:
    """Every finalized invoice: number, workspace, totals, lines and document."""
    out = []
    with store.opened(settings) as con:
        rows = con.execute(
            "SELECT id, number, workspace_id, subtotal, tax, total, total_minor, document "
            "FROM invoices WHERE number IS NOT NULL ORDER BY number"
        ).fetchall()
        for r in rows:
            lines = con.execute(
                "SELECT line_no, kind, description, quantity, unit_price, amount "
                "FROM invoice_lines WHERE invoice_id = ? ORDER BY line_no",
                [r["id"]],
            ).fetchall()
            doc = json.loads(r["document"])
            for volatile in ("id", "invoiceId", "createdAt", "updatedAt", "lakeSnapshotId"):
                doc.pop(volatile, None)
            out.append(
                {
                    **{k: r[k] for k in ("number", "workspace_id", "subtotal", "tax", "total")},
                    "total_minor": r["total_minor"],
                    "lines": [tuple(x) for x in lines],
                    "document_keys": sorted(doc),
                    "line_items": doc.get("lineItems"),
                }
            )
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hammer(base: str, stop: threading.Event, failures: list[str], done: list[int]) -> None:
    import httpx

    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=300
    ) as c:
        i = 0
        while not stop.is_set():
            i += 1
            ws = f"ws_000{1 + i % 5}"
            answers = [  # March is not closed by the run: drafts the run leaves alone
                c.post(
                    "/v1/billing/invoices",
                    json={
                        "workspaceId": ws,
                        "period": {"start": "2024-03-01", "end": "2024-03-31"},
                    },
                ),
                c.get("/v1/billing/invoices", params={"workspaceId": ws}),
            ]
            done[0] += len(answers)
            failures.extend(
                f"{a.request.method} {a.request.url.path}: {a.status_code} {a.text[:300]}"
                for a in answers
                if a.status_code >= 500
            )
            time.sleep(0.05)


def test_month_close_on_postgres_matches_the_embedded_one_with_the_api_serving(
    tmp_path: Path,
    rcv: Receiver,
    fake_stripe: FakeStripe,
    pg_server: PgServer,
    pg_database: str,
) -> None:
    catalog_db = f"{pg_database}_lake"
    pg_server.admin(f"CREATE DATABASE {catalog_db}")
    pg = home_for(
        tmp_path / "pg",
        rcv,
        f'[state]\nurl = "{pg_server.url(pg_database)}"\n'
        f'[lake]\ncatalog = "postgres:{pg_server.conninfo(catalog_db)}"\n',
    )
    port = free_port()
    log = (tmp_path / "api.log").open("w")
    api = subprocess.Popen(
        [sys.executable, "-m", "billing_batch", "serve-api", "--port", str(port)],
        env={**os.environ, "BILLING_HOME": str(pg.home)},
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    failures: list[str] = []
    done = [0]
    stop = threading.Event()
    try:
        import httpx

        deadline = time.time() + 300
        while True:
            try:
                httpx.get(base + "/openapi.json", timeout=5)
                break
            except httpx.HTTPError:
                assert api.poll() is None and time.time() < deadline, "the API did not start"
                time.sleep(0.3)
        client = threading.Thread(target=hammer, args=(base, stop, failures, done))
        client.start()
        try:
            summary = nightly(pg.home)
        finally:
            stop.set()
            client.join()
    finally:
        api.terminate()
        api.wait(60)
        log.close()
    assert failures == [], failures[:5]
    assert done[0] > 0
    assert summary["steps"]["invoices"]["counts"]["invoices_finalized"] == 5, summary
    assert summary["steps"]["payments"]["counts"]["succeeded"] == 5
    assert not (pg.home / "state.sqlite").exists()
    assert not (pg.lake_dir / "catalog.sqlite").exists()

    embedded = home_for(tmp_path / "embedded", rcv, "")
    nightly(embedded.home)
    on_postgres, on_sqlite = invoices_of(pg), invoices_of(embedded)
    assert [i["number"] for i in on_postgres] == [f"INV-2024-{n:06d}" for n in range(1, 6)]
    assert on_postgres == on_sqlite
    pdfs = {p.name for p in pg.invoices_dir.glob("*.pdf")}
    assert pdfs == {p.name for p in embedded.invoices_dir.glob("*.pdf")} and len(pdfs) == 5
    assert len(fake_stripe.charges) == 10  # five per close
