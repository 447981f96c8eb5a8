"""Ingest raw usage logs into the lake: validate, de-duplicate, commit once.

How one ingest works (``ingest(settings, paths)``):

1. **Read** each file (``.jsonl``/``.ndjson``, gzip detected by its magic bytes; ISA-L's
   inflate when ``isal`` is installed) in fixed-size chunks on a reader thread: numpy
   finds the newlines, the chunk becomes an Arrow string array without copying, and the
   file's SHA-256 (of the decompressed content) is computed on the way. Memory is
   bounded by the chunk size, whatever the file size.
2. **Validate** all files in ONE streaming DuckDB query (``sql/ingest_validate.sql``)
   over those chunks: one JSON parse per line, a cheap fast path for the usual shape of
   a valid line and the full rule chain (naming the reason) for the others. Lines land
   in a temporary staging table that DuckDB spills to disk under its memory limit.
3. **De-duplicate** (``sql/ingest_duplicates.sql``) against this ingest and the whole
   history: an id already ingested is a duplicate (the first stands; a different
   payload is a *conflict*); an id-less line's identity is its file's content hash and
   line number. 64-bit id hashes pick the candidates (sorted in numpy, in buckets for a
   large ingest; the history is probed only where its id range overlaps ours); ids are
   then compared exactly.
4. **Commit** events (sorted by day and workspace, a few groups of days per INSERT so
   each sort fits in memory), rejects, duplicates and one manifest row per file in one
   DuckLake transaction, under the lake write lock. A crash anywhere before the commit
   leaves nothing visible; rerunning the same ingest then does the whole job once.
5. **Publish** the rejected lines as JSON lines under ``$BILLING_HOME/rejects/`` (temp
   file, then rename), after the commit; a missing file is rewritten from the lake on
   the next ingest.

Every non-blank line ends up in exactly one of ``accepted``, ``duplicates``,
``rejected``.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import os
import queue
import secrets
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

import duckdb
import numpy as np
import pyarrow as pa

from ._core.errors import IngestError, LakeError
from .config.settings import Settings
from .storage.lake import Lake, load_sql, run_query, run_sql, sql_literal

#: File name suffixes ingested from folders.
SUFFIXES: tuple[str, ...] = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")
_GZIP_MAGIC = b"\x1f\x8b"


# --- reports ---------------------------------------------------------------------------
@dataclass
class FileReport:
    """What happened to one source file."""

    source_file: str
    sha256: str = ""
    size_bytes: int = 0
    lines: int = 0  # non-blank lines
    blank_lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    rejected: int = 0
    days: list[date] = field(default_factory=list)
    error: str | None = None


@dataclass
class IngestReport:
    """The outcome of one ingest call."""

    ingest_id: str | None
    files: list[FileReport]
    snapshot_id: int | None = None
    rejects_file: str | None = None
    #: Wall and CPU (``*_cpu``) seconds per phase: stage, dedupe, commit, publish.
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> list[FileReport]:
        return [f for f in self.files if f.error]

    def total(self, name: str) -> int:
        return sum(int(getattr(f, name)) for f in self.files if not f.error)

    @property
    def days(self) -> list[date]:
        return sorted({d for f in self.files if not f.error for d in f.days})

    def to_dict(self) -> dict[str, Any]:
        return {
            "ingest_id": self.ingest_id,
            "files": len([f for f in self.files if not f.error]),
            "lines": self.total("lines"),
            "accepted": self.total("accepted"),
            "duplicates": self.total("duplicates"),
            "rejected": self.total("rejected"),
            "conflicts": self.total("conflicts"),
            "blank_lines": self.total("blank_lines"),
            "days": [d.isoformat() for d in self.days],
            "snapshot_id": self.snapshot_id,
            "rejects_file": self.rejects_file,
            "failed_files": [{"file": f.source_file, "error": f.error} for f in self.failed],
            "per_file": [
                {k: v for k, v in asdict(f).items() if k not in ("days", "error")}
                for f in self.files
                if not f.error
            ],
        }


# --- finding input files -----------------------------------------------------------------
def _is_source(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and not name.startswith(".") and name.endswith(SUFFIXES)


def resolve_inputs(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files and folders → the source files, sorted by path. Missing or unreadable
    paths raise IngestError before anything is read."""
    out: set[Path] = set()
    for raw in paths:
        p = Path(raw).expanduser().resolve()
        if not p.exists():
            raise IngestError("no such file or directory", path=str(raw))
        if p.is_dir():
            if not os.access(p, os.R_OK | os.X_OK):
                raise IngestError("directory is not readable", path=str(raw))
            out.update(c for c in p.rglob("*") if _is_source(c))
        else:
            if not os.access(p, os.R_OK):
                raise IngestError("file is not readable", path=str(raw))
            out.add(p)
    return sorted(out)


