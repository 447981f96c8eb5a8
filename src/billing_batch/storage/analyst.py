"""The analysts' session: the lake, read-only, and nothing else.

``billing_batch.analyst_connection()`` opens, in Python, the same sandbox as
``billing-batch sql``: the lake attached read-only (:func:`analyst_session_sql`: file
access limited to the lake's data, no external access, configuration locked) and every
query checked by ``sqlguard.check_read_only_sql`` (a SELECT that reads the lake: no
``sqlite_scan``, ``read_csv``, ``COPY``, ``ATTACH``, ``SET``...). Results come back
whole (``.pl()``, ``.df()``, ``.arrow()``, ``.fetchall()``), never as a live DuckDB
relation through which other SQL could be run.

It is a sandbox for queries, not for the Python process around it: code in that
process can open DuckDB (or any file) with the account's own rights.

``analyst_query()`` runs one checked query for ``billing-batch sql`` (rows fetched, a
limit applied). ``analyst_init_sql()`` is the same session as a SQL file for any DuckDB
1.4 session (``billing-batch analyst-init``). Such a raw session can still call what DuckDB's
settings do not govern (the sqlite extension's ``sqlite_scan``, ``sqlite_attach``, and
``ATTACH ... (TYPE sqlite)``): see docs/analysts.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb

from .._core.errors import InputError, LakeError
from ..config.settings import Settings, load_settings
from .lake import extension_directory, required_extensions
from .mirror import state_view_sql
from .s3 import create_duckdb_secret, is_remote
from .sqlfiles import run_query, sql_literal
from .sqlguard import check_read_only_sql


def analyst_session_sql(settings: Settings, *, alias: str = "billing") -> list[str]:
    """The statements that make a fresh DuckDB 1.4 session an analyst's view of the lake:
    the extensions from the ``duckdb-ext-*`` wheels (nothing downloaded), the lake
    attached read-only as ``alias`` and selected, UTC, then file access limited to the
    lake's data path, no external access (no other file, COPY TO, ATTACH, INSTALL/LOAD)
    and the configuration locked. ``billing-batch analyst-init`` prints them for any
    DuckDB session; :func:`open_analyst_session` runs them.

    What they cannot close: an extension's own file access (``sqlite_scan``,
    ``sqlite_attach``, ``ATTACH ... (TYPE sqlite)``: see ``sqlguard``), which
    :func:`check_read_only_sql` refuses."""
    s = settings
    data = s.data_path if s.data_path.endswith("/") else s.data_path + "/"
    statements = [
        f"SET extension_directory = {sql_literal(extension_directory())}",
        "SET autoinstall_known_extensions = false",
        "SET autoload_known_extensions = false",
    ]
    exts = required_extensions(s.catalog_url, s.data_path)
    if s.state_on_postgres and "postgres_scanner" not in exts:
        exts.append("postgres_scanner")
    statements += [f"LOAD {ext}" for ext in exts]
    statements += [
        f"ATTACH {sql_literal('ducklake:' + s.catalog_url)} AS {alias} (READ_ONLY)",
        f"USE {alias}",
        "SET TimeZone = 'UTC'",
        # the state on PostgreSQL: read in place (attached read-only, one view per table)
        *state_view_sql(s),
        f"SET allowed_directories = [{sql_literal(data)}]",
        "SET enable_external_access = false",
        "SET lock_configuration = true",
    ]
    return statements


def open_analyst_session(settings: Settings) -> duckdb.DuckDBPyConnection:
    """A sandboxed read-only connection for ad-hoc queries (``billing-batch sql``):
    :func:`analyst_session_sql` run on a fresh in-memory DuckDB. Run every query
    through :func:`check_read_only_sql` (:func:`analyst_query` does): the settings
    alone do not close the extensions' own file access (see ``sqlguard``)."""
    s = settings
    catalog_path = s.lake_dir / "catalog.sqlite"
    if s.catalog_url.startswith("sqlite:") and not catalog_path.exists():
        raise LakeError(f"no lake yet at {s.lake_dir}: ingest something first")
    try:
        con = duckdb.connect(":memory:")
    except duckdb.Error as exc:
        raise LakeError(f"cannot start DuckDB: {exc}") from exc
    try:
        for statement in analyst_session_sql(s):
            if is_remote(s.data_path) and statement.startswith("ATTACH"):
                create_duckdb_secret(con, s.s3)  # in memory, never printed
            con.execute(statement)
    except duckdb.Error as exc:
        con.close()
        raise LakeError(f"cannot open the lake read-only: {exc}") from exc
    return con


