"""Ingest raw usage logs into the lake: validate, de-duplicate, commit once.

How one ingest works (``ingest(settings, paths)``):

1. **Find** the files: the given files and folders, or the new files of the landing
   folder. A folder that cannot be listed is reported by name (never skipped silently).
2. **Stage** every line (``ingest_stage.py``): DuckDB's own JSON reader reads each file
   with its columns given (``sql/ingest_fast.sql``) while a reader thread hashes it and
   checks the line accounting; the few lines without the usual shape of a valid event,
   and whole files whose lines that reader cannot number exactly (blank lines, lines
   over ``[ingest] max_line_bytes``), take the rule chain (``sql/ingest_validate.sql``),
   which names the first rule a line breaks. A line over the limit is rejected on its
   own ("line too long"), never read into memory.
3. **De-duplicate** (``sql/ingest_duplicates.sql``) against this ingest and the whole
   history: an id already ingested in the same workspace is a duplicate (the first
   stands; a different payload is a *conflict*); an id-less line's identity is its
   file's content hash and line number. 64-bit identity hashes pick the candidates
   (sorted in numpy, in buckets for a large ingest; the history is probed only where its
   id range overlaps ours); ids are then compared exactly.
4. **Commit** events (a few groups of days per INSERT, no global sort), rejects,
   duplicates and one manifest row per file in one DuckLake transaction, under the lake
   write lock. A crash anywhere before the commit leaves nothing visible (the files it
   had written are deleted by lake housekeeping); rerunning the same ingest then does
   the whole job once.
5. **Publish** the rejected lines as JSON lines under ``$BILLING_HOME/rejects/`` (temp
   file, then rename), after the commit; a missing file is rewritten from the lake on
   the next ingest.

A file that cannot be read at all (permissions, a corrupt gzip, an I/O error) fails on
its own: a landing file is moved to ``$BILLING_HOME/quarantine/`` with a
``<name>.reason.json`` beside it (so the next run does not trip on it again), it is
listed in the report's failures, and the other files are still committed.

Every non-blank line of a committed file ends up in exactly one of ``accepted``,
``duplicates``, ``rejected``.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from .._core.errors import IngestError, LakeError, StorageError
from ..config.settings import Settings
from ..storage.files import area
from ..storage.lake import Lake
from ..storage.sqlfiles import run_query, run_sql
from .ingest_files import (
    Claim,
    find_inputs,
    is_under,
    landing_candidates,
    quarantine,
    quarantine_remote,
    remote_landing,
)
from .ingest_read import FileStats
from .ingest_report import FileReport, IngestReport
from .ingest_stage import drop_duplicates, drop_staging, stage, validation_params
from .rejects import publish_rejects, rejects_path, repair_reject_files

#: File name suffixes ingested from folders.
SUFFIXES: tuple[str, ...] = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")


# --- finding input files -----------------------------------------------------------------
def resolve_inputs(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files and folders → the source files, sorted by path. A missing path raises
    IngestError before anything is read; an unreadable file or folder is returned as
    it is and fails on its own when read."""
    files, _errors = find_inputs(paths, SUFFIXES)
    return files


def new_landing_files(settings: Settings, con: duckdb.DuckDBPyConnection) -> list[Path]:
    """Files in the landing folder not yet ingested (same path and size in the manifest;
    on object storage, the same key, size and ETag: see :func:`_new_landing_files`).

    Landing files are expected to be immutable once they appear (producers write to a
    temporary name and rename); a file whose size changed is ingested again, and the
    event ids keep that safe.
    """
    return _new_landing_files(settings, con)[0]


#: A landing object's identity per local copy: (source URL, ETag).
Sources = dict[Path, tuple[str, str | None]]


def _new_landing_files(
    settings: Settings, con: duckdb.DuckDBPyConnection
) -> tuple[list[Path], list[FileReport], Sources]:
    """The landing files to ingest (object storage: local copies, with what each one is
    in ``Sources``), and the files or folders that could not be looked at."""
    seen = {
        (str(r[0]), int(r[1]), None if r[2] is None else str(r[2]))
        for r in run_query(
            con, "SELECT DISTINCT source_file, size_bytes, source_etag FROM ingest_manifest"
        ).fetchall()
    }
    if area(settings, "landing").remote:
        claims, problems = remote_landing(settings, seen, SUFFIXES)
        failures = [FileReport(source_file=str(p), error=msg) for p, msg in problems]
        sources = {c.local: (c.source, c.etag) for c in claims}
        return [c.local for c in claims], failures, sources
    candidates, errors = landing_candidates(settings.landing_dir, SUFFIXES)
    failures = [FileReport(source_file=str(p), error=msg) for p, msg in errors]
    seen_local = {(name, size) for name, size, _ in seen}
    new = [p for p, size in candidates if (str(p), size) not in seen_local]
    return new, failures, {}


