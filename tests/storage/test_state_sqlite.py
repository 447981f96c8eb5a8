"""One SQLite build per file (issue 15: "500 lake_error ... database disk image is
malformed" on finalize while the API's background mirror ran).

DuckDB reaches SQLite files through sqlite_scanner, which carries its own SQLite build;
Python's ``sqlite3`` is another. POSIX locks do not exclude each other within one
process, and each build keeps its own table of them, so two builds on one file in one
process do not see each other: a close by one checkpoints and deletes the WAL under the
other's open transaction, and drops the other's locks, letting another process write
beside it. The API process had both on both files: ``lake._sqlite_wal`` opened and
closed the DuckLake catalog with Python's sqlite3 (on every writable connect, then on
every new lake instance) beside requests reading the lake through DuckDB, and
``store.mirror_to_lake`` attached ``state.sqlite`` to DuckDB beside request threads
writing it with Python's sqlite3.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from billing_batch.config.settings import Settings, load_settings
from billing_batch.storage import mirror
from billing_batch.storage import state as store
from billing_batch.storage.lake import Lake

_TRY_WRITE = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], timeout=0.5, isolation_level=None)
try:
    con.execute("BEGIN IMMEDIATE")
    print("got the write lock")
except sqlite3.OperationalError as exc:
    print("blocked:", exc)
"""