class AnalystResult:
    """One checked query's result, fetched on demand (each call runs the query)."""

    def __init__(self, relation: duckdb.DuckDBPyRelation) -> None:
        self._relation = relation

    @property
    def columns(self) -> list[str]:
        return list(self._relation.columns)

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self._run(lambda r: r.fetchall())
        return rows

    def fetchone(self) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._run(lambda r: r.fetchone())
        return row

    def pl(self) -> Any:
        """A polars DataFrame (needs ``polars`` and ``pyarrow``)."""
        return self._run(lambda r: r.pl())

    def df(self) -> Any:
        """A pandas DataFrame (needs ``pandas``)."""
        return self._run(lambda r: r.df())

    def arrow(self) -> Any:
        """A pyarrow Table (needs ``pyarrow``)."""
        return self._run(lambda r: r.to_arrow_table())

    def _run(self, fetch: Callable[[duckdb.DuckDBPyRelation], Any]) -> Any:
        try:
            return fetch(self._relation)
        except duckdb.Error as exc:
            raise InputError(f"query failed: {exc}") from exc


class AnalystConnection:
    """The sandboxed, read-only lake for one settings; a context manager."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._con = open_analyst_session(settings)

    def sql(self, query: str) -> AnalystResult:
        """Check ``query`` (InputError if refused), then run it."""
        check_read_only_sql(self._con, query)
        try:
            relation = self._con.sql(query)
        except duckdb.Error as exc:
            raise InputError(f"query failed: {exc}") from exc
        if relation is None:  # pragma: no cover - a checked SELECT always has a result
            raise InputError("the query returned no result")
        return AnalystResult(relation)

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> AnalystConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def analyst_connection(
    home: str | Path | None = None, config: str | Path | None = None
) -> AnalystConnection:
    """The lake of ``home`` (default: ``$BILLING_HOME``, else ``./billing-data``),
    read-only and sandboxed like ``billing-batch sql``."""
    return AnalystConnection(load_settings(config, home=home))


def analyst_init_sql(settings: Settings) -> str:
    """The analyst session as a SQL file for any DuckDB 1.4 session."""
    header = [
        f"-- billing-batch analyst session: the lake of {settings.home}, read-only.",
        "-- Run it first in a DuckDB 1.4 session (DuckDB CLI: .read FILE, or duckdb -init FILE).",
        "-- Afterwards: no file outside the lake's data, no COPY TO, ATTACH, INSTALL/LOAD or",
        "-- SET. Not closed by DuckDB's settings: sqlite_scan, sqlite_attach and ATTACH ...",
        "-- (TYPE sqlite) read any SQLite file this account can read (docs/analysts.md);",
        "-- `billing-batch sql` and billing_batch.analyst_connection() refuse them.",
    ]
    return "\n".join(header + [f"{s};" for s in analyst_session_sql(settings)]) + "\n"


# --- analyst queries ---------------------------------------------------------------------
@dataclass
class QueryResult:
    """The outcome of one analyst query."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    #: True when ``limit`` cut the result short.
    truncated: bool = False


_USER_ERRORS = (
    duckdb.ProgrammingError,
    duckdb.DataError,
    duckdb.NotSupportedError,
    duckdb.PermissionException,
)


def analyst_query(
    con: duckdb.DuckDBPyConnection, sql: str, *, limit: int | None = None
) -> QueryResult:
    """Run one read-only query on an analyst connection (:func:`open_analyst_session`).

    Anything but SELECT/EXPLAIN is refused (InputError); so is a query DuckDB rejects
    (syntax, unknown table, a file outside the lake). ``limit`` caps the rows fetched.
    """
    check_read_only_sql(con, sql)
    try:
        cursor = run_query(con, sql)
        columns = [d[0] for d in (cursor.description or [])]
        if limit is None:
            rows = cursor.fetchall()
            truncated = False
        else:
            rows = cursor.fetchmany(limit + 1)
            truncated = len(rows) > limit
            rows = rows[:limit]
            # release the rest of the result and, with it, the read transaction it holds
            # on the catalog (see usage.rollup._current_snapshot)
            run_query(con, "SELECT 1").fetchall()
    except LakeError as exc:
        if isinstance(exc.__cause__, _USER_ERRORS):
            raise InputError(f"query failed: {exc}") from exc
        raise
    except _USER_ERRORS as exc:  # raised while fetching
        raise InputError(f"query failed: {exc}") from exc
    except duckdb.Error as exc:
        raise LakeError(f"query failed: {exc}") from exc
    return QueryResult(columns=columns, rows=rows, truncated=truncated)


__all__ = [
    "open_analyst_session",
    "AnalystConnection",
    "AnalystResult",
    "QueryResult",
    "analyst_connection",
    "analyst_init_sql",
    "analyst_query",
]