# --- the ingest --------------------------------------------------------------------------
#: Staged ids whose 64-bit hashes are sorted in one go (8 bytes each); a larger ingest
#: is split into that many hash buckets, so the dedupe's memory stays bounded.
_HASH_BUCKET_ROWS = 10_000_000
#: Staged rows per INSERT of events (whole days): DuckLake writes one file per day
#: partition and thread, and keeps each open partition's rows in memory until it is
#: written, so a very large ingest goes in a few groups of days.
_INSERT_ROWS = 12_000_000


def _new_ingest_id() -> str:
    return f"ing_{datetime.now(UTC):%Y%m%dT%H%M%S%f}_{secrets.token_hex(2)}"


def ingest(
    settings: Settings,
    paths: Sequence[str | os.PathLike[str]] | None = None,
    *,
    lake: Lake | None = None,
    fast: bool = True,
) -> IngestReport:
    """Ingest ``paths`` (files or folders), or the new files of the landing folder.

    Raises IngestError for a missing path (before anything is read). A file or folder
    that cannot be read is reported in ``files`` with its ``error`` (a landing file is
    moved to the quarantine) and left out; the other files are still committed.
    ``fast=False`` sends every line through the rule chain (for tests: same results).
    """
    lake = lake or Lake(settings)
    failures: list[FileReport] = []
    inputs: list[Path] | None = None
    sources: Sources = {}
    found: dict[str, float] = {}
    if paths:
        inputs, errors = find_inputs(paths, SUFFIXES)
        failures = [FileReport(source_file=str(p), error=msg) for p, msg in errors]
    with lake.write_lock():
        con = lake.connect()
        try:
            repair_reject_files(settings, con)
            if inputs is None:
                clock = (time.perf_counter(), time.process_time())
                inputs, failures, sources = _new_landing_files(settings, con)
                _lap(found, "find", clock)  # listing (object storage: and downloading)
            try:
                report = _ingest_files(settings, lake, con, inputs, fast=fast, sources=sources)
                for f in report.failed:  # claimed by this ingest: moved while it holds the lock
                    _quarantine(settings, f, report.ingest_id, sources)
            finally:
                for local in sources:  # the local copies of landing objects
                    local.unlink(missing_ok=True)
        finally:
            con.close()
    report.files = failures + report.files
    report.timings = {**found, **report.timings}
    return report


def _quarantine(settings: Settings, f: FileReport, ingest_id: str | None, sources: Sources) -> None:
    """Move a landing file that could not be read to the quarantine (not a file given
    from elsewhere, not a folder), so the next run does not trip on it again."""
    claims = {source: (local, etag) for local, (source, etag) in sources.items()}
    if f.source_file in claims:  # a landing object
        local, etag = claims[f.source_file]
        name = f.source_file.removeprefix(area(settings, "landing").root.rstrip("/") + "/")
        claim = Claim(f.source_file, name, local.stat().st_size, etag, local)
        try:
            f.quarantined_to = quarantine_remote(settings, claim, f.error or "", ingest_id)
        except (OSError, StorageError) as exc:
            f.error = f"{f.error} (could not be moved to the quarantine: {exc})"
        else:
            f.error = f"{f.error} (moved to {f.quarantined_to})"
        return
    path = Path(f.source_file)
    if not is_under(path, settings.landing_dir) or path.is_dir() or not os.path.lexists(path):
        return
    try:
        f.quarantined_to = str(quarantine(settings, path, f.error or "", ingest_id))
    except OSError as exc:
        f.error = f"{f.error} (could not be moved to the quarantine: {exc})"
    else:
        f.error = f"{f.error} (moved to {f.quarantined_to})"


def _ingest_files(
    settings: Settings,
    lake: Lake,
    con: duckdb.DuckDBPyConnection,
    inputs: list[Path],
    *,
    fast: bool,
    sources: Sources,
) -> IngestReport:
    if not inputs:
        return IngestReport(ingest_id=None, files=[])
    ingest_id = _new_ingest_id()
    started_at = datetime.now(UTC)
    timings: dict[str, float] = {}
    clock = (time.perf_counter(), time.process_time())
    try:
        outcomes = stage(con, settings, inputs, fast=fast)
        clock = _lap(timings, "stage", clock)
        names = [sources.get(p, (str(p), None)) for p in inputs]
        return _commit(settings, lake, con, inputs, names, outcomes, ingest_id, started_at, timings)
    finally:
        drop_staging(con)


