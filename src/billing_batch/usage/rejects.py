"""The rejected lines of each ingest as a JSON-lines file in the rejects area (a local
folder, ``$BILLING_HOME/rejects/`` by default, or object storage), written from the lake
after the commit, atomically; a missing file is rewritten from the lake on the next
ingest."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from .._core.files import atomic_output
from ..config.settings import Settings
from ..storage.files import area
from ..storage.sqlfiles import run_query, sql_literal


def _rejects_name(ingest_id: str) -> str:
    return f"{ingest_id}.jsonl"


def rejects_path(settings: Settings, ingest_id: str) -> str:
    """Where an ingest's rejected lines are kept (a local path, or an ``s3://`` URL)."""
    return area(settings, "rejects").location(_rejects_name(ingest_id))


def publish_rejects(
    settings: Settings, con: duckdb.DuckDBPyConnection, ingest_id: str
) -> str | None:
    """Write this ingest's rejected lines (from the lake) as JSON lines, atomically (a
    local temporary file renamed into place, or uploaded whole to object storage)."""
    row = run_query(con, "SELECT count(*) FROM rejects WHERE ingest_id = ?", [ingest_id]).fetchone()
    if not row or not row[0]:
        return None
    rejects = area(settings, "rejects")
    name = _rejects_name(ingest_id)
    if not rejects.remote:
        with atomic_output(Path(rejects.location(name))) as tmp:
            _copy_rejects(con, ingest_id, tmp)
        return rejects.location(name)
    settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = settings.tmp_dir / f".{name}.{os.getpid()}.tmp"
    try:
        _copy_rejects(con, ingest_id, tmp)
        return rejects.put_file(tmp, name)  # one PUT: whole or absent
    finally:
        tmp.unlink(missing_ok=True)


def _copy_rejects(con: duckdb.DuckDBPyConnection, ingest_id: str, target: Path) -> None:
    # COPY cannot bind its target path; the path is ours (a folder + generated id).
    run_query(
        con,
        "COPY (SELECT ingest_id, source_file, line_no AS line, reason, raw FROM rejects "
        f"WHERE ingest_id = $ingest_id ORDER BY source_file, line_no) TO "
        f"{sql_literal(str(target))} (FORMAT json)",
        {"ingest_id": ingest_id},
    )


def repair_reject_files(settings: Settings, con: duckdb.DuckDBPyConnection) -> list[str]:
    """Rewrite the rejects file of any committed ingest whose file is missing (a crash
    between the commit and the publish)."""
    ids = [r[0] for r in run_query(con, "SELECT DISTINCT ingest_id FROM rejects").fetchall()]
    rejects = area(settings, "rejects")
    written = []
    for ingest_id in ids:
        if not rejects.exists(_rejects_name(ingest_id)):
            out = publish_rejects(settings, con, ingest_id)
            if out:
                written.append(out)
    return written


__all__ = ["publish_rejects", "rejects_path", "repair_reject_files"]
