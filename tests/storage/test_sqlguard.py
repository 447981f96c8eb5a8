"""The analysts' read-only interfaces read the lake and nothing else.

Every escape is tried against a real lake through each interface: `billing-batch sql`
(the real CLI, in a subprocess and in-process), the library's `analyst_query` on
`storage.analyst.open_analyst_session()`, and the Python helper
`billing_batch.analyst_connection()`.
A secret SQLite file and a secret CSV sit outside the lake; their content must never come
back, and nothing may be written. Then the raw session of `billing-batch analyst-init`:
what DuckDB's settings close there, and what they do not (as docs/analysts.md says).
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

import billing_batch
from billing_batch._core.errors import InputError
from billing_batch.cli import main as cli_main
from billing_batch.config.settings import Settings, load_settings
from billing_batch.storage import mirror
from billing_batch.storage.analyst import analyst_init_sql, analyst_query, open_analyst_session
from billing_batch.usage.ingest import ingest
from billing_batch.usage.rollup import refresh_rollup
from billing_batch.usage.sample import generate

BB = str(Path(sys.executable).with_name("billing-batch"))
DOCS = Path(__file__).resolve().parents[2] / "docs" / "analysts.md"
SECRET = "TOP-SECRET-41"


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Path]]:
    """A small lake (a sample month ingested, rolled up, state mirrored) and, outside
    it, a folder of secrets: a SQLite database and a CSV."""
    root = tmp_path_factory.mktemp("analyst")
    settings = load_settings(env={"BILLING_HOME": str(root / "home")})
    generate(root / "logs", workspaces=3, events=1_000, seed=5, bad_lines=2)
    ingest(settings, [root / "logs"])
    refresh_rollup(settings)
    mirror.mirror_to_lake(settings)
    secrets = root / "secrets"
    secrets.mkdir()
    db = sqlite3.connect(secrets / "other.sqlite")
    db.execute("CREATE TABLE t (x TEXT)")
    db.execute("INSERT INTO t VALUES (?)", [SECRET])
    db.commit()
    db.close()
    (secrets / "other.csv").write_text(f"x\n{SECRET}\n")
    yield settings, secrets


def escapes(secrets: Path) -> list[str]:
    """Queries that reach past the lake (files, databases, settings, extensions)."""
    db, csv = secrets / "other.sqlite", secrets / "other.csv"
    out = secrets / "written.csv"
    return [
        f"SELECT * FROM sqlite_scan('{db}', 't')",
        f"SELECT * FROM system.main.sqlite_scan('{db}', 't')",
        f"SELECT * FROM sqlite_attach('{db}')",
        f"CALL sqlite_attach('{db}')",
        f"SELECT * FROM sqlite_query('{db}', 'SELECT * FROM t')",
        f"SELECT (SELECT max(x) FROM sqlite_scan('{db}', 't')) AS leak",
        f"WITH s AS (SELECT * FROM sqlite_scan('{db}', 't')) SELECT * FROM s",
        f"SELECT 1 WHERE EXISTS (SELECT 1 FROM sqlite_scan('{db}', 't') WHERE x LIKE 'TOP%')",
        f"SELECT list_transform([1], i -> (SELECT max(x) FROM sqlite_scan('{db}', 't')))",
        f"EXPLAIN ANALYZE SELECT * FROM sqlite_scan('{db}', 't')",
        f"SELECT 1; SELECT * FROM sqlite_scan('{db}', 't')",
        f"SELECT * FROM read_csv('{csv}')",
        f"SELECT * FROM read_csv_auto('{csv}')",
        f"SELECT * FROM '{csv}'",
        f"SELECT * FROM read_text('{csv}')",
        f"SELECT * FROM read_blob('{csv}')",
        "SELECT * FROM read_text('/etc/passwd')",
        f"SELECT * FROM glob('{secrets}/*')",
        f"SELECT * FROM read_parquet('{secrets}/*.parquet')",
        f"SELECT * FROM read_json('{csv}')",
        f"SELECT * FROM query('SELECT * FROM sqlite_scan(''{db}'', ''t'')')",
        "SELECT * FROM query_table('events')",
        "SELECT json_execute_serialized_sql(json_serialize_sql('SELECT 1'))",
        "SELECT * FROM postgres_scan('dbname=x', 'public', 't')",
        "SELECT * FROM postgres_query('db', 'SELECT 1')",
        "SELECT * FROM postgres_execute('db', 'DROP TABLE t')",
        "SELECT * FROM ducklake_expire_snapshots('billing', dry_run => false)",
        f"SELECT * FROM ducklake_add_data_files('billing', 'events', '{csv}')",
        "SELECT * FROM checkpoint()",
        f"COPY (SELECT * FROM events) TO '{out}'",
        f"COPY events TO '{out}'",
        f"EXPORT DATABASE '{secrets}/export'",
        f"ATTACH '{db}' AS other (TYPE sqlite)",
        f"ATTACH '{secrets}/new.duckdb' AS other",
        "ATTACH ':memory:' AS other",
        "DETACH billing",
        "USE memory",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "SET allowed_directories = ['/']",
        "RESET lock_configuration",
        "SET VARIABLE x = 1",
        "PRAGMA enable_profiling",
        "PRAGMA database_list",
        "CALL pragma_version()",
        "CREATE TEMP TABLE t AS SELECT 1",
        "CREATE MACRO m() AS 1",
        "DELETE FROM events",
        "PIVOT events ON metric USING count(*)",
    ]


#: Lake queries that must keep working everywhere.
LAKE_QUERIES = [
    "SELECT count(*) FROM events",
    "SELECT metric, sum(quantity) FROM usage_daily GROUP BY metric ORDER BY metric",
    "SELECT * FROM usage_monthly ORDER BY ALL LIMIT 3",
    "SELECT reason_kind, lines FROM rejects_by_reason",
    "SELECT snapshot_id, commit_message FROM ducklake_snapshots('billing')",
    "SELECT count(*) FROM events AT (VERSION => 1)",
    "SELECT count(*) FROM ducklake_table_changes('billing', 'main', 'events', 0, 2)",
    "SELECT table_name, comment FROM duckdb_tables() ORDER BY table_name",
    "SELECT count(*) FROM range(10) CROSS JOIN unnest([1, 2])",
    "EXPLAIN SELECT count(*) FROM events",
    "DESCRIBE events",
    "SUMMARIZE SELECT quantity FROM events",
    "SHOW TABLES",
    "FROM invoices LIMIT 1",
]


def test_billing_batch_sql_refuses_escapes(
    lake: tuple[Settings, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The command line refuses through the library's guard, which the next test tries
    with every escape; here every fourth (each opens a session, ~0.4 s), through the
    command in-process, then installed, then at its prompt."""
    settings, secrets = lake
    queries = escapes(secrets)
    for query in queries[::4]:
        code = cli_main(["--home", str(settings.home), "sql", "--format", "csv", query])
        captured = capsys.readouterr()
        assert code == 2, (query, captured.out, captured.err)
        assert "billing-batch: error:" in captured.err, query
        assert SECRET not in captured.out + captured.err, query
    # the installed command, as an attacker would call it
    for query in queries[:1]:
        proc = subprocess.run(
            [BB, "--home", str(settings.home), "sql", "--format", "csv", query],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2, (query, proc.stdout, proc.stderr)
        assert SECRET not in proc.stdout + proc.stderr, query
    # the prompt refuses them too, and goes on
    sql = "".join(f"{q};\n" for q in queries[:5]) + "SELECT count(*) AS n FROM events;\n"
    proc = subprocess.run(
        [BB, "--home", str(settings.home), "sql", "--format", "csv"],
        input=sql,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout == "n\n1000\n", proc.stderr
    assert proc.stderr.count("error: ") == 5 and SECRET not in proc.stderr
    assert sorted(p.name for p in secrets.iterdir()) == ["other.csv", "other.sqlite"]


def test_the_library_and_the_python_helper_refuse_every_escape(
    lake: tuple[Settings, Path],
) -> None:
    settings, secrets = lake
    con = open_analyst_session(settings)
    helper = billing_batch.analyst_connection(home=settings.home)
    try:
        for query in escapes(secrets):
            with pytest.raises(InputError) as refused:
                analyst_query(con, query)
            assert SECRET not in str(refused.value), query
            with pytest.raises(InputError):
                helper.sql(query).fetchall()
        # the connection itself: settings locked, no extension to load
        with pytest.raises(duckdb.Error, match="locked"):
            con.execute("SET enable_external_access = true")
        with pytest.raises(duckdb.Error, match="disabled"):
            con.execute("LOAD httpfs")
    finally:
        con.close()
        helper.close()
    assert sorted(p.name for p in secrets.iterdir()) == ["other.csv", "other.sqlite"]


def test_the_refusals_say_why(lake: tuple[Settings, Path]) -> None:
    settings, secrets = lake
    con = open_analyst_session(settings)
    try:
        for query, why in [
            (f"SELECT * FROM sqlite_scan('{secrets}/other.sqlite', 't')", "sqlite_scan()"),
            (f"SELECT * FROM read_csv('{secrets}/other.csv')", "read_csv()"),
            ("SELECT * FROM query('SELECT 1')", "query() is not allowed"),
            ("COPY events TO 'x.csv'", "only SELECT queries are allowed here, not COPY"),
            ("SET enable_external_access = true", "not SET"),
            ("ATTACH ':memory:' AS m", "not ATTACH"),
            ("LOAD httpfs", "not LOAD"),
            ("PRAGMA database_list", "PRAGMA (pragma_database_list) is not allowed"),
            ("PRAGMA enable_profiling", "not PRAGMA"),
            (f"SELECT * FROM '{secrets}/other.csv'", "query failed"),  # DuckDB: no access
        ]:
            with pytest.raises(InputError, match=re.escape(why)):
                analyst_query(con, query)
    finally:
        con.close()


def test_lake_queries_still_work_everywhere(lake: tuple[Settings, Path]) -> None:
    settings, _ = lake
    con = open_analyst_session(settings)
    try:
        for query in LAKE_QUERIES:
            assert analyst_query(con, query).columns, query
        assert analyst_query(con, "SELECT count(*) FROM events").rows == [(1_000,)]
    finally:
        con.close()
    with billing_batch.analyst_connection(home=settings.home) as helper:
        for query in LAKE_QUERIES:
            helper.sql(query).fetchall()
        frame = helper.sql("SELECT metric, count(*) AS n FROM events GROUP BY ALL").pl()
        assert int(frame["n"].sum()) == 1_000
        assert helper.sql("SELECT count(*) FROM events").arrow().num_rows == 1
    proc = subprocess.run(
        [BB, "--home", str(settings.home), "sql", "--format", "csv", LAKE_QUERIES[0]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout == "count_star()\n1000\n", proc.stderr


def _raw_session(settings: Settings) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(analyst_init_sql(settings))
    return con


def test_the_raw_session_closes_what_duckdb_can_close(lake: tuple[Settings, Path]) -> None:
    """`billing-batch analyst-init`, run in a plain DuckDB session: files outside the
    lake, COPY TO, ATTACH, INSTALL/LOAD and SET are refused by DuckDB itself."""
    settings, secrets = lake
    con = _raw_session(settings)
    try:
        for query in LAKE_QUERIES:
            con.execute(query).fetchall()
        for query in [
            f"SELECT * FROM read_csv('{secrets}/other.csv')",
            f"SELECT * FROM '{secrets}/other.csv'",
            f"SELECT * FROM read_text('{secrets}/other.csv')",
            f"SELECT * FROM read_blob('{secrets}/other.csv')",
            "SELECT * FROM read_text('/etc/passwd')",
            f"SELECT * FROM glob('{secrets}/*')",
            f"COPY (SELECT 1) TO '{secrets}/written.csv'",
            f"EXPORT DATABASE '{secrets}/export'",
            f"ATTACH '{secrets}/new.duckdb' AS other",
            "INSTALL httpfs",
            "LOAD httpfs",
            "SET enable_external_access = true",
            "SET allowed_directories = ['/']",
            "RESET lock_configuration",
            "CREATE TABLE billing.main.t AS SELECT 1",
        ]:
            with pytest.raises(duckdb.Error):
                con.execute(query).fetchall()
    finally:
        con.close()
    assert sorted(p.name for p in secrets.iterdir()) == ["other.csv", "other.sqlite"]


def test_what_a_raw_session_can_still_do_is_what_the_docs_say(
    lake: tuple[Settings, Path],
) -> None:
    """DuckDB's settings do not govern the sqlite extension's own file access: in a raw
    session, sqlite_scan/sqlite_attach read any SQLite file the account can read. The
    guide says so (and points to `billing-batch sql` and the Python helper, which
    refuse them). If DuckDB closes it one day, this test fails: update the guide."""
    settings, secrets = lake
    con = _raw_session(settings)
    try:
        leaked = con.execute(f"SELECT * FROM sqlite_scan('{secrets}/other.sqlite', 't')")
        assert leaked.fetchall() == [(SECRET,)]
        con.execute(f"ATTACH '{secrets}/other.sqlite' AS other (TYPE sqlite)")
        assert con.execute("SELECT * FROM other.t").fetchall() == [(SECRET,)]
    finally:
        con.close()
    text = DOCS.read_text()
    raw = text[text.index("### What a raw session can do") :]
    raw = raw[: raw.index("\n## ")]
    for said in (
        "sqlite_scan",
        "sqlite_attach",
        "TYPE sqlite",
        "billing-batch sql",
        "analyst_connection",
    ):
        assert said in raw, said


def test_analyst_init_prints_the_session_the_sandbox_runs(
    lake: tuple[Settings, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    settings, _ = lake
    assert cli_main(["--home", str(settings.home), "analyst-init"]) == 0
    printed = capsys.readouterr().out
    assert printed == analyst_init_sql(settings)
    statements = [line for line in printed.splitlines() if not line.startswith("--")]
    assert statements[-3:] == [
        f"SET allowed_directories = ['{settings.data_path}'];",
        "SET enable_external_access = false;",
        "SET lock_configuration = true;",
    ]
    assert f"ATTACH 'ducklake:{settings.catalog_url}' AS billing (READ_ONLY);" in statements
