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
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from .config import SQL_DIR, Settings
from .errors import LakeError

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
        con = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
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


def mirror_to_lake(settings: Settings, *, reason: str = "mirror state") -> int:
    """Replace the lake's copies of the state tables, in one DuckLake transaction.

    Returns the snapshot id. Readers of the lake see either the previous copies or the
    new ones, never a mix.
    """
    from .lake import Lake, leading_comment, load_sql, sql_literal

    lake = Lake(settings)
    with opened(settings):
        pass  # creates/migrates the store so the attach below finds every table
    with lake.write_lock():
        con = lake.connect()
        try:
            # the process's lake instance is shared: attach the state for this copy only
            con.execute(
                f"ATTACH {sql_literal(str(settings.state_path))} AS state (TYPE sqlite, READ_ONLY)"
            )
            try:
                with lake.transaction(con, reason):
                    for name in MIRRORED:
                        text = load_sql(f"mirror/{name}")
                        con.execute(f"CREATE OR REPLACE TABLE {name} AS {text}")
                        con.execute(
                            f"COMMENT ON TABLE {name} IS {sql_literal(leading_comment(text))}"
                        )
                return lake.current_snapshot(con)
            finally:
                con.execute("USE lake")
                con.execute("DETACH state")
        finally:
            con.close()
