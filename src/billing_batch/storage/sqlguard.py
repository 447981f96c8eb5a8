"""What an analyst's query may call: the lake's tables and views, and nothing that reaches
another file, another database or the engine's state.

DuckDB's own settings (``enable_external_access = false``, ``allowed_directories``,
``lock_configuration``) close its file readers, ``COPY``, ``ATTACH``, ``INSTALL``/``LOAD``
and ``SET``. They do not close what an extension does by itself: the ``sqlite``
extension that the lake's SQLite catalog needs opens files with SQLite's own I/O, so
``sqlite_scan('/any/file.sqlite', 't')`` and ``sqlite_attach(...)`` read any SQLite file
the account can read, whatever the settings; ``postgres_query``/``postgres_execute`` do
the same with a Postgres catalog; ``query('...')`` and ``json_execute_serialized_sql``
run SQL text this check cannot see. So every query is also checked here, on DuckDB's
own parse tree (``json_serialize_sql``): a table function must be on
:data:`TABLE_FUNCTIONS` (metadata, series, the lake's snapshots and changes), and a
function on :data:`REFUSED_FUNCTIONS` is refused wherever it appears.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator
from typing import Any

import duckdb

from .._core.errors import InputError
from .sqlfiles import run_query

#: Table functions an analyst query may use (all others are refused, file readers
#: included: the lake's data is read through its tables).
TABLE_FUNCTIONS: frozenset[str] = frozenset(
    {
        # series and values
        "range",
        "generate_series",
        "unnest",
        "repeat",
        "repeat_row",
        "json_each",
        "json_tree",
        "pg_timezone_names",
        "icu_calendar_names",
        # what the session holds
        "duckdb_columns",
        "duckdb_constraints",
        "duckdb_databases",
        "duckdb_dependencies",
        "duckdb_functions",
        "duckdb_indexes",
        "duckdb_keywords",
        "duckdb_schemas",
        "duckdb_sequences",
        "duckdb_settings",
        "duckdb_tables",
        "duckdb_types",
        "duckdb_variables",
        "duckdb_views",
        "summary",
        # the lake's snapshots, changes and files (read-only)
        "ducklake_snapshots",
        "ducklake_current_snapshot",
        "ducklake_last_committed_snapshot",
        "ducklake_table_info",
        "ducklake_table_changes",
        "ducklake_table_insertions",
        "ducklake_table_deletions",
        "ducklake_list_files",
        "ducklake_options",
    }
)

#: Functions refused wherever they appear (as a scalar too): they run SQL text this check
#: cannot see, or change the engine's state.
REFUSED_FUNCTIONS: frozenset[str] = frozenset(
    {
        "query",
        "query_table",
        "json_execute_serialized_sql",
        "json_deserialize_sql",
        "enable_profile",
        "disable_profile",
        "enable_logging",
        "disable_logging",
        "truncate_duckdb_logs",
        "write_log",
        "checkpoint",
        "force_checkpoint",
        "enable_checkpoint_on_shutdown",
        "disable_checkpoint_on_shutdown",
    }
)


def refusal(tree: Any, table_functions: Collection[str] = ()) -> str | None:
    """Why the serialized statement(s) ``tree`` (``json_serialize_sql``'s output, parsed)
    may not run, or None when they may. ``table_functions``: the table functions the
    session knows (lower case): a bare table name that is one of them (``FROM
    pragma_database_list``, which is what ``PRAGMA database_list`` becomes) calls it."""
    if not isinstance(tree, dict) or tree.get("error") is not False:
        message = tree.get("error_message") if isinstance(tree, dict) else None
        return f"this statement cannot be checked ({message or 'not a plain SELECT'})"
    for name, kind in _calls(tree):
        if name.startswith("pragma_"):  # PRAGMA x becomes SELECT * FROM pragma_x
            return f"PRAGMA ({name}) is not allowed here"
        if kind == "ref" and name not in table_functions:
            continue  # a table, view or CTE
        if name in REFUSED_FUNCTIONS:
            return f"{name}() is not allowed here"
        if kind != "scalar" and name not in TABLE_FUNCTIONS:
            return (
                f"table function {name}() is not allowed here: analyst queries read the "
                "lake's tables and views (and its snapshots), no other file or database"
            )
    return None


def _calls(node: Any, *, table: bool = False) -> Iterator[tuple[str, str]]:
    """Every function the tree calls, and every table it names: (lower-case name, kind),
    kind being ``scalar``, ``table`` (a table function) or ``ref`` (a table name)."""
    if isinstance(node, dict):
        if node.get("type") == "BASE_TABLE" and isinstance(node.get("table_name"), str):
            yield node["table_name"].lower(), "ref"
        if node.get("class") == "FUNCTION" or "function_name" in node:
            name = node.get("function_name")
            if isinstance(name, str):
                yield name.lower(), "table" if table else "scalar"
        for key, value in node.items():
            yield from _calls(
                value, table=key == "function" and node.get("type") == "TABLE_FUNCTION"
            )
    elif isinstance(node, list):
        for item in node:
            yield from _calls(item)


__all__ = ["REFUSED_FUNCTIONS", "TABLE_FUNCTIONS", "refusal"]


_ALLOWED_ANALYST_STATEMENTS = {"SELECT", "EXPLAIN"}
_EXPLAIN = re.compile(r"^\s*EXPLAIN(\s+ANALY[SZ]E)?\s+", re.IGNORECASE)


def check_read_only_sql(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse anything but a SELECT (or EXPLAIN of one) that reads the lake: no COPY,
    EXPORT, ATTACH, SET, PRAGMA, ...; no table function that reaches another file or
    database (``read_csv``, ``sqlite_scan``, ``sqlite_attach``, ``postgres_scan``,
    ``glob``...) and nothing that runs SQL text unseen (``query()``): see ``sqlguard``.
    InputError says why."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise InputError(f"invalid SQL: {exc}") from exc
    if not statements:
        raise InputError("no SQL statement given")
    table_functions: set[str] | None = None
    for st in statements:
        kind = st.type.name
        if kind not in _ALLOWED_ANALYST_STATEMENTS:
            raise InputError(f"only SELECT queries are allowed here, not {kind}")
        if table_functions is None:
            table_functions = {
                r[0]
                for r in run_query(
                    con,
                    "SELECT DISTINCT lower(function_name) FROM duckdb_functions() "
                    "WHERE function_type IN ('table', 'table_macro')",
                ).fetchall()
            }
        text = _EXPLAIN.sub("", st.query, count=1) if kind == "EXPLAIN" else st.query
        try:
            rows = con.execute("SELECT json_serialize_sql(?)", [text]).fetchall()
            tree = json.loads(rows[0][0])
        except (duckdb.Error, ValueError, IndexError) as exc:
            raise InputError(f"this statement cannot be checked: {exc}") from exc
        reason = refusal(tree, table_functions)
        if reason:
            raise InputError(f"refused: {reason}")
