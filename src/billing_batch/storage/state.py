"""The state store: SQLite by default (``$BILLING_HOME/state.sqlite``, WAL), PostgreSQL
by configuration (``[state] url``); one schema, one set of queries, through SQLAlchemy
Core.

Why not the DuckLake itself: invoices, numbering, payment attempts, subscriptions and
the webhook outbox need small, frequent, atomic read-modify-write transactions with
unique constraints (one live invoice per workspace and period, one idempotency key per
payment attempt, gap-free numbers). The lake stays append-mostly Parquet; :mod:`.mirror`
puts the state beside it for analysts.

**The same semantics on both engines.** :func:`transaction` takes the state's write
lock up front: ``BEGIN IMMEDIATE`` on SQLite; on PostgreSQL ``BEGIN`` (READ COMMITTED)
then a transaction-scoped advisory lock (:data:`WRITE_LOCK`), released by the commit or
the rollback. Writing transactions therefore run one at a time on both, so every
read-then-write inside one (numbering, one live invoice per period, the next payment
attempt) is never stale, and readers are never blocked (WAL; MVCC). Unique constraints
and the outbox written in the same transaction hold the same way on both.

**Queries** live in ``sql/state/<domain>/<name>.sql``, one statement each, portable
(``ON CONFLICT``, ``RETURNING``, ``CAST(:x AS TEXT) IS NULL``), run with
:func:`query` through SQLAlchemy's ``text()`` with named parameters. Rows are
:class:`Row`: ``row["column"]``, ``row[0]`` and tuple unpacking. Database errors are
the driver's own (``sqlite3.Error``, ``psycopg.Error``): catch :data:`DB_ERRORS`.

**Schema and migrations**: Alembic revisions (``migrations/``), run at open
(:func:`connect`) under the write lock; see :mod:`.schema`.

**One SQLite build per file.** Only Python's ``sqlite3`` (SQLAlchemy's ``pysqlite``)
opens ``state.sqlite``; DuckDB (whose sqlite_scanner carries its own SQLite build) never
does: :mod:`.mirror` hands it a private snapshot instead. Two SQLite builds in one
process do not see each other's locks (``tests/storage/test_state_sqlite.py``). A
connection is used by the thread that opened it (:func:`opened` per unit of work).
"""

from __future__ import annotations

import functools
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection as SAConnection
from sqlalchemy.engine import CursorResult, Engine
from sqlalchemy.pool import NullPool

from .._core.errors import LakeError
from ..config.settings import SQL_DIR, Settings
from .locking import advisory_key

SCHEMA_VERSION = 5

#: Migrations of an existing store, by the version they lead to
#: (``sql/state/migrations/<name>.sql``), each run by the Alembic revision of that number
#: (``migrations/versions/NNNN_<name>.py``); ``schema.sql`` is revision 1.
MIGRATIONS: dict[int, str] = {
    2: "002_billing_ledger",
    3: "003_credit_notes",
    4: "004_price_books_credits",
    5: "005_invoice_workspace_index",
}

#: The PostgreSQL advisory lock every writing transaction takes first (its key).
WRITE_LOCK = advisory_key("state-write")


def _db_errors() -> tuple[type[Exception], ...]:
    errors: list[type[Exception]] = [sqlite3.Error]
    try:
        import psycopg

        errors.append(psycopg.Error)
    except ImportError:  # the scale extra is not installed: SQLite only
        pass
    return tuple(errors)


#: The drivers' error base classes: ``except state.DB_ERRORS``.
DB_ERRORS: tuple[type[Exception], ...] = _db_errors()


_OPEN_ERRORS: tuple[type[Exception], ...] = (sa.exc.SQLAlchemyError, *DB_ERRORS)


class Row(tuple[Any, ...]):
    """One result row: a tuple (``a, b = row``, ``row[0]``) that also answers
    ``row["column"]`` and ``keys()`` (so ``dict(row)`` maps columns to values)."""

    _index: Mapping[str, int]

    def __new__(cls, values: Iterable[Any], index: Mapping[str, int]) -> Row:
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                return tuple.__getitem__(self, self._index[key])
            except KeyError:
                raise IndexError(f"no such column: {key}") from None
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


