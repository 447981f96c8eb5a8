"""The lake's copy of the state: every state table copied into the lake in one DuckLake
transaction, so analysts see invoices beside usage.

**One place triggers it.** Every committed state transaction notes a change
(:func:`note_change`, called by :func:`.state.transaction`); listeners hear of it (the
HTTP API's background mirror), and :func:`flush` copies the state when something changed
since the last copy (the command line at exit, the nightly's mirror steps). Nothing else
calls the mirror.

DuckDB reads a private snapshot of the state store (:func:`snapshot_copy`), never
``state.sqlite`` itself: see :mod:`.state` on two SQLite builds in one process.

**With the state on PostgreSQL there is no copy**: analysts read the state in place
(:func:`state_view_sql`): the analyst session attaches the state database read-only
through DuckDB's postgres extension, as the read-only role ``[state] analyst_role``, and
each mirrored table is a view of the same name over it (the same ``sql/mirror`` queries,
so the same columns and types as the copy). Why: the state is then current to the
second, not as of the last copy; no whole-table rewrite of every state table into the
lake twice a night (and no snapshots to expire for it); and the API server, the nightly
and an analyst can each be on another machine. The role can read and nothing else
(docs/analysts.md has its ``GRANT`` statements); PostgreSQL enforces it.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from .._core.errors import LakeError
from ..config.settings import Settings
from .state import opened

#: State tables mirrored into the lake, as ``sql/mirror/<name>.sql``.
MIRRORED: tuple[str, ...] = (
    "invoices",
    "invoice_lines",
    "invoice_status_history",
    "billing_ledger",
    "credit_grants",
    "credit_ledger",
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
    "credit_notes",
    "refunds",
    "balance_transactions",
    "reconcile_findings",
)


#: Per state store (its path): changes committed so far, and changes the last copy saw.
_changes: dict[str, int] = {}
_copied: dict[str, int] = {}
_settings: dict[str, Settings] = {}
_listeners: dict[str, list[Callable[[str], None]]] = {}
_guard = threading.Lock()


def _key(settings: Settings) -> str:
    return str(settings.state_path)


def note_change(settings: Settings, reason: str = "state changed") -> None:
    """A state transaction committed: tell the listeners; :func:`flush` will copy."""
    key = _key(settings)
    with _guard:
        _changes[key] = _changes.get(key, 0) + 1
        _settings[key] = settings
        listeners = list(_listeners.get(key, ()))
    for listener in listeners:
        listener(reason)


def subscribe(settings: Settings, listener: Callable[[str], None]) -> Callable[[], None]:
    """Call ``listener(reason)`` after every committed change of this state store (the
    API's background mirror). Returns the function that unsubscribes."""
    key = _key(settings)
    with _guard:
        _listeners.setdefault(key, []).append(listener)

    def unsubscribe() -> None:
        with _guard:
            if listener in _listeners.get(key, []):
                _listeners[key].remove(listener)

    return unsubscribe


def pending(settings: Settings) -> bool:
    """Has this process committed changes the lake's copy has not seen?"""
    key = _key(settings)
    with _guard:
        return _changes.get(key, 0) > _copied.get(key, 0)


def marker() -> dict[str, int]:
    """The changes counted so far, per state store (for :func:`flush`'s ``since``)."""
    with _guard:
        return dict(_changes)


def flush(
    settings: Settings | None = None,
    *,
    since: dict[str, int] | None = None,
    reason: str = "state changed",
) -> list[int]:
    """Copy the state into the lake for ``settings`` (None: every state store changed
    since the :func:`marker` ``since``, or ever in this process) when it changed since the
    last copy. Returns the snapshots made."""
    with _guard:
        if settings is not None:
            keys = [_key(settings)]
        else:
            keys = [k for k, n in _changes.items() if since is None or n > since.get(k, 0)]
        todo = [_settings.get(k, settings) for k in keys if _changes.get(k, 0) > _copied.get(k, 0)]
    return [mirror_to_lake(s, reason=reason) for s in todo if s is not None]


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
                src.driver_connection().backup(
                    dst
                )  # one step: one read transaction, a consistent snapshot
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
    from .lake import Lake
    from .sqlfiles import leading_comment, load_sql, sql_literal

    lake = Lake(settings)
    key = _key(settings)
    with _guard:
        seen = _changes.get(key, 0)
    if settings.state_on_postgres:  # analysts read it in place: nothing to copy
        con = lake.connect()
        try:
            snapshot = lake.current_snapshot(con)
        finally:
            con.close()
        with _guard:
            _copied[key] = max(_copied.get(key, 0), seen)
        return snapshot
    name = f"{_MIRROR_COPY}{os.getpid()}-{threading.get_ident()}.sqlite"
    with lake.write_lock():
        # Copies exist only while a mirror holds the write lock: any found now were left
        # by a mirror that was killed.
        for stale in settings.tmp_dir.glob(f"{_MIRROR_COPY}*.sqlite"):
            stale.unlink(missing_ok=True)
        copy = snapshot_copy(settings, settings.tmp_dir / name)
        try:
            lake.connect().close()  # the lake and its tables exist
            # a DuckDB of its own: attaching the copy to the process's shared instance
            # would crash its other threads' queries (see Lake.private_connection)
            con = lake.private_connection()
            try:
                con.execute(f"ATTACH {sql_literal(str(copy))} AS state (TYPE sqlite, READ_ONLY)")
                with lake.transaction(con, reason):
                    for table in MIRRORED:
                        text = load_sql(f"mirror/{table}")
                        con.execute(f"CREATE OR REPLACE TABLE {table} AS {text}")
                        con.execute(
                            f"COMMENT ON TABLE {table} IS {sql_literal(leading_comment(text))}"
                        )
                snapshot = lake.current_snapshot(con)
                with _guard:
                    _copied[key] = max(_copied.get(key, 0), seen)
                return snapshot
            finally:
                con.close()
        finally:
            copy.unlink(missing_ok=True)


def analyst_conninfo(settings: Settings) -> str:
    """libpq's key/value form of the state database, as ``[state] analyst_role`` (the
    password, if any, comes from the analyst's own ``PGPASSWORD`` or ``~/.pgpass``)."""
    from sqlalchemy.engine import make_url

    from .state import state_url

    url = make_url(state_url(settings))
    parts = {
        "host": url.host,
        "port": url.port,
        "dbname": url.database,
        "user": settings.state.analyst_role,
        **{k: v for k, v in url.query.items() if k in ("sslmode", "sslrootcert")},
    }
    return " ".join(f"{k}={v}" for k, v in parts.items() if v)


def state_view_sql(settings: Settings) -> list[str]:
    """With the state on PostgreSQL, the statements that let an analyst session read it
    in place: the state database attached read-only as ``state`` (the analyst role),
    then one view per mirrored table, named as the lake's copy would be. Empty with
    SQLite (the lake holds the copy). Run after ``USE`` of the lake, before the
    session's configuration is locked."""
    from .sqlfiles import load_sql, sql_literal

    if not settings.state_on_postgres:
        return []
    out = [f"ATTACH {sql_literal(analyst_conninfo(settings))} AS state (TYPE postgres, READ_ONLY)"]
    out += [f"CREATE TEMP VIEW {t} AS {load_sql(f'mirror/{t}')}" for t in MIRRORED]
    return out


__all__ = [
    "MIRRORED",
    "analyst_conninfo",
    "flush",
    "marker",
    "mirror_to_lake",
    "note_change",
    "pending",
    "snapshot_copy",
    "state_view_sql",
    "subscribe",
]
