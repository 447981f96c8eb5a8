"""Analysts read a PostgreSQL state in place: ``billing-batch sql`` sees the state's
tables as views over the state database (attached read-only, as the read-only role),
current at once (no mirror copy), with the same columns as the lake's copy; the role
cannot write; the nightly's mirror step copies nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from billing_batch.config.settings import Settings, load_settings
from billing_batch.storage import mirror
from billing_batch.storage import state as store
from billing_batch.storage.lake import Lake
from billing_batch.storage.transfer import copy_state
from tests.payments.support import payments_env
from tests.postgres_harness import PgServer

pytestmark = pytest.mark.scale

#: What a DBA runs once (docs/analysts.md): a role that can read the state, nothing else.
ANALYST_ROLE_SQL = """
CREATE ROLE billing_analyst LOGIN;
GRANT CONNECT ON DATABASE {db} TO billing_analyst;
GRANT USAGE ON SCHEMA public TO billing_analyst;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO billing_analyst;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO billing_analyst;
"""


def sql(settings: Settings, query: str, *, ok: bool = True) -> Any:
    env = {**os.environ, "BILLING_HOME": str(settings.home)}
    env.update(
        BILLING_STATE_URL=settings.state.url,
        BILLING_PATHS_LAKE=str(settings.lake_dir),
        BILLING_PRICE_BOOK=settings.price_book,
    )
    done = subprocess.run(
        [sys.executable, "-m", "billing_batch", "sql", "--format", "json", query],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if not ok:
        return done
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


@pytest.fixture
def pg_state(
    tmp_path: Path, invoice_template: Path, pg_server: PgServer, pg_database: str
) -> Settings:
    """The payments template's invoices in a PostgreSQL state; its lake (SQLite catalog)."""
    source = load_settings(env=payments_env(invoice_template, invoice_template / "lake"))
    env = payments_env(tmp_path, invoice_template / "lake")
    target = load_settings(env={**env, "BILLING_STATE_URL": pg_server.url(pg_database)})
    copy_state(source, target)
    import psycopg

    with psycopg.connect(pg_server.conninfo(pg_database), autocommit=True) as con:
        for statement in filter(str.strip, ANALYST_ROLE_SQL.format(db=pg_database).split(";")):
            try:
                con.execute(statement)
            except psycopg.errors.DuplicateObject:  # the role is per cluster
                pass
    return target


def test_analysts_read_the_postgres_state_in_place(pg_state: Settings) -> None:
    with store.opened(pg_state) as con:
        expected = con.execute("SELECT count(*) FROM invoices").fetchone()[0]
        numbers = sorted(
            r[0] for r in con.execute("SELECT number FROM invoices WHERE number IS NOT NULL")
        )
    assert expected > 0
    rows = sql(pg_state, "SELECT count(*) AS n, sum(total) AS total FROM invoices")
    assert rows[0]["n"] == expected
    got = sql(pg_state, "SELECT number FROM invoices WHERE number IS NOT NULL ORDER BY number")
    assert [r["number"] for r in got] == numbers
    # the same columns and types as the lake's copy would have (sql/mirror/*.sql)
    described = sql(
        pg_state, "SELECT typeof(total) AS t, typeof(period_start) AS d FROM invoices LIMIT 1"
    )
    assert described == [{"t": "DECIMAL(38,9)", "d": "DATE"}]

    # a change is visible at once: no mirror ran, and none copies anything
    with store.opened(pg_state) as con, store.transaction(con):
        con.execute("UPDATE invoices SET status = 'void' WHERE number = :n", {"n": numbers[0]})
    assert sql(pg_state, "SELECT status FROM invoices WHERE number = '" + numbers[0] + "'") == [
        {"status": "void"}
    ]
    lake = Lake(pg_state).connect(read_only=True)
    try:
        before = lake.execute("SELECT count(*) FROM ducklake_snapshots('lake')").fetchall()
    finally:
        lake.close()
    mirror.mirror_to_lake(pg_state, reason="nothing to copy")
    lake = Lake(pg_state).connect(read_only=True)
    try:
        after = lake.execute("SELECT count(*) FROM ducklake_snapshots('lake')").fetchall()
    finally:
        lake.close()
    assert after == before


def test_the_analyst_role_cannot_write(pg_state: Settings) -> None:
    import psycopg

    conninfo = mirror.analyst_conninfo(pg_state)
    assert "user=billing_analyst" in conninfo and "password" not in conninfo
    with psycopg.connect(conninfo) as con:
        assert con.execute("SELECT count(*) FROM invoices").fetchone()[0] > 0  # type: ignore[index]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            con.execute("DELETE FROM invoices")
    # and the sandbox refuses the extension's pass-through functions before PostgreSQL
    refused = sql(pg_state, "SELECT * FROM postgres_execute('state', 'SELECT 1')", ok=False)
    assert refused.returncode != 0 and "not allowed" in refused.stderr
    with store.opened(pg_state) as con:
        assert con.execute("SELECT count(*) FROM invoices").fetchone()[0] > 0
