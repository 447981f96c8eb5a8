"""Staging one ingest's lines: every non-blank line typed and accepted, or rejected with
its reason, in temporary DuckDB tables (spilled to disk under the memory limit).

Two ways in, one answer (tests/usage/test_ingest_fast.py proves it on adversarial input):

* **The fast path** (:func:`_stage_fast`, ``sql/ingest_fast.sql``): DuckDB's own JSON
  reader reads the file with its columns given, into a table whose row k is line k + 1,
  while a reader thread hashes the file and checks the line accounting (no blank or
  over-long line, one row per line, each line one clean object). A line without the
  usual shape of a valid event is read again and takes the rule chain; valid files never
  pay for the reason-finder.
* **The rule chain** (``sql/ingest_validate.sql``): our own reader streams the lines as
  Arrow strings into one query that names the first rule a line breaks. A file the fast
  path cannot number exactly (blank lines, a line over ``[ingest] max_line_bytes``, a
  reader error) goes this way whole, and so does a gzip file (our reader inflates with
  ISA-L: faster than DuckDB's reader, measured); an over-long line is rejected on its
  own, never read into memory.

The accepted lines of both are the view ``temp.staged``; rejected lines sit in
``temp.ingest_lines`` with their reason and raw text.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from .._core.errors import IngestError, LakeError
from ..config.settings import IngestSettings, Settings
from ..storage.sqlfiles import load_sql, run_query, run_sql
from .ingest_read import FileStats, is_gzip, prefetch, read_lines
from .ingest_scan import Scan, reread_lines, scan_file

#: Staged lines of one ingest that took the rule chain: accepted ones typed (``reason``
#: NULL), rejected ones with their reason and raw text. ``id_hash`` = hash(workspace_id,
#: id): the dedupe's 64-bit pre-filter. The fast path's files have their own tables.
STAGING_DDL = """
CREATE OR REPLACE TEMP TABLE ingest_lines (
    file_seq INTEGER, line_no BIGINT, reason VARCHAR, id VARCHAR, id_hash UBIGINT,
    workspace_id VARCHAR, metric VARCHAR, quantity DECIMAL(38, 9), ts TIMESTAMPTZ, day DATE,
    properties JSON, raw VARCHAR
);
CREATE OR REPLACE TEMP TABLE ingest_files (
    file_seq INTEGER, source_file VARCHAR, source_sha256 VARCHAR, size_bytes BIGINT,
    total_lines BIGINT
);
CREATE OR REPLACE TEMP TABLE ingest_dup_hashes (h UBIGINT);
"""

_STAGE_SCHEMA = pa.schema(
    [
        ("file_seq", pa.int32()),
        ("line_no", pa.int64()),
        ("raw", pa.large_string()),
        ("bad_utf8", pa.bool_()),
    ]
)
#: Rows per Arrow batch handed to DuckDB (its threads take batches in turn).
_BATCH_ROWS = 64 * 1024
_STAGED_COLUMNS = "id, id_hash, workspace_id, metric, quantity, ts, day, properties"
#: A file more than this share of whose lines (and more than _REREAD_MIN of them) the fast
#: path does not vouch for takes the rule chain whole (re-reading them would cost more).
_REREAD_SHARE = 0.2
_REREAD_MIN = 10_000


def validation_params(settings: Settings) -> dict[str, Any]:
    """The parameters of ``sql/ingest_validate.sql`` (and of the fast path's query)."""
    return {
        "metrics": [f'"{m}"' for m in settings.metrics],
        "metric_names": list(settings.metrics),
        "whole": [d.whole for d in settings.metrics.values()],
        "max_id_length": settings.ingest.max_id_length,
        "fast": True,
    }


def _fast_table(seq: int) -> str:
    return f"temp.ingest_fast_{int(seq)}"


def stage(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    inputs: Sequence[Path],
    *,
    fast: bool = True,
    params: dict[str, Any] | None = None,
) -> dict[int, FileStats | IngestError]:
    """Stage every line of ``inputs`` (``file_seq`` = index in ``inputs``); return each
    file's stats, or the IngestError of a file that could not be read (its lines are
    left out). Creates the view ``temp.staged`` of the accepted lines."""
    params = params or validation_params(settings)
    run_query(con, STAGING_DDL)
    outcomes: dict[int, FileStats | IngestError] = {}
    chain: list[int] = []
    fast_seqs: list[int] = []
    for seq, path in enumerate(inputs):
        try:
            # gzip: our reader inflates with ISA-L, faster than DuckDB's reader (measured)
            use_fast = fast and not is_gzip(path)
            stats = _stage_fast(con, settings, seq, path, params) if use_fast else None
        except IngestError as exc:
            outcomes[seq] = exc
            continue
        if stats is None:
            chain.append(seq)
        else:
            outcomes[seq] = stats
            fast_seqs.append(seq)
    if chain:
        outcomes.update(_stage_chain(con, settings, [(s, inputs[s]) for s in chain], params))
    parts = [
        f"SELECT {seq}::INTEGER AS file_seq, rowid + 1 AS line_no, {_STAGED_COLUMNS} "
        f"FROM {_fast_table(seq)} WHERE ok"
        for seq in fast_seqs
    ]
    parts.append(
        f"SELECT file_seq, line_no, {_STAGED_COLUMNS} FROM temp.ingest_lines WHERE reason IS NULL"
    )
    run_query(con, "CREATE OR REPLACE TEMP VIEW staged AS " + " UNION ALL ".join(parts))
    return outcomes


def drop_duplicates(con: duckdb.DuckDBPyConnection) -> None:
    """Take the duplicate lines (``temp.ingest_dups``, already counted and kept there)
    out of ``temp.staged``: what is left is what the commit writes, read without a join."""
    for (table,) in run_query(con, _FAST_TABLES).fetchall():
        seq = int(str(table).rsplit("_", 1)[1])
        run_query(
            con,
            f"UPDATE temp.{table} SET ok = false WHERE rowid IN "
            "(SELECT line_no - 1 FROM temp.ingest_dups WHERE file_seq = $seq)",
            {"seq": seq},
        )
    run_query(
        con,
        "DELETE FROM temp.ingest_lines WHERE reason IS NULL AND (file_seq, line_no) IN "
        "(SELECT (file_seq, line_no) FROM temp.ingest_dups)",
    )


_FAST_TABLES = (
    "SELECT table_name FROM duckdb_tables() WHERE database_name = 'temp' "
    "AND table_name LIKE 'ingest\\_fast\\_%' ESCAPE '\\'"
)


def drop_staging(con: duckdb.DuckDBPyConnection) -> None:
    tables = [
        r[0]
        for r in run_query(
            con,
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'temp' AND "
            "(table_name LIKE 'ingest\\_fast\\_%' ESCAPE '\\' OR table_name IN "
            "('ingest_lines', 'ingest_dups', 'ingest_counts', 'ingest_dup_hashes', "
            "'ingest_files', 'ingest_days'))",
        ).fetchall()
    ]
    run_query(con, "DROP VIEW IF EXISTS temp.staged")
    for t in tables:
        run_query(con, f'DROP TABLE IF EXISTS temp."{t}"')


# --- the fast path -----------------------------------------------------------------------
def _stage_fast(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    seq: int,
    path: Path,
    params: dict[str, Any],
) -> FileStats | None:
    """Stage ``path`` through DuckDB's reader; None when its lines cannot be numbered
    that way (the caller sends it through the rule chain). IngestError if unreadable."""
    ing = settings.ingest
    table = _fast_table(seq)
    ok, result = _read_fast(con, ing, path, table, params)
    if ok:
        row = run_query(con, f"SELECT count(*) FROM {table}").fetchone()
        ok = result.plain and row is not None and int(row[0]) == result.stats.total_lines
    if ok:
        ok = _recheck_doubtful(con, ing, seq, path, table, result, params)
    if not ok:
        run_query(con, f"DROP TABLE IF EXISTS {table}")
        return None
    result.stats.fast = True
    return result.stats


def _read_fast(
    con: duckdb.DuckDBPyConnection,
    ing: IngestSettings,
    path: Path,
    table: str,
    params: dict[str, Any],
) -> tuple[bool, Scan]:
    """DuckDB's typed read of ``path`` into ``table`` while a thread scans the same file
    (line offsets, hashes, clean-line marks); (False, scan) when DuckDB refused the file."""
    compression = "gzip" if is_gzip(path) else "uncompressed"  # gzip works, if slower
    scanned: list[Scan | BaseException] = []

    def scan() -> None:
        try:
            scanned.append(scan_file(path, ing.chunk_bytes, ing.max_line_bytes))
        except BaseException as exc:  # re-raised below
            scanned.append(exc)

    reader = threading.Thread(target=scan, name="ingest-scan", daemon=True)
    reader.start()
    ok = True
    try:
        con.execute("SET preserve_insertion_order = true")  # rowid k = line k + 1
        run_sql(
            con,
            "ingest_fast",
            {
                **params,
                "path": str(path),
                "compression": compression,
                "max_object_size": ing.max_line_bytes + 2,
            },
            prefix=f"CREATE OR REPLACE TEMP TABLE {table.removeprefix('temp.')} AS ",
        )
    except LakeError:  # e.g. a line over the object size limit: the rule chain decides
        ok = False
    finally:
        con.execute("RESET preserve_insertion_order")
        reader.join()
    result = scanned[0]
    if isinstance(result, BaseException):
        run_query(con, f"DROP TABLE IF EXISTS {table}")
        raise result
    return ok, result


def _recheck_doubtful(
    con: duckdb.DuckDBPyConnection,
    ing: IngestSettings,
    seq: int,
    path: Path,
    table: str,
    result: Scan,
    params: dict[str, Any],
) -> bool:
    """Send the lines the fast path does not vouch for through the rule chain; False when
    they are many (say every line carries nested properties): then the whole file goes,
    cheaper than re-reading."""
    row = run_query(con, f"SELECT count(*) FILTER (WHERE NOT ok) FROM {table}").fetchone()
    unclean = result.unclean_lines()
    rereads = (int(row[0]) if row else 0) + len(unclean)
    if rereads > max(_REREAD_MIN, _REREAD_SHARE * result.stats.total_lines):
        return False
    failing = run_query(con, f"SELECT rowid + 1 AS n FROM {table} WHERE NOT ok").fetchnumpy()
    if len(unclean):
        marks = pa.table({"n": pa.array(unclean - 1, type=pa.int64())})
        con.register("unclean_rows", marks)
        try:
            run_query(
                con, f"UPDATE {table} SET ok = false WHERE rowid IN (SELECT n FROM unclean_rows)"
            )
        finally:
            con.unregister("unclean_rows")
    wanted = np.union1d(np.asarray(failing["n"], dtype=np.int64), unclean)
    if len(wanted):

        def tables() -> Iterator[pa.Table]:
            for lines in reread_lines(path, result, wanted.tolist(), ing.chunk_bytes):
                seqs = pa.array(np.full(lines.num_rows, seq, dtype=np.int32))
                yield lines.add_column(0, "file_seq", seqs)

        _validate_into_staging(con, tables(), params)
    return True


# --- the rule chain ----------------------------------------------------------------------
def _insert_sql() -> str:
    return (
        "INSERT INTO temp.ingest_lines SELECT file_seq, line_no, reason, id, id_hash, "
        "workspace_id, metric, quantity, ts, day, properties, raw FROM ("
        + load_sql("ingest_validate")
        + ") WHERE reason IS DISTINCT FROM 'blank'"
    )


def _validate_into_staging(
    con: duckdb.DuckDBPyConnection, tables: Iterator[pa.Table], params: dict[str, Any]
) -> None:
    """Run the rule chain over ``tables`` (file_seq, line_no, raw, bad_utf8) in ONE
    streaming query into ``temp.ingest_lines`` (per-chunk queries cost ~20% more CPU:
    each one ends with a thread idling)."""
    failure: list[BaseException] = []

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            for table in tables:
                yield from table.to_batches(max_chunksize=_BATCH_ROWS)
        except BaseException as exc:  # re-raised below: DuckDB would only keep the text
            failure.append(exc)
            raise

    reader = pa.RecordBatchReader.from_batches(_STAGE_SCHEMA, batches())
    con.register("chunk", reader)
    try:
        con.execute(_insert_sql(), params)
    except duckdb.Error as exc:
        if failure:
            raise failure[0] from exc
        raise LakeError(f"validation failed: {exc}") from exc
    finally:
        con.unregister("chunk")


def _stage_chain(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    files: Sequence[tuple[int, Path]],
    params: dict[str, Any],
) -> dict[int, FileStats | IngestError]:
    """Stage ``files`` through the rule chain, read on a reader thread. A file that
    fails while being read keeps the lines it streamed until the statement ends; they
    are deleted here."""
    ing = settings.ingest
    outcomes: dict[int, FileStats | IngestError] = {}

    def tables() -> Iterator[pa.Table]:
        for seq, path in files:
            stats = FileStats()
            try:
                for table in read_lines(path, ing.chunk_bytes, ing.max_line_bytes, stats):
                    seqs = pa.array(np.full(table.num_rows, seq, dtype=np.int32))
                    yield table.add_column(0, "file_seq", seqs)
            except IngestError as exc:
                outcomes[seq] = exc
                continue
            outcomes[seq] = stats

    _validate_into_staging(con, prefetch(tables()), params)
    failed = [seq for seq, out in outcomes.items() if isinstance(out, IngestError)]
    if failed:
        run_query(con, "DELETE FROM temp.ingest_lines WHERE file_seq IN ?", [failed])
    long_rows = [
        (seq, ll.line_no, ll.reason(ing.max_line_bytes), ll.kept_text())
        for seq, out in outcomes.items()
        if isinstance(out, FileStats)
        for ll in out.long_lines
    ]
    if long_rows:
        con.executemany(
            "INSERT INTO temp.ingest_lines (file_seq, line_no, reason, raw) VALUES (?, ?, ?, ?)",
            long_rows,
        )
    return outcomes


__all__ = ["STAGING_DDL", "drop_duplicates", "drop_staging", "stage", "validation_params"]
