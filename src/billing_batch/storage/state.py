"""The state store: a SQLite file (WAL) next to the lake, ``$BILLING_HOME/state.sqlite``.

Why SQLite and not the DuckLake itself: invoices, numbering, payment attempts,
subscriptions and the webhook outbox need small, frequent, atomic read-modify-write
transactions with unique constraints (one live invoice per workspace and period, one
idempotency key per payment attempt, gap-free numbers). SQLite gives exactly that,
durably (WAL, ``synchronous=FULL``), with readers never blocked by the writer. The lake
stays append-mostly Parquet; :func:`mirror_to_lake` copies every state table into it
in one DuckLake transaction so analysts see invoices next to usage.

Conventions: amounts are decimal strings in major units (exact), dates ISO strings,
times ISO 8601 UTC (``...Z``). Write transactions are ``BEGIN IMMEDIATE``: the writer
lock is taken up front, so a read-then-write inside one transaction is never stale.

**One SQLite build per file.** Only Python's ``sqlite3`` opens ``state.sqlite``; DuckDB
(whose sqlite_scanner carries its own SQLite build) never does: :func:`mirror_to_lake`
hands it a private snapshot instead. Two SQLite builds in one process do not see each
other's locks (POSIX locks are per process, and each build keeps its own table of
them): a close by one checkpoints and deletes the WAL under the other's open
transaction, and drops the other's locks, so that another process (the nightly run) can
write beside a transaction still open here. That is how the API's background mirror,
attaching this file while request threads wrote it, produced "database disk image is
malformed" (``tests/test_integrator_sqlite.py``). A connection is used by the thread
that opened it (``check_same_thread`` on; :func:`opened` per unit of work).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from .._core.errors import LakeError
from ..config.settings import SQL_DIR, Settings

SCHEMA_VERSION = 2

#: Migrations of an existing store, by the version they lead to
#: (``sql/state/migrations/<name>.sql``); ``schema.sql`` (idempotent) runs after them.
MIGRATIONS: dict[int, str] = {2: "002_billing_ledger"}

#: State tables mirrored into the lake, as ``sql/mirror/<name>.sql``.
MIRRORED: tuple[str, ...] = (
    "invoices",
    "invoice_lines",
    "invoice_status_history",
    "billing_ledger",
    "audit_runs",
    "audit_findings",
    "payment_attempts",
    "customers",
    "subscription_events",
    "subscriptions",
    "outbox",
    "webhook_endpoints",
    "webhook_deliveries",
    "webhook_attempts",
    "runs",
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def ts(value: datetime) -> str:
    """A UTC timestamp as stored: ISO 8601 with microseconds and 'Z'."""
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def connect(settings: Settings) -> sqlite3.Connection:
    """Open (and create or migrate) the state store. Autocommit mode: use
    :func:`transaction` for writes."""
    path = settings.state_path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA synchronous = FULL")
        con.execute("PRAGMA foreign_keys = ON")
        con.execute("PRAGMA busy_timeout = 30000")
        _migrate(con)
    except sqlite3.Error as exc:
        raise LakeError(f"cannot open the state store {path}: {exc}") from exc
    return con


def _migrate(con: sqlite3.Connection) -> None:
    version = con.execute("PRAGMA user_version").fetchone()[0]
    if version >= SCHEMA_VERSION:
        return
    with transaction(con):
        again = con.execute("PRAGMA user_version").fetchone()[0]
        if again < SCHEMA_VERSION:
            if again > 0:  # an existing store: its migrations first
                for target in range(again + 1, SCHEMA_VERSION + 1):
                    script = SQL_DIR / "state" / "migrations" / f"{MIGRATIONS[target]}.sql"
                    for statement in _statements(script.read_text()):
                        con.execute(statement)
            for statement in _statements((SQL_DIR / "state" / "schema.sql").read_text()):
                con.execute(statement)
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _statements(script: str) -> Iterator[str]:
    buf: list[str] = []
    for line in script.splitlines():
        if line.strip().startswith("--"):
            continue
        buf.append(line)
        if line.rstrip().endswith(";") and sqlite3.complete_statement("\n".join(buf)):
            yield "\n".join(buf)
            buf = []


@contextmanager
def transaction(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on any exception)."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


@contextmanager
def opened(settings: Settings) -> Iterator[sqlite3.Connection]:
    con = connect(settings)
    try:
        yield con
    finally:
        con.close()


#: Name prefix of the state snapshots :func:`mirror_to_lake` hands DuckDB (in tmp/).
_MIRROR_COPY = "state-mirror-"


def snapshot_copy(settings: Settings, target: Path) -> Path:
    """A consistent copy of the state store at ``target`` (SQLite's online backup, by
    this process's one SQLite build), in rollback-journal mode and closed: a private
    file that another SQLite build (DuckDB's) may then open alone."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        with opened(settings) as src:
            dst = sqlite3.connect(target, isolation_level=None)
            try:
                src.backup(dst)  # one step: one read transaction, a consistent snapshot
                dst.execute("PRAGMA journal_mode = DELETE")
            finally:
                dst.close()
    except sqlite3.Error as exc:
        target.unlink(missing_ok=True)
        raise LakeError(f"cannot snapshot the state store {settings.state_path}: {exc}") from exc
    return target


def mirror_to_lake(settings: Settings, *, reason: str = "mirror state") -> int:
    """Replace the lake's copies of the state tables, in one DuckLake transaction.

    Returns the snapshot id. Readers of the lake see either the previous copies or the
    new ones, never a mix. DuckDB reads a private snapshot of the state store
    (:func:`snapshot_copy`), never ``state.sqlite`` itself (see the module docstring).
    """
    from .lake import Lake, leading_comment, load_sql, sql_literal

    lake = Lake(settings)
    name = f"{_MIRROR_COPY}{os.getpid()}-{threading.get_ident()}.sqlite"
    with lake.write_lock():
        # Copies exist only while a mirror holds the write lock: any found now were left
        # by a mirror that was killed.
        for stale in settings.tmp_dir.glob(f"{_MIRROR_COPY}*.sqlite"):
            stale.unlink(missing_ok=True)
        copy = snapshot_copy(settings, settings.tmp_dir / name)
        try:
            con = lake.connect()
            try:
                # the process's lake instance is shared: the copy is attached for this
                # pass only (the write lock serializes passes)
                con.execute(f"ATTACH {sql_literal(str(copy))} AS state (TYPE sqlite, READ_ONLY)")
                try:
                    with lake.transaction(con, reason):
                        for table in MIRRORED:
                            text = load_sql(f"mirror/{table}")
                            con.execute(f"CREATE OR REPLACE TABLE {table} AS {text}")
                            con.execute(
                                f"COMMENT ON TABLE {table} IS {sql_literal(leading_comment(text))}"
                            )
                    return lake.current_snapshot(con)
                finally:
                    con.execute("USE lake")
                    con.execute("DETACH state")
            finally:
                con.close()
        finally:
            copy.unlink(missing_ok=True)
