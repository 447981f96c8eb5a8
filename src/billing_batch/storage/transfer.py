"""Copy a state store into another, e.g. an existing home's SQLite state into a new
PostgreSQL database when the home moves past one machine (README "Past one machine").

Every table of ``sql/state/schema.sql``, in its order (a table comes after the tables
it references), in one transaction on the target, which must be empty; identity
sequences are moved past the copied ids. Values are copied as stored (decimal strings,
ISO times), so both stores answer every query the same.
"""

from __future__ import annotations

import re

from .._core.errors import LakeError
from ..config.settings import SQL_DIR, Settings
from . import state

_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)", re.IGNORECASE)
_IDENTITY = re.compile(r"(\w+)\s+INTEGER PRIMARY KEY AUTOINCREMENT", re.IGNORECASE)
_BATCH = 1000


def state_tables() -> list[tuple[str, str | None]]:
    """``(table, identity column or None)`` for every table of ``schema.sql``, in order."""
    text = (SQL_DIR / "state" / "schema.sql").read_text(encoding="utf-8")
    parts = _TABLE.split(text)  # [before, name, body, name, body, ...]
    return [
        (name, (m.group(1) if (m := _IDENTITY.search(body)) else None))
        for name, body in zip(parts[1::2], parts[2::2], strict=True)
    ]


def copy_state(source: Settings, target: Settings) -> dict[str, int]:
    """Copy every row of ``source``'s state store into ``target``'s (empty) one.
    Returns the rows copied per table."""
    copied: dict[str, int] = {}
    with state.opened(source) as src, state.opened(target) as dst, state.transaction(dst):
        for table, _identity in state_tables():
            if dst.execute(f"SELECT count(*) FROM {table}").fetchone()[0]:  # noqa: S608
                raise LakeError(f"the target state store already has rows in {table}")
        for table, identity in state_tables():
            cur = src.execute(f"SELECT * FROM {table}")  # noqa: S608 (schema's own names)
            rows = cur.fetchall()
            copied[table] = len(rows)
            if not rows:
                continue
            columns = rows[0].keys()
            insert = (
                f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608
                f"VALUES ({', '.join(':' + c for c in columns)})"
            )
            for i in range(0, len(rows), _BATCH):
                dst.executemany(insert, [dict(r) for r in rows[i : i + _BATCH]])
            if identity and dst.is_postgres:
                dst.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', '{identity}'), "
                    f"(SELECT max({identity}) FROM {table}))"  # noqa: S608
                )
    return copied


__all__ = ["copy_state", "state_tables"]
