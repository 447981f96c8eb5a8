"""The rejected lines of each ingest as a JSON-lines file under ``$BILLING_HOME/rejects/``,
written from the lake after the commit (atomically); a missing file is rewritten from the
lake on the next ingest."""

from __future__ import annotations

from pathlib import Path

import duckdb

from .._core.files import atomic_output
from ..config.settings import Settings
from ..storage.sqlfiles import run_query, sql_literal


def rejects_path(settings: Settings, ingest_id: str) -> Path:
    return settings.rejects_dir / f"{ingest_id}.jsonl"


def publish_rejects(
    settings: Settings, con: duckdb.DuckDBPyConnection, ingest_id: str
) -> str | None:
    """Write this ingest's rejected lines (from the lake) as JSON lines, atomically."""
    row = run_query(con, "SELECT count(*) FROM rejects WHERE ingest_id = ?", [ingest_id]).fetchone()
    if not row or not row[0]:
        return None
    target = rejects_path(settings, ingest_id)
    with atomic_output(target) as tmp:
        # COPY cannot bind its target path; the path is ours (rejects dir + generated id).
        run_query(
            con,
            "COPY (SELECT ingest_id, source_file, line_no AS line, reason, raw FROM rejects "
            f"WHERE ingest_id = $ingest_id ORDER BY source_file, line_no) "
            f"TO {sql_literal(str(tmp))} (FORMAT json)",
            {"ingest_id": ingest_id},
        )
    return str(target)


def repair_reject_files(settings: Settings, con: duckdb.DuckDBPyConnection) -> list[str]:
    """Rewrite the rejects file of any committed ingest whose file is missing (a crash
    between the commit and the publish)."""
    ids = [r[0] for r in run_query(con, "SELECT DISTINCT ingest_id FROM rejects").fetchall()]
    written = []
    for ingest_id in ids:
        if not rejects_path(settings, ingest_id).exists():
            out = publish_rejects(settings, con, ingest_id)
            if out:
                written.append(out)
    return written


__all__ = ["publish_rejects", "rejects_path", "repair_reject_files"]