def _commit(
    settings: Settings,
    lake: Lake,
    con: duckdb.DuckDBPyConnection,
    inputs: list[Path],
    names: list[tuple[str, str | None]],
    outcomes: dict[int, FileStats | IngestError],
    ingest_id: str,
    started_at: datetime,
    timings: dict[str, float],
) -> IngestReport:
    """``names``: each input's source name (its path, or its object-store key) and ETag."""
    clock = (time.perf_counter(), time.process_time())
    reports: list[FileReport] = []
    ok: list[tuple[int, Path, FileStats]] = []
    for seq, path in enumerate(inputs):
        out = outcomes[seq]
        source = names[seq][0]
        if isinstance(out, IngestError):
            error = str(out).replace(str(path), source) if source != str(path) else str(out)
            reports.append(FileReport(source_file=source, error=error))
        else:
            ok.append((seq, path, out))
            reports.append(FileReport(source_file=source, sha256=out.sha256))
    if not ok:
        return IngestReport(ingest_id=None, files=reports)
    per_file = _dedupe(con, names, ok)
    clock = _lap(timings, "dedupe", clock)
    snapshot = _write(lake, con, names, ok, ingest_id, started_at)
    clock = _lap(timings, "commit", clock)
    _fill_reports([r for r in reports if not r.error], ok, per_file)
    rejects_file = publish_rejects(settings, con, ingest_id)
    _lap(timings, "publish", clock)
    return IngestReport(
        ingest_id=ingest_id,
        files=reports,
        snapshot_id=snapshot,
        rejects_file=rejects_file,
        timings=timings,
    )


def _dedupe(
    con: duckdb.DuckDBPyConnection,
    names: list[tuple[str, str | None]],
    ok: list[tuple[int, Path, FileStats]],
) -> dict[int, dict[str, Any]]:
    """Drop the staged events already in the lake or repeated in this ingest (kept aside as
    duplicates or conflicts); return each file's counts."""
    con.executemany(
        "INSERT INTO temp.ingest_files VALUES (?, ?, ?, ?, ?)",
        [[seq, names[seq][0], st.sha256, st.size_bytes, st.total_lines] for seq, _, st in ok],
    )
    id_range = _find_repeated_hashes(con)
    run_sql(
        con,
        "ingest_duplicates",
        _history_range(con, id_range),
        prefix="CREATE OR REPLACE TEMP TABLE ingest_dups AS ",
    )
    drop_duplicates(con)  # what is left staged is what the commit writes
    run_query(
        con,
        "CREATE OR REPLACE TEMP TABLE ingest_days AS SELECT file_seq, day, count(*) AS n, "
        "min(ts) AS min_ts, max(ts) AS max_ts FROM temp.staged GROUP BY file_seq, day",
    )
    run_sql(con, "ingest_file_counts", prefix="CREATE OR REPLACE TEMP TABLE ingest_counts AS ")
    return _file_counts(con)


def _write(
    lake: Lake,
    con: duckdb.DuckDBPyConnection,
    names: list[tuple[str, str | None]],
    ok: list[tuple[int, Path, FileStats]],
    ingest_id: str,
    started_at: datetime,
) -> int:
    """One lake transaction: events, rejects, duplicates and the manifest; returns its
    snapshot (LakeError if another writer slipped in)."""
    expected_snapshot = lake.current_snapshot(con) + 1
    extra = {"ingest_id": ingest_id, "files": len(ok)}
    files_by_seq: list[str | None] = [None] * len(names)
    sha_by_seq: list[str | None] = [None] * len(names)
    for seq, _, st in ok:
        files_by_seq[seq], sha_by_seq[seq] = names[seq][0], st.sha256
    with lake.transaction(con, f"ingest {ingest_id}", extra):
        params = {
            "ingest_id": ingest_id,
            "now": started_at,
            "snapshot_id": expected_snapshot,
            "source_files": files_by_seq,
            "source_sha256s": sha_by_seq,
            "source_etags": [etag for _, etag in names],
        }
        for day_from, day_to in _day_groups(con):
            run_sql(con, "ingest_commit_events", {**params, "day_from": day_from, "day_to": day_to})
        for name in ("rejects", "duplicates", "manifest"):
            run_sql(con, f"ingest_commit_{name}", params)
    snapshot = lake.current_snapshot(con)
    if snapshot != expected_snapshot:  # another writer slipped in: the lock was bypassed
        raise LakeError(
            f"ingest {ingest_id} committed as snapshot {snapshot}, expected {expected_snapshot}"
        )
    return snapshot


def _fill_reports(
    ok_reports: list[FileReport],
    ok: list[tuple[int, Path, FileStats]],
    per_file: dict[int, dict[str, Any]],
) -> None:
    by_seq = {seq: (i, st) for i, (seq, _, st) in enumerate(ok)}
    for seq, counts in per_file.items():
        i, stats = by_seq[seq]
        rep = ok_reports[i]
        rep.size_bytes = stats.size_bytes
        rep.lines = counts["lines"]
        rep.blank_lines = stats.total_lines - counts["lines"]
        rep.accepted = counts["accepted"]
        rep.duplicates = counts["duplicates"]
        rep.conflicts = counts["conflicts"]
        rep.rejected = counts["rejected"]
        rep.days = counts["days"]
        rep.top_reject_reason = counts["top_reason"]


