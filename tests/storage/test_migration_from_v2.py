"""Migrations 2 -> 4 on a real version-2 store (schema_v2.sql: the schema as released):
stamped at Alembic revision 0002, then upgraded: credit notes and invoices' amount due
(0003), price-book versions, prepaid credits and the live-period index that leaves debit
invoices aside (0004); existing invoices untouched, and a second open is a no-op."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from billing_batch.config.settings import Settings
from billing_batch.storage import state

V2 = Path(__file__).with_name("schema_v2.sql")


def _revision(con: state.StateConnection) -> str:
    (row,) = con.execute("SELECT version_num FROM alembic_version").fetchall()
    return str(row[0])


def test_a_version_2_store_migrates(settings: Settings) -> None:
    path = settings.state_path
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.executescript(V2.read_text())
    con.execute(
        "INSERT INTO invoices (id, workspace_id, period_start, period_end, status, currency, "
        "subtotal, tax_rate, tax, total, total_minor, price_book_version, document, "
        "created_at, updated_at) VALUES ('inv_1', 'ws_a', '2024-01-01', '2024-01-31', 'open', "
        "'USD', '1.00', '0', '0', '1.00', 100, 'v', '{}', 't', 't')"
    )
    con.execute("PRAGMA user_version = 2")
    con.commit()
    con.close()
    with state.opened(settings) as con:
        assert _revision(con) == f"{state.SCHEMA_VERSION:04d}" == "0005"
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"price_book_versions", "credit_grants", "credit_ledger", "credit_notes"} <= tables
        columns = {r[1] for r in con.execute("PRAGMA table_info(invoices)")}
        assert {"amount_due", "dispute_id"} <= columns
        (index,) = con.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'invoices_live_period'"
        ).fetchone()
        assert "kind <> 'debit'" in index
        indexes = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "invoices_workspace" in indexes  # 0005
        rows = con.execute("SELECT id, status FROM invoices").fetchall()
        assert [tuple(r) for r in rows] == [("inv_1", "open")]
    with state.opened(settings) as con:  # opening again migrates nothing
        assert _revision(con) == "0005"
