"""The state store: a SQLite file (WAL) next to the lake, ``$BILLING_HOME/state.sqlite``.

Why SQLite and not the DuckLake itself: invoices, numbering, payment attempts,
subscriptions and the webhook outbox need small, frequent, atomic read-modify-write
transactions with unique constraints (one live invoice per workspace and period, one
idempotency key per payment attempt, gap-free numbers). SQLite gives exactly that,
durably (WAL, ``synchronous=FULL``), with readers never blocked by the writer. The lake
stays append-mostly Parquet; :mod:`.mirror` copies every state table into it in one
DuckLake transaction so analysts see invoices next to usage.

Conventions: amounts are decimal strings in major units (exact), dates ISO strings,
times ISO 8601 UTC (``...Z``). Write transactions are ``BEGIN IMMEDIATE``: the writer
lock is taken up front, so a read-then-write inside one transaction is never stale.

**One SQLite build per file.** Only Python's ``sqlite3`` opens ``state.sqlite``; DuckDB
(whose sqlite_scanner carries its own SQLite build) never does: :mod:`.mirror` hands it
a private snapshot instead. Two SQLite builds in one process do not see each
other's locks (POSIX locks are per process, and each build keeps its own table of
them): a close by one checkpoints and deletes the WAL under the other's open
transaction, and drops the other's locks, so that another process (the nightly run) can
write beside a transaction still open here. That is how the API's background mirror,
attaching this file while request threads wrote it, produced "database disk image is
malformed" (``tests/storage/test_state_sqlite.py``). A connection is used by the thread
that opened it (``check_same_thread`` on; :func:`opened` per unit of work).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from .._core.errors import LakeError
from ..config.settings import SQL_DIR, Settings

SCHEMA_VERSION = 4

#: Migrations of an existing store, by the version they lead to
#: (``sql/state/migrations/<name>.sql``); ``schema.sql`` (idempotent) runs after them.
MIGRATIONS: dict[int, str] = {
    2: "002_billing_ledger",
    3: "003_credit_notes",
    4: "004_price_books_credits",
}


class StateConnection(sqlite3.Connection):
    """A connection to the state store that knows its settings (for the after-commit
    hook that keeps the lake's copy of the state up to date)."""

    settings: Settings


def connect(settings: Settings) -> StateConnection:
    """Open (and create or migrate) the state store. Autocommit mode: use
    :func:`transaction` for writes."""
    path = settings.state_path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = sqlite3.connect(path, timeout=30.0, isolation_level=None, factory=StateConnection)
        con.settings = settings
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
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on any exception). After the commit,
    the change is noted for the lake's copy of the state (:mod:`.mirror`): the one place
    the mirror is triggered from."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
    if isinstance(con, StateConnection) and con.total_changes:
        from .mirror import note_change

        note_change(con.settings)


@functools.cache
def _sql(name: str) -> str:
    path = SQL_DIR / "state" / f"{name}.sql"
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LakeError(f"missing SQL file {path}") from None


def query(
    con: sqlite3.Connection, name: str, params: Mapping[str, Any] | None = None
) -> sqlite3.Cursor:
    """Run ``sql/state/<name>.sql`` (e.g. ``invoicing/live_invoice``) with its named
    parameters (``:workspace_id``) bound from ``params``: the state's SQL lives in files,
    one query each, never in Python strings."""
    return con.execute(_sql(name), dict(params or {}))


def query_many(
    con: sqlite3.Connection, name: str, rows: Iterable[Mapping[str, Any]]
) -> sqlite3.Cursor:
    """``executemany`` of ``sql/state/<name>.sql`` over ``rows`` (named parameters)."""
    return con.executemany(_sql(name), [dict(r) for r in rows])


@contextmanager
def opened(settings: Settings) -> Iterator[sqlite3.Connection]:
    con = connect(settings)
    try:
        yield con
    finally:
        con.close()


__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "StateConnection",
    "connect",
    "opened",
    "query",
    "query_many",
    "transaction",
]
