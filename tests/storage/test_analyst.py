"""storage.analyst: analyst connections during a write, ``billing-batch sql`` (formats,
sandbox, prompt) and the analysts' documentation (every table documented, every example
runs)."""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from billing_batch._core.errors import InputError
from billing_batch.cli import main as cli_main
from billing_batch.cli.usage import interactive
from billing_batch.config.settings import PROJECT_ROOT, Settings, load_settings
from billing_batch.storage import mirror
from billing_batch.storage import state as store
from billing_batch.storage.analyst import analyst_query, open_analyst_session
from billing_batch.storage.lake import Lake, extension_directory
from billing_batch.usage.ingest import ingest
from billing_batch.usage.rollup import refresh_rollup
from tests.conftest import write_log
from tests.usage.support import ev, load

DOCS = PROJECT_ROOT / "docs" / "analysts.md"


# --- readers during a write ----------------------------------------------------------------
_SLOW_INGEST = """
import pathlib, sys, time
import billing_batch.usage.ingest as m
from billing_batch.config import load_settings
real = m.run_sql
def slow(con, name, params=None, **kw):
    if name == "ingest_commit_manifest":  # inside the ingest's transaction
        pathlib.Path(sys.argv[2]).write_text("writing")
        deadline = time.time() + 60
        while not pathlib.Path(sys.argv[3]).exists():
            if time.time() > deadline:
                sys.exit(7)
            time.sleep(0.02)
    return real(con, name, params, **kw)
m.run_sql = slow
print(m.ingest(load_settings(), [sys.argv[1]]).snapshot_id)
"""