def new_landing_files(settings: Settings, con: duckdb.DuckDBPyConnection) -> list[Path]:
    """Files in the landing folder not yet ingested (same path and size in the manifest).

    Landing files are expected to be immutable once they appear (producers write to a
    temporary name and rename); a file whose size changed is ingested again, and the
    event ids keep that safe.
    """
    landing = settings.landing_dir
    if not landing.is_dir():
        return []
    candidates = sorted(p.resolve() for p in landing.rglob("*") if _is_source(p))
    if not candidates:
        return []
    seen = {
        (r[0], int(r[1]))
        for r in run_query(
            con, "SELECT DISTINCT source_file, size_bytes FROM ingest_manifest"
        ).fetchall()
    }
    return [p for p in candidates if (str(p), p.stat().st_size) not in seen]


# --- reading chunks ----------------------------------------------------------------------
def _gzip_module() -> Any:
    """ISA-L's gzip (``isal.igzip``: same API and errors, ~2.5x faster inflate) when
    installed, else the standard library's."""
    try:
        return importlib.import_module("isal.igzip")
    except ImportError:
        return gzip


def _gzip_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [EOFError, zlib.error]
    try:
        errors.append(importlib.import_module("isal.isal_zlib").error)
    except ImportError:
        pass
    return tuple(errors)


_GZIP = _gzip_module()
_GZIP_ERRORS = _gzip_errors()
_READ_ERRORS: tuple[type[BaseException], ...] = (OSError, *_GZIP_ERRORS)
#: Largest piece read from a gzip stream at once (its output is a fresh bytes object;
#: small pieces keep those allocations recycled instead of page-faulted in each time).
_GZIP_PIECE = 4 * 1024 * 1024
_LINES_SCHEMA = pa.schema(
    [("line_no", pa.int64()), ("raw", pa.large_string()), ("bad_utf8", pa.bool_())]
)
_STAGE_SCHEMA = _LINES_SCHEMA.insert(0, pa.field("file_seq", pa.int32()))
#: Rows per Arrow batch handed to DuckDB (its threads take batches in turn).
_BATCH_ROWS = 64 * 1024


def _lines_table(buf: np.ndarray, size: int, first_line: int) -> pa.Table:
    """Arrow table (line_no, raw, bad_utf8) over ``buf[:size]`` (complete lines, each
    ending in a newline, which stays in the text: JSON whitespace), without copying the
    text."""
    nl = np.flatnonzero(buf[:size] == 10)
    m = len(nl)
    offsets = np.empty(m + 1, dtype=np.int64)
    offsets[0] = 0
    offsets[1:] = nl
    offsets[1:] += 1
    line_no = pa.array(np.arange(first_line, first_line + m, dtype=np.int64))
    raw = pa.LargeStringArray.from_buffers(m, pa.py_buffer(offsets), pa.py_buffer(buf[:size]))
    try:
        raw.validate(full=True)
        bad = pa.nulls(m, pa.bool_())
    except pa.ArrowInvalid:
        raw, bad = _repair_utf8(buf[:size].tobytes(), offsets)
    return pa.Table.from_arrays([line_no, raw, bad], schema=_LINES_SCHEMA)