class Cursor:
    """The result of :func:`query`: ``fetchone()``, ``fetchall()``, iteration and
    ``rowcount`` (rows changed by an INSERT/UPDATE/DELETE)."""

    def __init__(self, result: CursorResult[Any]) -> None:
        self._result = result
        self.rowcount: int = result.rowcount
        self._index: dict[str, int] | None = None
        if result.returns_rows:
            self._index = {name: i for i, name in enumerate(result.keys())}

    def _row(self, raw: Any) -> Row:
        assert self._index is not None
        return Row(raw, self._index)

    def fetchone(self) -> Any:
        """The next :class:`Row`, or None (typed ``Any`` as ``sqlite3``'s is)."""
        if self._index is None:
            return None
        raw = self._result.fetchone()
        return None if raw is None else self._row(raw)

    def fetchall(self) -> list[Row]:
        if self._index is None:
            return []
        return [self._row(raw) for raw in self._result.fetchall()]

    def __iter__(self) -> Iterator[Row]:
        return iter(self.fetchall())

    def close(self) -> None:
        self._result.close()


_QMARK = re.compile(r"'(?:[^']|'')*'|\?")


def _named(sql: str, params: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    """``?`` placeholders (outside string literals) as named ones ``:_p0``, ``:_p1``..."""
    counter = iter(range(len(params) + 1))

    def repl(m: re.Match[str]) -> str:
        return m.group(0) if m.group(0) != "?" else f":_p{next(counter)}"

    text = _QMARK.sub(repl, sql)
    return text, {f"_p{i}": v for i, v in enumerate(params)}


class StateConnection:
    """A connection to the state store (one SQLAlchemy connection, autocommit unless
    inside :func:`transaction`) that knows its settings (for the after-commit hook that
    keeps the lake's copy of the state up to date)."""

    def __init__(self, settings: Settings, sa_con: SAConnection) -> None:
        self.settings = settings
        self.sa = sa_con
        self.dialect: str = sa_con.dialect.name
        self.in_transaction = False

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def execute(
        self, sql: str | sa.TextClause, params: Mapping[str, Any] | Sequence[Any] | None = None
    ) -> Cursor:
        """Run one statement with named (``:name``) or, for ad hoc SQL, ``?`` parameters."""
        bound: Mapping[str, Any] | None
        if isinstance(params, Mapping) or params is None:
            bound = params
            clause = sql if isinstance(sql, sa.TextClause) else sa.text(sql)
        else:
            assert isinstance(sql, str)
            text, bound = _named(sql, params)
            clause = sa.text(text)
        return Cursor(self._run(clause, dict(bound or {})))

    def executemany(self, sql: str | sa.TextClause, rows: Sequence[Mapping[str, Any]]) -> Cursor:
        clause = sql if isinstance(sql, sa.TextClause) else sa.text(sql)
        if not rows:
            return Cursor(self._run(sa.text("SELECT 1 WHERE 1 = 0"), {}))
        return Cursor(self._run(clause, [dict(r) for r in rows]))

    def _run(self, clause: sa.TextClause, params: Any) -> CursorResult[Any]:
        try:
            return self.sa.execute(clause, params)
        except sa.exc.DBAPIError as exc:
            if exc.orig is not None:  # the driver's own error, as callers know it
                raise exc.orig from None
            raise

    def driver_connection(self) -> Any:
        """The driver's connection (``sqlite3.Connection`` or ``psycopg.Connection``)."""
        return self.sa.connection.driver_connection

    def close(self) -> None:
        self.sa.close()


#: The type of a state connection, as the other packages annotate it.
Connection = StateConnection

_engines: dict[tuple[int, str], Engine] = {}
_engines_guard = threading.Lock()


def state_url(settings: Settings) -> str:
    """The SQLAlchemy URL of the state store (``[state] url``, else the SQLite file)."""
    if settings.state.url:
        url = settings.state.url
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        return url
    return f"sqlite:///{settings.state_path}"


def _engine(settings: Settings) -> Engine:
    """One engine per URL and process (a forked child makes its own)."""
    url = state_url(settings)
    key = (os.getpid(), url)
    with _engines_guard:
        engine = _engines.get(key)
        if engine is None:
            engine = _make_engine(url)
            _engines[key] = engine
    return engine


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url,
            poolclass=NullPool,  # one connection per opened(), closed with it
            isolation_level="AUTOCOMMIT",
            connect_args={"timeout": 30.0, "check_same_thread": True},
        )

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_con: Any, _record: Any) -> None:
            for pragma in (
                "journal_mode = WAL",
                "synchronous = FULL",
                "foreign_keys = ON",
                "busy_timeout = 30000",
            ):
                dbapi_con.execute(f"PRAGMA {pragma}")

        return engine
    return sa.create_engine(
        url,
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 60, "application_name": "billing-batch"},
    )