def _wait_for(path: Path, proc: subprocess.Popen[str], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the writer never started its transaction"
        time.sleep(0.02)


def _start_slow_ingest(settings: Settings, tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    """An ingest in another process, paused inside its transaction until ``go`` exists."""
    load(settings, tmp_path, [ev("ws_a", "api_calls", 1, "2024-01-01T10:00:00Z")])
    refresh_rollup(settings)
    new = write_log(tmp_path / "new.jsonl", [ev("ws_a", "api_calls", 2, "2024-01-02T10:00:00Z")])
    started, go = tmp_path / "started", tmp_path / "go"
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_INGEST, str(new), str(started), str(go)],
        env={**os.environ, "BILLING_HOME": str(settings.home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(started, proc)
    return proc, go


def test_analyst_connection_during_a_write_sees_the_last_snapshot(
    settings: Settings, tmp_path: Path
) -> None:
    proc, go = _start_slow_ingest(settings, tmp_path)
    try:
        con = open_analyst_session(settings)  # opened while the ingest writes
        try:
            assert con.execute("SELECT count(*) FROM events").fetchall() == [(1,)]
            result = analyst_query(con, "SELECT sum(quantity) AS total FROM events")
            assert result.rows == [(Decimal(1),)]
            go.write_text("go")  # the writer commits while the reader is connected
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            assert con.execute("SELECT count(*) FROM events").fetchall() == [(2,)]
            row = con.execute("SELECT id FROM billing.current_snapshot()").fetchall()
            assert row == [(int(out.strip()),)]
        finally:
            con.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_an_open_analyst_transaction_does_not_block_the_writer(
    settings: Settings, tmp_path: Path
) -> None:
    proc, go = _start_slow_ingest(settings, tmp_path)
    try:
        with sqlite3.connect(settings.lake_dir / "catalog.sqlite") as cat:
            mode = cat.execute("PRAGMA journal_mode").fetchall()
        assert mode == [("wal",)]  # lake.py puts the SQLite catalog in WAL mode
        con = open_analyst_session(settings)
        try:
            con.execute("BEGIN TRANSACTION")
            assert con.execute("SELECT count(*) FROM events").fetchall() == [(1,)]
            go.write_text("go")  # the writer commits while the read transaction is open
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            # the open transaction keeps its snapshot; the next one sees the commit
            assert con.execute("SELECT count(*) FROM events").fetchall() == [(1,)]
            con.execute("COMMIT")
            assert con.execute("SELECT count(*) FROM events").fetchall() == [(2,)]
        finally:
            con.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def run_cli(settings: Settings, *args: str) -> int:
    return cli_main(["--home", str(settings.home), *args])


def test_cli_sql_formats_sandbox_and_prompt(
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    load(settings, tmp_path, [ev("ws_a", "storage", 1.5, "2024-01-15T10:00:00Z"), "junk"])
    refresh_rollup(settings)
    query = "SELECT workspace_id, day, quantity, events FROM usage_daily"
    assert run_cli(settings, "sql", query, "--format", "csv") == 0
    assert capsys.readouterr().out == "workspace_id,day,quantity,events\nws_a,2024-01-15,1.5,1\n"
    assert run_cli(settings, "sql", query, "--format", "json") == 0
    assert json.loads(capsys.readouterr().out) == [
        {"workspace_id": "ws_a", "day": "2024-01-15", "quantity": 1.5, "events": 1}
    ]
    assert run_cli(settings, "sql", query) == 0
    out = capsys.readouterr().out
    assert "ws_a" in out and "2024-01-15" in out and "1.5" in out and "1 row" in out
    assert run_cli(settings, "sql", "SELECT * FROM range(5)", "--limit", "2") == 0
    assert "more not shown" in capsys.readouterr().out
    assert (
        run_cli(
            settings, "sql", "SELECT reason_kind, lines FROM rejects_by_reason", "--format", "csv"
        )
        == 0
    )
    assert capsys.readouterr().out == "reason_kind,lines\ninvalid JSON,1\n"

    outside = tmp_path / "secret.csv"
    outside.write_text("a\n1\n")
    sandbox = open_analyst_session(settings)
    try:
        for refused, message in [
            ("DELETE FROM events", "only SELECT"),
            (f"COPY events TO '{tmp_path / 'x.csv'}'", "only SELECT"),
            ("ATTACH ':memory:' AS other", "only SELECT"),
            ("SET enable_external_access = true", "only SELECT"),
            ("SELECT 1; DROP TABLE events", "only SELECT"),
            (f"SELECT * FROM read_csv('{outside}')", "not allowed here"),
            ("SELECT * FROM no_such_table", "query failed"),
            ("SELEC 1", "invalid SQL"),
        ]:
            with pytest.raises(InputError, match=message):
                analyst_query(sandbox, refused)
    finally:
        sandbox.close()
    assert not (tmp_path / "x.csv").exists()
    for refused, message in [("DELETE FROM events", "only SELECT"), ("SELEC 1", "invalid SQL")]:
        assert run_cli(settings, "sql", refused) == 2, refused
        assert message in capsys.readouterr().err, refused

    # the prompt: statements end with ';', errors do not stop it, .quit does
    monkeypatch.setattr(
        sys,
        "stdin",
        io.StringIO("SELECT 1 AS x;\nSELECT\n  2 AS y;\nSELECT nope;\n\n.quit\nSELECT 3 AS z;\n"),
    )
    assert run_cli(settings, "sql", "--format", "csv") == 0
    captured = capsys.readouterr()
    assert captured.out == "x\n1\ny\n2\n"
    assert "query failed" in captured.err
    buf = io.StringIO()
    con = open_analyst_session(settings)
    try:
        assert interactive(con, "json", None, io.StringIO("SELECT 42 AS answer;"), buf) == 0
    finally:
        con.close()
    assert json.loads(buf.getvalue()) == [{"answer": 42}]


# --- the analysts' documentation -------------------------------------------------------------
def _sql_blocks(text: str) -> list[str]:
    return re.findall(r"```sql\n(.*?)```", text, flags=re.S)


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^#### `([a-z_]+)`", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


@pytest.fixture(scope="module")
def documented_lake(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A small lake with every table: a sample month, its rollup, one invoice mirrored."""
    from billing_batch.usage.sample import generate

    root = tmp_path_factory.mktemp("docs")
    settings = load_settings(env={"BILLING_HOME": str(root / "home")})
    generate(root / "s", workspaces=5, events=5_000, seed=4, bad_lines=7)
    ingest(settings, [root / "s"])
    rollup = refresh_rollup(settings)
    with store.opened(settings) as con, store.transaction(con):
        con.execute(
            "INSERT INTO invoices (id, workspace_id, period_start, period_end, status, currency, "
            "subtotal, tax_rate, tax, total, total_minor, price_book_version, lake_snapshot_id, "
            "document, created_at, updated_at) VALUES ('inv_test', 'ws_0001', '2024-01-01', "
            "'2024-01-31', 'open', 'USD', '10', '0', '0', '10', 1000, 'v1', ?, '{}', "
            "'2024-02-01T00:00:00Z', '2024-02-01T00:00:00Z')",
            [rollup.snapshot_id],
        )
    mirror.mirror_to_lake(settings)
    return settings


def test_every_table_and_view_is_documented_and_commented(documented_lake: Settings) -> None:
    s = documented_lake
    text = DOCS.read_text()
    sections = _sections(text)
    con = Lake(s).connect(read_only=True)
    try:
        objects = con.execute(
            "SELECT table_name, comment FROM duckdb_tables() WHERE database_name = 'lake' "
            "UNION ALL SELECT view_name, comment FROM duckdb_views() WHERE database_name = 'lake'"
        ).fetchall()
        assert len(objects) >= 6 + 3 + len(mirror.MIRRORED)
        for name, comment in objects:
            assert comment, f"{name} has no COMMENT"
            assert name in sections, f"docs/analysts.md has no section #### `{name}`"
            columns = [
                r[0]
                for r in con.execute(
                    "SELECT column_name FROM duckdb_columns() WHERE database_name = 'lake' "
                    "AND table_name = ?",
                    [name],
                ).fetchall()
            ]
            for column in columns:
                assert f"`{column}`" in sections[name], f"{name}.{column} is not documented"
    finally:
        con.close()


def test_every_example_in_the_analyst_docs_runs(documented_lake: Settings) -> None:
    s = documented_lake
    blocks = _sql_blocks(DOCS.read_text())
    assert len(blocks) >= 12
    attach = [b for b in blocks if "ATTACH" in b]
    assert len(attach) == 1
    # the documented recipe, as an analyst's own DuckDB session would run it
    recipe = (
        attach[0]
        .replace("<extension_directory>", extension_directory())
        .replace("<billing_home>", str(s.home))
    )
    con = duckdb.connect()
    con.execute(recipe)
    examples = [b for b in blocks if b not in attach]
    titled = 0
    for block in examples:
        con.execute(block).fetchall()
        titled += 1
    assert titled >= 11  # ten day-one queries and the time travel
    con.close()
    # each single-SELECT example also runs through the sandboxed `billing-batch sql`
    sandbox = open_analyst_session(s)
    try:
        for block in examples:
            statements = sandbox.extract_statements(block)
            if len(statements) == 1 and statements[0].type.name == "SELECT":
                analyst_query(sandbox, block)
        with pytest.raises(InputError):
            analyst_query(sandbox, "SET VARIABLE x = 1")
    finally:
        sandbox.close()
