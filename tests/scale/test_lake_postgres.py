"""The lake's DuckLake catalog on PostgreSQL: ingest, ``sql``, time travel, a nightly
close, two processes starting on a fresh catalog at once, and the lake write lock held
across processes (an advisory lock on the catalog's database)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from billing_batch.config.settings import Settings, load_settings
from tests.postgres_harness import PgServer

pytestmark = pytest.mark.scale


def pg_home(home: Path, server: PgServer, database: str, extra: str = "") -> Settings:
    home.mkdir(parents=True, exist_ok=True)
    (home / "billing.toml").write_text(
        f'[lake]\ncatalog = "postgres:{server.conninfo(database)}"\n' + extra
    )
    return load_settings(env={"BILLING_HOME": str(home)})


def cli(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BILLING_HOME": str(home), "PREFECT_LOGGING_LEVEL": "WARNING"}
    done = subprocess.run(
        [sys.executable, "-m", "billing_batch", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def sql(home: Path, query: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(cli(home, "sql", "--format", "json", query).stdout)
    return rows


def test_ingest_sql_and_time_travel_on_a_postgres_catalog(
    tmp_path: Path, pg_server: PgServer, pg_database: str
) -> None:
    home = tmp_path / "home"
    settings = pg_home(home, pg_server, pg_database)
    cli(home, "sample", "--workspaces", "3", "--events", "2000", "--bad-lines", "2")
    cli(home, "ingest")
    assert sql(home, "SELECT count(*) AS n FROM events") == [{"n": 2000}]
    first = sql(home, "SELECT max(snapshot_id) AS s FROM ducklake_snapshots('billing')")[0]["s"]

    # a second month: the lake grows; the first snapshot still reads as it was
    cli(home, "sample", "--month", "2024-02", "--events", "500", "--bad-lines", "0")
    cli(home, "ingest")
    assert sql(home, "SELECT count(*) AS n FROM events")[0]["n"] > 2000
    assert sql(home, f"SELECT count(*) AS n FROM events AT (VERSION => {first})") == [{"n": 2000}]
    # the catalog really is in PostgreSQL, and nothing of it on disk
    assert not (settings.lake_dir / "catalog.sqlite").exists()
    import psycopg

    with psycopg.connect(pg_server.conninfo(pg_database)) as con:
        tables = {r[0] for r in con.execute("SELECT tablename FROM pg_tables").fetchall()}
    assert "ducklake_snapshot" in tables


OPEN_LAKE = """\
import sys
from billing_batch.config import load_settings
from billing_batch.storage.lake import Lake
settings = load_settings(env={"BILLING_HOME": sys.argv[1]})
sys.stdin.readline()  # start together
con = Lake(settings).connect()
print(con.execute("SELECT count(*) FROM events").fetchall()[0][0], flush=True)
"""


def test_two_processes_creating_the_lake_at_once_both_succeed(
    tmp_path: Path, pg_server: PgServer, pg_database: str
) -> None:
    """A fresh catalog: both create it (schema, tables, options) at the same moment."""
    homes = [tmp_path / "a", tmp_path / "b"]
    for home in homes:  # two machines: two homes, one catalog, one data path
        pg_home(home, pg_server, pg_database, f'data_path = "{tmp_path / "data"}/"\n')
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_LAKE, str(home)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for home in homes
    ]
    outs = [p.communicate("go\n", timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    assert [o[0].strip() for o in outs] == ["0", "0"]


HOLD_LAKE_LOCK = """\
import sys
from billing_batch.config import load_settings
from billing_batch.storage.lake import Lake
with Lake(load_settings(env={"BILLING_HOME": sys.argv[1]})).write_lock():
    print("held", flush=True)
    sys.stdin.read()
"""


def test_the_lake_write_lock_is_an_advisory_lock_across_homes(
    tmp_path: Path, pg_server: PgServer, pg_database: str
) -> None:
    """Two homes (two machines: no shared locks folder) on one catalog: an ingest waits
    for the other home's lake writer, and says who holds the lock when it gives up."""
    a = tmp_path / "a"
    b = tmp_path / "b"
    pg_home(a, pg_server, pg_database)
    settings_b = pg_home(b, pg_server, pg_database)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LAKE_LOCK, str(a)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        from billing_batch._core.errors import LockedError
        from billing_batch.storage.lake import Lake

        with pytest.raises(LockedError, match=rf"another lake write .*pid {holder.pid}"):
            with Lake(settings_b).write_lock(timeout=0.5):
                pass
    finally:
        holder.communicate("")
    with Lake(settings_b).write_lock(timeout=5):  # released with its holder
        pass