def _repair_utf8(buf: bytes, offsets: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """Slow path for a chunk holding invalid UTF-8: flag the bad lines, keep their text
    with the undecodable bytes escaped (``\\xNN``), so the reject keeps them."""
    texts: list[str] = []
    flags: list[bool] = []
    for i in range(len(offsets) - 1):
        b = buf[offsets[i] : offsets[i + 1]]
        try:
            texts.append(b.decode("utf-8"))
            flags.append(False)
        except UnicodeDecodeError:
            texts.append(b.decode("utf-8", errors="backslashreplace"))
            flags.append(True)
    return pa.array(texts, type=pa.large_string()), pa.array(flags, type=pa.bool_())


@dataclass
class _FileStats:
    sha256: str = ""
    size_bytes: int = 0
    content_bytes: int = 0
    total_lines: int = 0


def _fill(src: IO[bytes], view: memoryview, piece: int) -> int:
    """Read into ``view`` until it is full or the stream ends; return the bytes read."""
    got = 0
    while got < len(view):
        n = src.readinto(view[got : got + piece])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    return got


def _after_last_newline(buf: np.ndarray, lo: int, hi: int) -> int:
    """Index just past the last newline of ``buf[lo:hi]`` (0 when there is none),
    searching backwards in growing windows: lines are short, chunks are large."""
    window = 1 << 16
    while hi > lo:
        start = max(lo, hi - window)
        hits = np.flatnonzero(buf[start:hi] == 10)
        if len(hits):
            return start + int(hits[-1]) + 1
        hi = start
        window *= 4
    return 0


def _read_file(path: Path, chunk_bytes: int, stats: _FileStats) -> Iterator[pa.Table]:
    """Yield line tables of ``path``; fill ``stats`` (hash, size, lines) at the end.

    Each chunk is a fresh numpy buffer (numpy asks for transparent huge pages: a fresh
    ``bytearray`` of that size costs ~1 s of page faults per GB) that the Arrow table of
    the chunk then owns; the partial last line moves to the next chunk."""
    hasher = hashlib.sha256()
    rem = np.empty(0, dtype=np.uint8)
    next_line = 1
    size = 0
    raw_fh = path.open("rb", buffering=0)
    try:
        src, piece = _open_source_from(raw_fh)
        while True:
            buf = np.empty(len(rem) + chunk_bytes, dtype=np.uint8)
            buf[: len(rem)] = rem
            n = _fill(src, memoryview(buf)[len(rem) :], piece)  # type: ignore[arg-type]
            if n:
                hasher.update(memoryview(buf)[len(rem) : len(rem) + n])  # type: ignore[arg-type]
                size += n
                end = len(rem) + n
                cut = _after_last_newline(buf, len(rem), end)
                if not cut:  # no newline yet: a line longer than the chunk, read more
                    rem = buf[:end]
                    continue
                rem = buf[cut:end].copy()
            else:
                if not len(rem):
                    break
                buf = np.concatenate([rem, np.array([10], dtype=np.uint8)])  # no final newline
                cut = len(buf)
                rem = np.empty(0, dtype=np.uint8)
            table = _lines_table(buf, cut, next_line)
            next_line += table.num_rows
            yield table
    except _READ_ERRORS as exc:
        corrupt = not isinstance(exc, OSError) or isinstance(exc, gzip.BadGzipFile)
        kind = "corrupt gzip" if corrupt else "read error"
        raise IngestError(f"{kind}: {exc}", path=str(path)) from exc
    finally:
        raw_fh.close()
    stats.sha256 = hasher.hexdigest()
    stats.size_bytes = path.stat().st_size  # on disk (compressed for .gz)
    stats.content_bytes = size
    stats.total_lines = next_line - 1


def _open_source_from(fh: IO[bytes]) -> tuple[IO[bytes], int]:
    """The decompressed stream of ``fh`` and the largest piece to read from it at once."""
    magic = fh.read(2)
    fh.seek(0)
    if magic == _GZIP_MAGIC:
        return _GZIP.GzipFile(fileobj=fh, mode="rb"), _GZIP_PIECE
    return fh, 1 << 62


_DONE = object()


def _prefetch(it: Iterator[pa.Table], depth: int = 2) -> Iterator[pa.Table]:
    """Run ``it`` on a reader thread, ``depth`` chunks ahead (file reads, inflate, SHA-256
    and numpy release the GIL, so reading overlaps DuckDB's validation)."""
    q: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def worker() -> None:
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_DONE)
        except BaseException as exc:  # handed to the consumer, re-raised there
            q.put(exc)

    t = threading.Thread(target=worker, name="ingest-reader", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, pa.Table)
            yield item
    finally:
        stop.set()
        t.join()


# --- the ingest --------------------------------------------------------------------------
#: Staged lines of one ingest: accepted ones typed (``reason`` NULL), rejected ones with
#: their reason and raw text. ``id_hash`` = hash(workspace_id, id): the dedupe's 64-bit pre-filter.
_STAGING_DDL = """
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
CREATE OR REPLACE TEMP VIEW staged AS
    SELECT file_seq, line_no, id, id_hash, workspace_id, metric, quantity, ts, day, properties
    FROM temp.ingest_lines WHERE reason IS NULL;
"""

