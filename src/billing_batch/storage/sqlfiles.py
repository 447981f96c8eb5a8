"""The SQL files under ``sql/``: loading them (with ``-- include:`` lines), binding their
named parameters, and running them on a DuckDB connection with DuckDB errors mapped into
:class:`~billing_batch._core.errors.LakeError`."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb

from .._core.errors import LakeError
from ..config.settings import SQL_DIR


def sql_literal(value: str) -> str:
    """Quote an operator-configured value (a path) for the few statements that cannot
    take bound parameters (ATTACH, SET); never used for user input."""
    return "'" + value.replace("'", "''") + "'"


#: A line ``-- include: <name>`` in a SQL file stands for the text of ``sql/<name>.sql``.
_INCLUDE = re.compile(r"^[ \t]*-- include: ([\w/]+)[ \t]*$", re.MULTILINE)


@functools.cache
def load_sql(name: str) -> str:
    """The text of ``sql/<name>.sql``, each ``-- include: <other>`` line replaced by the
    text of ``sql/<other>.sql``: a query that several files share has one home (the
    gauge's, ``gauge_quantities``, in ``usage_period`` and the ``usage_monthly`` view)."""
    path = SQL_DIR / f"{name}.sql"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LakeError(f"missing SQL file {path}") from None
    return _INCLUDE.sub(lambda m: load_sql(m.group(1)).rstrip("\n"), text)


def run_query(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: Sequence[Any] | Mapping[str, Any] | None = None,
) -> duckdb.DuckDBPyConnection:
    """Execute with bound parameters, mapping DuckDB errors into LakeError."""
    try:
        return con.execute(sql, params) if params is not None else con.execute(sql)
    except duckdb.Error as exc:
        raise LakeError(str(exc)) from exc


_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def run_sql(
    con: duckdb.DuckDBPyConnection,
    name: str,
    params: Mapping[str, Any] | None = None,
    *,
    prefix: str = "",
) -> duckdb.DuckDBPyConnection:
    """Run ``sql/<name>.sql`` (after ``prefix``, e.g. ``CREATE TEMP TABLE x AS``), binding
    the named parameters the file uses (``$start``...) from ``params``."""
    text = prefix + load_sql(name)
    wanted = set(_PARAM.findall(text))
    given = dict(params or {})
    missing = wanted - given.keys()
    if missing:
        raise LakeError(f"sql/{name}.sql needs parameters {sorted(missing)}")
    return run_query(con, text, {k: given[k] for k in wanted} if wanted else None)


def leading_comment(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if line.startswith("--"):
            lines.append(line[2:].strip())
        elif lines:
            break
    return " ".join(x for x in lines if x)


__all__ = ["leading_comment", "load_sql", "run_query", "run_sql", "sql_literal"]