def _describe(settings: Settings) -> str:
    """The store, for error messages: never the password."""
    if not settings.state.url:
        return str(settings.state_path)
    return sa.engine.make_url(state_url(settings)).render_as_string(hide_password=True)


def connect(settings: Settings) -> StateConnection:
    """Open (and create or migrate) the state store. Autocommit mode: use
    :func:`transaction` for writes."""
    if not settings.state.url:
        settings.state_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = StateConnection(settings, _engine(settings).connect())
    except _OPEN_ERRORS as exc:
        raise LakeError(f"cannot open the state store {_describe(settings)}: {exc}") from exc
    try:
        from .schema import upgrade

        upgrade(con)
    except DB_ERRORS as exc:
        con.close()
        raise LakeError(f"cannot open the state store {_describe(settings)}: {exc}") from exc
    except BaseException:
        con.close()
        raise
    return con


def _changed(con: StateConnection) -> bool:
    if con.is_postgres:
        row = con.execute("SELECT pg_current_xact_id_if_assigned() IS NOT NULL").fetchone()
        return bool(row and row[0])
    return bool(con.driver_connection().total_changes)


@contextmanager
def transaction(con: StateConnection) -> Iterator[StateConnection]:
    """BEGIN with the write lock up front … COMMIT (ROLLBACK on any exception). After the
    commit, the change is noted for the lake's copy of the state (:mod:`.mirror`): the
    one place the mirror is triggered from."""
    if con.is_postgres:
        con.execute("BEGIN")
        try:
            con.execute("SELECT pg_advisory_xact_lock(:k)", {"k": WRITE_LOCK})
        except BaseException:
            con.execute("ROLLBACK")
            raise
    else:
        con.execute("BEGIN IMMEDIATE")
    con.in_transaction = True
    try:
        yield con
        changed = _changed(con)
    except BaseException:
        con.in_transaction = False
        con.execute("ROLLBACK")
        raise
    con.in_transaction = False
    con.execute("COMMIT")
    if changed:
        from .mirror import note_change

        note_change(con.settings)


_COMMENT = re.compile(r"'(?:[^']|'')*'|--[^\n]*")


def strip_comments(sql: str) -> str:
    """``sql`` without its ``--`` comments (string literals kept): a ``:name`` in a
    comment is then never taken for a parameter."""
    return _COMMENT.sub(lambda m: m.group(0) if m.group(0).startswith("'") else "", sql)


@functools.cache
def _sql(name: str) -> sa.TextClause:
    path = SQL_DIR / "state" / f"{name}.sql"
    try:
        return sa.text(strip_comments(path.read_text(encoding="utf-8")).strip())
    except FileNotFoundError:
        raise LakeError(f"missing SQL file {path}") from None


def query(con: StateConnection, name: str, params: Mapping[str, Any] | None = None) -> Cursor:
    """Run ``sql/state/<name>.sql`` (e.g. ``invoicing/live_invoice``) with its named
    parameters (``:workspace_id``) bound from ``params``: the state's SQL lives in files,
    one query each, never in Python strings."""
    return con.execute(_sql(name), dict(params or {}))


def query_many(con: StateConnection, name: str, rows: Iterable[Mapping[str, Any]]) -> Cursor:
    """``executemany`` of ``sql/state/<name>.sql`` over ``rows`` (named parameters)."""
    return con.executemany(_sql(name), [dict(r) for r in rows])


@contextmanager
def opened(settings: Settings) -> Iterator[StateConnection]:
    con = connect(settings)
    try:
        yield con
    finally:
        con.close()


__all__ = [
    "DB_ERRORS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "WRITE_LOCK",
    "Connection",
    "Cursor",
    "Row",
    "StateConnection",
    "connect",
    "opened",
    "strip_comments",
    "query",
    "query_many",
    "state_url",
    "transaction",
]