#: Staged ids whose 64-bit hashes are sorted in one go (8 bytes each); a larger ingest
#: is split into that many hash buckets, so the dedupe's memory stays bounded.
_HASH_BUCKET_ROWS = 10_000_000
#: Staged rows per sorted INSERT of events (whole days): small enough to sort in memory
#: under the default 1 GB limit, large enough that each INSERT is worth its scan.
_SORT_ROWS = 2_500_000
_MAX_SORT_GROUPS = 8


def _new_ingest_id() -> str:
    return f"ing_{datetime.now(UTC):%Y%m%dT%H%M%S%f}_{secrets.token_hex(2)}"


def validation_params(settings: Settings) -> dict[str, Any]:
    return {
        "metrics": [f'"{m}"' for m in settings.metrics],
        "metric_names": list(settings.metrics),
        "whole": [d.whole for d in settings.metrics.values()],
        "max_id_length": settings.ingest.max_id_length,
        "fast": True,
    }


def _read_files(
    inputs: Sequence[Path], chunk_bytes: int, outcomes: dict[int, _FileStats | IngestError]
) -> Iterator[pa.Table]:
    """Line tables of every input, tagged with its ``file_seq``; each file's stats, or
    the IngestError that stopped it (a corrupt gzip), go into ``outcomes``."""
    for seq, path in enumerate(inputs):
        stats = _FileStats()
        try:
            for table in _read_file(path, chunk_bytes, stats):
                seqs = pa.array(np.full(table.num_rows, seq, dtype=np.int32))
                yield table.add_column(0, "file_seq", seqs)
        except IngestError as exc:
            outcomes[seq] = exc
            continue
        outcomes[seq] = stats


def _stage_files(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    inputs: Sequence[Path],
    *,
    params: dict[str, Any] | None = None,
) -> dict[int, _FileStats | IngestError]:
    """Validate every line of ``inputs`` into ``temp.ingest_lines`` in ONE streaming
    query (per-chunk queries cost ~20% more CPU: each one ends with a thread idling), the
    files read on a reader thread. A file that fails while being read keeps the lines
    it streamed until the statement ends; they are deleted here."""
    insert = (
        "INSERT INTO temp.ingest_lines SELECT file_seq, line_no, reason, id, id_hash, "
        "workspace_id, metric, quantity, ts, day, properties, raw FROM ("
        + load_sql("ingest_validate")
        + ") WHERE reason IS DISTINCT FROM 'blank'"
    )
    outcomes: dict[int, _FileStats | IngestError] = {}
    failure: list[BaseException] = []

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            tables = _prefetch(_read_files(inputs, settings.ingest.chunk_bytes, outcomes))
            for table in tables:
                yield from table.to_batches(max_chunksize=_BATCH_ROWS)
        except BaseException as exc:  # re-raised below: DuckDB would only keep the text
            failure.append(exc)
            raise

    reader = pa.RecordBatchReader.from_batches(_STAGE_SCHEMA, batches())
    con.register("chunk", reader)
    try:
        con.execute(insert, params or validation_params(settings))
    except duckdb.Error as exc:
        if failure:
            raise failure[0] from exc
        raise LakeError(f"validation failed: {exc}") from exc
    finally:
        con.unregister("chunk")
    failed = [seq for seq, out in outcomes.items() if isinstance(out, IngestError)]
    if failed:
        run_query(con, "DELETE FROM temp.ingest_lines WHERE file_seq IN ?", [failed])
    return outcomes


def ingest(
    settings: Settings,
    paths: Sequence[str | os.PathLike[str]] | None = None,
    *,
    lake: Lake | None = None,
) -> IngestReport:
    """Ingest ``paths`` (files or folders), or the new files of the landing folder.

    Raises IngestError for a missing or unreadable path (before anything is read). A
    file that fails while being read (a corrupt gzip) is reported in ``files`` with its
    ``error`` and left out; the other files are still committed.
    """
    lake = lake or Lake(settings)
    inputs = resolve_inputs(paths) if paths else None
    with lake.write_lock():
        con = lake.connect()
        try:
            repair_reject_files(settings, con)
            if inputs is None:
                inputs = new_landing_files(settings, con)
            return _ingest_files(settings, lake, con, inputs)
        finally:
            con.close()