def _lap(timings: dict[str, float], name: str, since: tuple[float, float]) -> tuple[float, float]:
    """Record the wall and CPU seconds (all threads) since ``since``; return now."""
    now = (time.perf_counter(), time.process_time())
    timings[name] = round(now[0] - since[0], 3)
    timings[f"{name}_cpu"] = round(now[1] - since[1], 3)
    return now


def _day_groups(con: duckdb.DuckDBPyConnection) -> list[tuple[date, date]]:
    """Consecutive days of new events in groups of about ``_INSERT_ROWS`` rows: each group
    is one INSERT of every file's rows of those days (so many small files still make one
    data file per day), whose scan of the staged lines skips the row groups outside its
    days when they arrived roughly in time order, as logs do."""
    rows = run_query(
        con, "SELECT day, sum(n) FROM temp.ingest_days GROUP BY day ORDER BY day"
    ).fetchall()
    groups: list[tuple[date, date]] = []
    start: date | None = None
    size = 0
    for day, count in rows:
        start = start or day
        size += int(count)
        if size >= _INSERT_ROWS:
            groups.append((start, day))
            start, size = None, 0
    if start is not None:
        groups.append((start, rows[-1][0]))
    return groups


def _find_repeated_hashes(con: duckdb.DuckDBPyConnection) -> tuple[Any, Any]:
    """Fill ``temp.ingest_dup_hashes`` with the id hashes staged more than once.

    Sorting the 64-bit hashes in numpy (vectorised, ~0.1 s per 10M) is far cheaper than
    a hash aggregate over every id; an ingest of more than ``_HASH_BUCKET_ROWS`` ids is
    done in hash buckets so memory stays bounded. Equal hashes are only candidates: the
    ids themselves are compared in ``ingest_duplicates.sql``. Returns the range of the
    staged ids (min, max), read in the same scan."""
    row = run_query(con, "SELECT count(id_hash), min(id), max(id) FROM temp.staged").fetchone()
    staged = int(row[0]) if row else 0
    id_range = (row[1], row[2]) if row else (None, None)
    buckets = max(1, -(-staged // _HASH_BUCKET_ROWS))
    for bucket in range(buckets):
        where = "" if buckets == 1 else " AND id_hash % CAST($buckets AS UBIGINT) = $bucket"
        hashes = run_query(
            con,
            "SELECT id_hash FROM temp.staged WHERE id_hash IS NOT NULL" + where,
            {"buckets": buckets, "bucket": bucket} if buckets > 1 else None,
        ).fetchnumpy()["id_hash"]
        hashes = np.asarray(hashes, dtype=np.uint64)
        hashes.sort()
        repeated = hashes[1:][hashes[1:] == hashes[:-1]]
        del hashes
        if len(repeated):
            found = pa.table({"h": pa.array(np.unique(repeated), type=pa.uint64())})
            con.register("repeated_hashes", found)
            try:
                run_query(con, "INSERT INTO temp.ingest_dup_hashes SELECT h FROM repeated_hashes")
            finally:
                con.unregister("repeated_hashes")
    return id_range


def _history_range(con: duckdb.DuckDBPyConnection, id_range: tuple[Any, Any]) -> dict[str, Any]:
    """Parameters of the history probe: the range of this ingest's ids, and whether any
    committed event id falls in it (DuckLake prunes data files by their id min/max, so
    a lake whose ids are all outside the range answers without reading them)."""
    lo, hi = id_range
    history = False
    if lo is not None:
        found = run_query(
            con,
            "SELECT EXISTS (SELECT 1 FROM events WHERE id BETWEEN $lo AND $hi)",
            {"lo": lo, "hi": hi},
        ).fetchone()
        history = bool(found and found[0])
    return {"history": history, "min_id": lo or "", "max_id": hi or ""}


def _file_counts(con: duckdb.DuckDBPyConnection) -> dict[int, dict[str, Any]]:
    rows = run_query(
        con,
        "SELECT file_seq, lines, rejected, duplicates, conflicts, accepted, days, top_reason "
        "FROM temp.ingest_counts",
    ).fetchall()
    return {
        int(r[0]): {
            "lines": int(r[1]),
            "rejected": int(r[2]),
            "duplicates": int(r[3]),
            "conflicts": int(r[4]),
            "accepted": int(r[5]),
            "days": list(r[6] or []),
            "top_reason": r[7],
        }
        for r in rows
    }


__all__ = [
    "SUFFIXES",
    "FileReport",
    "IngestReport",
    "ingest",
    "new_landing_files",
    "rejects_path",
    "repair_reject_files",
    "resolve_inputs",
    "validation_params",
]