def _other_process_can_write(path: Path) -> bool:
    out = subprocess.run(
        [sys.executable, "-c", _TRY_WRITE, str(path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.startswith("got the write lock")


def test_the_lake_catalog_survives_another_instance_beside_an_open_lake_transaction(
    settings: Settings,
) -> None:
    """A request's lake connection inside a transaction (DuckDB's SQLite holds a read
    snapshot of the catalog), a writer committing beside it, then another lake instance
    opened in the same process (other settings: another memory limit, or one evicted
    from the instance cache and opened again). Before: opening an instance opened and
    closed the catalog with Python's sqlite3 (``_sqlite_wal``), which checkpointed and
    deleted the WAL under DuckDB's snapshot ("disk I/O error" on the next attach;
    "database disk image is malformed" mid-query)."""
    from billing_batch.storage.lake import close_connections

    close_connections()
    lake = Lake(settings)
    lake.connect().close()
    catalog = settings.lake_dir / "catalog.sqlite"
    holder = lake.connect()
    try:
        holder.execute("BEGIN TRANSACTION")
        assert holder.execute("SELECT count(*) FROM rollup_log").fetchone() == (0,)
        writer = lake.connect()
        try:
            for i in range(150):
                writer.execute(
                    "INSERT INTO rollup_log VALUES (?, [DATE '2024-01-01'], now(), ?)",
                    [f"i{i}", i],
                )
        finally:
            writer.close()
        wal = Path(f"{catalog}-wal")
        assert wal.exists()
        size = wal.stat().st_size
        other = settings.model_copy(
            update={"lake": settings.lake.model_copy(update={"memory_limit": "300MB"})}
        )
        second = Lake(other).connect()  # a second instance, in this same process
        try:
            assert wal.exists() and wal.stat().st_size >= size  # nobody checkpointed under us
            assert second.execute("SELECT count(*) FROM rollup_log").fetchone() == (150,)
        finally:
            second.close()
        # the snapshot still reads as it was
        assert holder.execute("SELECT count(*) FROM rollup_log").fetchone() == (0,)
        holder.execute("COMMIT")
        assert holder.execute("SELECT count(*) FROM rollup_log").fetchone() == (150,)
    finally:
        holder.close()
    close_connections()  # every DuckDB handle on the catalog closed: Python may look now
    with sqlite3.connect(catalog) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_new_catalog_is_created_in_wal_mode_and_an_existing_one_never_opened(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    real = sqlite3.connect

    def spy(database: object, *args: object, **kwargs: object) -> sqlite3.Connection:
        opened.append(str(database))
        return real(database, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite3, "connect", spy)
    lake = Lake(settings)
    lake.connect().close()
    catalog = settings.lake_dir / "catalog.sqlite"
    assert catalog.read_bytes()[18:20] == b"\x02\x02"  # WAL, in the file header
    assert str(catalog) not in opened  # built under a temporary name, linked into place
    opened.clear()
    for _ in range(3):
        lake.connect().close()
        lake.connect(read_only=True).close()
    assert [p for p in opened if "catalog" in p] == []
    assert [p.name for p in settings.lake_dir.iterdir() if p.name.endswith(".tmp")] == []


def test_the_mirror_never_drops_the_state_stores_locks(settings: Settings) -> None:
    """A request thread's transaction on state.sqlite stays exclusive while the API's
    background mirror copies the state into the lake. Before: DuckDB attached
    state.sqlite, and its close dropped this process's locks: another process (the
    nightly run) got the write lock beside the open transaction."""
    with store.opened(settings) as con:
        pass
    Lake(settings).connect().close()
    con = store.connect(settings)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute(
            "INSERT INTO runs (run_id, run_date, started_at, finished_at, status, summary) "
            "VALUES ('run_open', '2024-01-01', '2024-01-01T00:00:00.000000Z', NULL, "
            "'running', '{}')"
        )
        assert not _other_process_can_write(settings.state_path)
        mirror.mirror_to_lake(settings, reason="beside an open transaction")
        assert not _other_process_can_write(settings.state_path)  # still ours
        con.execute("COMMIT")
    finally:
        con.close()
    mirror.mirror_to_lake(settings, reason="after the commit")
    lake = Lake(settings).connect(read_only=True)
    try:
        assert lake.execute("SELECT run_id FROM runs").fetchall() == [("run_open",)]
    finally:
        lake.close()
    assert list(settings.tmp_dir.glob("state-mirror-*")) == []  # the private copy is gone
    with sqlite3.connect(settings.state_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_killed_mirrors_copy_is_removed(settings: Settings) -> None:
    settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    stale = settings.tmp_dir / "state-mirror-999999-1.sqlite"
    stale.write_bytes(b"left by a killed mirror")
    mirror.mirror_to_lake(settings)
    assert not stale.exists()


_WRITER = r"""
import json, sys, time
from datetime import date
from pathlib import Path
from billing_batch.config import load_settings
from billing_batch.usage.ingest import ingest
from billing_batch.usage.rollup import refresh_rollup
from billing_batch.invoicing import service as invoices
from billing_batch.storage import mirror
home, seconds = Path(sys.argv[1]), float(sys.argv[2])
settings = load_settings(home=home, env={"BILLING_LAKE_MEMORY_LIMIT": "256MB"})
end, n, errors = time.time() + seconds, 0, []
while time.time() < end or n < 2:
    n += 1
    try:
        f = home / "landing" / f"w{n}.jsonl"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps({"id": f"x{n}", "workspaceId": f"ws_{n % 20}",
            "metric": "contracts", "quantity": 1, "timestamp": "2024-02-10T00:00:00Z"}) + "\n")
        ingest(settings, [f])
        refresh_rollup(settings)
        invoices.create_invoices(settings, [(f"wx_{n}", date(2024, 2, 1), date(2024, 2, 29))])
        mirror.mirror_to_lake(settings, reason=f"writer {n}")
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
print(json.dumps({"loops": n, "errors": errors}))
"""


def _shared_databases(settings: Settings) -> list[str]:
    con = Lake(settings).connect(read_only=True)
    try:
        rows = con.execute("SELECT database_name FROM duckdb_databases() ORDER BY 1").fetchall()
    finally:
        con.close()
    return [r[0] for r in rows]


def test_the_shared_instance_is_never_attached_to_or_detached_from(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB 1.4 segfaults when a database is detached while another thread's query
    walks the catalogs (``duckdb_tables()``): the API's background mirror attached and
    detached the state copy on the process's shared instance beside request threads
    (about one run in two of the test below crashed). The mirror and time travel use a
    DuckDB of their own; the shared instance keeps only the lake."""
    from billing_batch.storage import sqlfiles

    before = _shared_databases(settings)
    assert "lake" in before and "state" not in before
    during: list[list[str]] = []
    real_load_sql = sqlfiles.load_sql

    def watching_load_sql(name: str) -> str:
        if name.startswith("mirror/"):  # inside the mirror's pass, its copy attached
            during.append(_shared_databases(settings))
        return real_load_sql(name)

    monkeypatch.setattr(sqlfiles, "load_sql", watching_load_sql)
    snap = mirror.mirror_to_lake(settings, reason="first")
    monkeypatch.setattr(sqlfiles, "load_sql", real_load_sql)
    assert len(during) == len(mirror.MIRRORED) and all(d == before for d in during)
    assert _shared_databases(settings) == before
    old = Lake(settings).connect(read_only=True, snapshot=snap)
    try:
        assert old.execute("SELECT count(*) FROM runs").fetchone() == (0,)
        assert [r[0] for r in old.execute("SELECT current_database()").fetchall()] == ["lake"]
    finally:
        old.close()
    mirror.mirror_to_lake(settings, reason="second")
    assert _shared_databases(settings) == before


@pytest.mark.slow
def test_concurrent_api_requests_and_a_nightly_writer(tmp_path: Path) -> None:
    """The schemathesis situation, compressed: the HTTP API (uvicorn, its thread pool,
    its background mirror) under concurrent requests that read the lake and write the
    state store, while another process ingests, rates, writes state and mirrors. No
    5xx, and both SQLite files pass integrity_check. (On the code before the fix, with a
    lake connection per call, this gave five or six 500 lake_error "disk I/O error" in
    30-60 s on a loaded 2-core box; since lake instances are shared per process the
    windows are rarer, and the deterministic tests above are the ones that catch it.)"""
    import hashlib

    import httpx

    from billing_batch.usage.ingest import ingest
    from billing_batch.usage.rollup import refresh_rollup

    home = tmp_path / "home"
    home.mkdir()
    admin = "bbk_concurrency_admin"
    digest = hashlib.sha256(admin.encode()).hexdigest()
    (home / "billing.toml").write_text(f'[[api.keys]]\nhash = "sha256:{digest}"\n')
    settings = load_settings(home=home, env={"BILLING_LAKE_MEMORY_LIMIT": "256MB"})
    lines = [
        json.dumps(
            {
                "id": f"e{w}-{m}",
                "workspaceId": f"ws_{w}",
                "metric": "api_calls",
                "quantity": 1000 + w,
                "timestamp": f"2024-0{m}-15T10:00:00Z",
            }
        )
        for w in range(20)
        for m in (1, 2, 3)
    ]
    seed = tmp_path / "seed.jsonl"
    seed.write_text("\n".join(lines) + "\n")
    ingest(settings, [seed])
    refresh_rollup(settings)

    seconds = float(os.environ.get("BILLING_TEST_CONCURRENCY_SECONDS", "30"))
    env = dict(os.environ, BILLING_HOME=str(home), BILLING_LAKE_MEMORY_LIMIT="256MB")
    log = (tmp_path / "api.log").open("w")
    with socket_port() as port:
        pass
    api = subprocess.Popen(
        [sys.executable, "-m", "billing_batch", "serve-api", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while True:
            try:
                httpx.get(base + "/openapi.json", timeout=5)
                break
            except httpx.HTTPError:
                assert api.poll() is None and time.time() < deadline, "the API did not start"
                time.sleep(0.3)
        writer = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(home), str(seconds)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        stop = time.time() + seconds
        failures: list[str] = []
        done = [0]
        lock = threading.Lock()

        def client(k: int) -> None:
            headers = {"Authorization": f"Bearer {admin}"}
            with httpx.Client(base_url=base, headers=headers, timeout=300) as c:
                i = 0
                while time.time() < stop:
                    i += 1
                    ws = f"ws_{(k * 7 + i) % 20}"
                    m = 1 + i % 3
                    period = {"start": f"2024-0{m}-01", "end": f"2024-0{m}-28"}
                    answers = [
                        c.post("/v1/billing/invoices", json={"workspaceId": ws, "period": period}),
                        c.get(
                            "/v1/billing/usage",
                            params={
                                "workspaceId": ws,
                                "startDate": "2024-01-01",
                                "endDate": "2024-03-31",
                            },
                        ),
                        c.get("/v1/billing/invoices", params={"workspaceId": ws}),
                    ]
                    with lock:
                        done[0] += len(answers)
                        failures.extend(
                            f"{a.request.method} {a.request.url.path}: {a.status_code} {a.text}"
                            for a in answers
                            if a.status_code >= 500
                        )

        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out, err = writer.communicate(timeout=900)
    finally:
        api.terminate()
        api.wait(60)
        log.close()
    report = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"err": err}
    assert failures == [], failures[:5]
    assert report.get("errors") == [], report
    assert done[0] > 0 and report["loops"] >= 2
    assert "Traceback" not in (tmp_path / "api.log").read_text()
    for path in (settings.state_path, settings.lake_dir / "catalog.sqlite"):
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",), path
    # and the lake reads
    lake = Lake(settings).connect(read_only=True)
    try:
        assert lake.execute("SELECT count(*) FROM invoices").fetchone()[0] > 0
    finally:
        lake.close()


class socket_port:
    """A free loopback port (bound, then released for the server to take)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