def _ingest_files(
    settings: Settings, lake: Lake, con: duckdb.DuckDBPyConnection, inputs: list[Path]
) -> IngestReport:
    if not inputs:
        return IngestReport(ingest_id=None, files=[])
    ingest_id = _new_ingest_id()
    started_at = datetime.now(UTC)
    timings: dict[str, float] = {}
    clock = (time.perf_counter(), time.process_time())
    run_query(con, _STAGING_DDL)
    outcomes = _stage_files(con, settings, inputs)
    reports: list[FileReport] = []
    ok: list[tuple[int, Path, _FileStats]] = []
    for seq, path in enumerate(inputs):
        out = outcomes[seq]
        if isinstance(out, IngestError):
            reports.append(FileReport(source_file=str(path), error=str(out)))
        else:
            ok.append((seq, path, out))
            reports.append(FileReport(source_file=str(path), sha256=out.sha256))
    if not ok:
        return IngestReport(ingest_id=None, files=reports)
    clock = _lap(timings, "stage", clock)

    con.executemany(
        "INSERT INTO temp.ingest_files VALUES (?, ?, ?, ?, ?)",
        [[seq, str(p), st.sha256, st.size_bytes, st.total_lines] for seq, p, st in ok],
    )
    _find_repeated_hashes(con)
    run_sql(
        con,
        "ingest_duplicates",
        _history_range(con),
        prefix="CREATE OR REPLACE TEMP TABLE ingest_dups AS ",
    )
    run_sql(con, "ingest_file_counts", prefix="CREATE OR REPLACE TEMP TABLE ingest_counts AS ")
    per_file = _file_counts(con)
    clock = _lap(timings, "dedupe", clock)
    expected_snapshot = lake.current_snapshot(con) + 1
    extra = {"ingest_id": ingest_id, "files": len(ok)}
    files_by_seq: list[str | None] = [None] * len(inputs)
    sha_by_seq: list[str | None] = [None] * len(inputs)
    for seq, p, st in ok:
        files_by_seq[seq], sha_by_seq[seq] = str(p), st.sha256
    with lake.transaction(con, f"ingest {ingest_id}", extra):
        params = {
            "ingest_id": ingest_id,
            "now": started_at,
            "snapshot_id": expected_snapshot,
            "source_files": files_by_seq,
            "source_sha256s": sha_by_seq,
        }
        for day_from, day_to in _day_groups(con):
            run_sql(con, "ingest_commit_events", {**params, "day_from": day_from, "day_to": day_to})
        for name in ("rejects", "duplicates", "manifest"):
            run_sql(con, f"ingest_commit_{name}", params)
    clock = _lap(timings, "commit", clock)
    snapshot = lake.current_snapshot(con)
    if snapshot != expected_snapshot:  # another writer slipped in: the lock was bypassed
        raise LakeError(
            f"ingest {ingest_id} committed as snapshot {snapshot}, expected {expected_snapshot}"
        )
    by_seq = {seq: p for seq, p, _ in ok}
    for seq, counts in per_file.items():
        rep = next(r for r in reports if r.source_file == str(by_seq[seq]))
        stats = next(st for s, _, st in ok if s == seq)
        rep.size_bytes = stats.size_bytes
        rep.lines = counts["lines"]
        rep.blank_lines = stats.total_lines - counts["lines"]
        rep.accepted = counts["accepted"]
        rep.duplicates = counts["duplicates"]
        rep.conflicts = counts["conflicts"]
        rep.rejected = counts["rejected"]
        rep.days = counts["days"]
    rejects_file = _publish_rejects(settings, con, ingest_id)
    run_query(
        con,
        "DROP TABLE IF EXISTS temp.ingest_lines; DROP TABLE IF EXISTS temp.ingest_dups; "
        "DROP TABLE IF EXISTS temp.ingest_counts; DROP TABLE IF EXISTS temp.ingest_dup_hashes",
    )
    _lap(timings, "publish", clock)
    return IngestReport(
        ingest_id=ingest_id,
        files=reports,
        snapshot_id=snapshot,
        rejects_file=rejects_file,
        timings=timings,
    )


def _lap(timings: dict[str, float], name: str, since: tuple[float, float]) -> tuple[float, float]:
    """Record the wall and CPU seconds (all threads) since ``since``; return now."""
    now = (time.perf_counter(), time.process_time())
    timings[name] = round(now[0] - since[0], 3)
    timings[f"{name}_cpu"] = round(now[1] - since[1], 3)
    return now


def _day_groups(con: duckdb.DuckDBPyConnection) -> list[tuple[date, date]]:
    """Consecutive days of staged events in groups of about ``_SORT_ROWS`` rows (fewer,
    larger groups for a large ingest): each group is sorted and written by one INSERT,
    whose sort then stays in memory; its scan of the staged lines skips the row groups
    outside its days when they arrived roughly in time order (as logs do)."""
    rows = run_query(
        con,
        "SELECT day, count(*) FROM temp.ingest_lines WHERE reason IS NULL "
        "GROUP BY day ORDER BY day",
    ).fetchall()
    # at most _MAX_SORT_GROUPS scans of the staged lines, whatever their order
    target = max(_SORT_ROWS, -(-sum(int(c) for _, c in rows) // _MAX_SORT_GROUPS))
    groups: list[tuple[date, date]] = []
    start: date | None = None
    size = 0
    for day, count in rows:
        start = start or day
        size += int(count)
        if size >= target:
            groups.append((start, day))
            start, size = None, 0
    if start is not None:
        groups.append((start, rows[-1][0]))
    return groups


def _find_repeated_hashes(con: duckdb.DuckDBPyConnection) -> None:
    """Fill ``temp.ingest_dup_hashes`` with the id hashes staged more than once.

    Sorting the 64-bit hashes in numpy (vectorised, ~0.1 s per 10M) is far cheaper than
    a hash aggregate over every id; an ingest of more than ``_HASH_BUCKET_ROWS`` ids is
    done in hash buckets so memory stays bounded. Equal hashes are only candidates: the
    ids themselves are compared in ``ingest_duplicates.sql``."""
    row = run_query(con, "SELECT count(id_hash) FROM temp.ingest_lines").fetchone()
    staged = int(row[0]) if row else 0
    buckets = max(1, -(-staged // _HASH_BUCKET_ROWS))
    for bucket in range(buckets):
        hashes = run_query(
            con,
            "SELECT id_hash FROM temp.ingest_lines WHERE id_hash IS NOT NULL "
            "AND id_hash % CAST($buckets AS UBIGINT) = CAST($bucket AS UBIGINT)",
            {"buckets": buckets, "bucket": bucket},
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


def _history_range(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Parameters of the history probe: the range of this ingest's ids, and whether any
    committed event id falls in it (DuckLake prunes data files by their id min/max, so
    a lake whose ids are all outside the range answers without reading them)."""
    row = run_query(con, "SELECT min(id), max(id) FROM temp.ingest_lines").fetchone()
    lo, hi = (row[0], row[1]) if row else (None, None)
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
        "SELECT file_seq, lines, rejected, duplicates, conflicts, accepted, days "
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
        }
        for r in rows
    }


# --- rejects files ---------------------------------------------------------------------
def rejects_path(settings: Settings, ingest_id: str) -> Path:
    return settings.rejects_dir / f"{ingest_id}.jsonl"


def _publish_rejects(
    settings: Settings, con: duckdb.DuckDBPyConnection, ingest_id: str
) -> str | None:
    """Write this ingest's rejected lines (from the lake) as JSON lines, atomically."""
    row = run_query(con, "SELECT count(*) FROM rejects WHERE ingest_id = ?", [ingest_id]).fetchone()
    if not row or not row[0]:
        return None
    target = rejects_path(settings, ingest_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    # COPY cannot bind its target path; the path is ours (rejects dir + generated id).
    con.execute(
        "COPY (SELECT ingest_id, source_file, line_no AS line, reason, raw FROM rejects "
        f"WHERE ingest_id = $ingest_id ORDER BY source_file, line_no) TO {sql_literal(str(tmp))} "
        "(FORMAT json)",
        {"ingest_id": ingest_id},
    )
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    return str(target)


def repair_reject_files(settings: Settings, con: duckdb.DuckDBPyConnection) -> list[str]:
    """Rewrite the rejects file of any committed ingest whose file is missing (a crash
    between the commit and the publish)."""
    ids = [r[0] for r in run_query(con, "SELECT DISTINCT ingest_id FROM rejects").fetchall()]
    written = []
    for ingest_id in ids:
        if not rejects_path(settings, ingest_id).exists():
            out = _publish_rejects(settings, con, ingest_id)
            if out:
                written.append(out)
    return written
