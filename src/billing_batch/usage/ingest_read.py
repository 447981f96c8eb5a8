"""Reading source files for ingest: raw lines with their numbers, bounded memory.

Three ways through a file, all with the same line numbering (1-based; a line ends at
``\\n``; a last line without one still counts):

* :func:`read_lines` streams a file as Arrow tables of ``(line_no, raw, bad_utf8)`` for
  the rule chain (``sql/ingest_validate.sql``). A line longer than ``max_line_bytes`` is
  never held in memory: it is read past and reported on its own (number, length, the
  start of its text), to be rejected as "line too long".
* :func:`scan_file` reads a file once for the fast path: SHA-256 of the content, the
  number of lines, whether any line is blank or too long (either sends the file to the
  rule chain), and where every few MiB of lines start (to re-read a few lines later).
* :func:`reread_lines` fetches given lines again, as :func:`read_lines` would yield them,
  reading only the blocks that hold them.

Gzip is detected by its magic bytes (ISA-L's inflate when ``isal`` is installed). A file
that cannot be read at all (permissions, a corrupt gzip, an I/O error) raises
:class:`~billing_batch._core.errors.IngestError` naming it.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import queue
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa

from .._core.errors import IngestError

_GZIP_MAGIC = b"\x1f\x8b"
#: Largest piece read from a gzip stream at once (its output is a fresh bytes object;
#: small pieces keep those allocations recycled instead of page-faulted in each time).
_GZIP_PIECE = 4 * 1024 * 1024
LINES_SCHEMA = pa.schema(
    [("line_no", pa.int64()), ("raw", pa.large_string()), ("bad_utf8", pa.bool_())]
)
#: Bytes of an over-long line kept in its reject (the rest is only counted).
LONG_LINE_KEPT = 1024
#: The fast path's scan records where a line starts about every this many bytes.
_BLOCK_BYTES = 4 * 1024 * 1024
#: A blank line is made of these bytes only (JSON whitespace, and \f \v for good measure).
_BLANK_BYTES = frozenset(b" \t\r\n\f\v")


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


def _read_error(path: Path, exc: BaseException) -> IngestError:
    if isinstance(exc, PermissionError):
        return IngestError(f"file is not readable: {exc.strerror or exc}", path=str(path))
    corrupt = not isinstance(exc, OSError) or isinstance(exc, gzip.BadGzipFile)
    kind = "corrupt gzip" if corrupt else "read error"
    return IngestError(f"{kind}: {exc}", path=str(path))


def is_gzip(path: Path) -> bool:
    """Whether ``path`` starts with the gzip magic bytes (IngestError if unreadable)."""
    try:
        with path.open("rb") as fh:
            return fh.read(2) == _GZIP_MAGIC
    except OSError as exc:
        raise _read_error(path, exc) from exc


def _open_source(fh: IO[bytes]) -> tuple[IO[bytes], int]:
    """The decompressed stream of ``fh`` and the largest piece to read from it at once."""
    magic = fh.read(2)
    fh.seek(0)
    if magic == _GZIP_MAGIC:
        return _GZIP.GzipFile(fileobj=fh, mode="rb"), _GZIP_PIECE
    return fh, 1 << 62


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


def _chunks(path: Path, chunk_bytes: int, hasher: Any | None = None) -> Iterator[np.ndarray]:
    """The content of ``path`` (decompressed) as fresh numpy buffers of about
    ``chunk_bytes`` each, in order, fed to ``hasher`` on the way. Each buffer is a new
    allocation (numpy asks for transparent huge pages: a fresh ``bytearray`` of that
    size costs ~1 s of page faults per GB)."""
    try:
        raw_fh = path.open("rb", buffering=0)
    except OSError as exc:
        raise _read_error(path, exc) from exc
    try:
        src, piece = _open_source(raw_fh)
        while True:
            buf = np.empty(chunk_bytes, dtype=np.uint8)
            n = _fill(src, memoryview(buf), piece)  # type: ignore[arg-type]
            if not n:
                return
            if hasher is not None:
                hasher.update(memoryview(buf)[:n])  # type: ignore[arg-type]
            yield buf[:n]
            if n < chunk_bytes:
                return
    except _READ_ERRORS as exc:
        raise _read_error(path, exc) from exc
    finally:
        raw_fh.close()


# --- streaming lines ---------------------------------------------------------------------
@dataclass
class LongLine:
    """A line longer than the limit: its number, length and the start of its text."""

    line_no: int
    length: int
    head: str

    def reason(self, limit: int) -> str:
        return (
            f"line too long: {self.length:,} bytes (limit {limit:,} bytes, [ingest] max_line_bytes)"
        )

    def kept_text(self) -> str:
        return f"{self.head}... [{self.length - len(self.head.encode()):,} more bytes not kept]"


@dataclass
class FileStats:
    """What reading a whole file found out."""

    sha256: str = ""
    size_bytes: int = 0  # on disk (compressed size for .gz)
    content_bytes: int = 0
    total_lines: int = 0
    long_lines: list[LongLine] = field(default_factory=list)
    #: Whether the file was staged by the fast path (DuckDB's reader), else the rule chain.
    fast: bool = False


def _decode_head(data: bytes) -> str:
    return data[:LONG_LINE_KEPT].decode("utf-8", errors="backslashreplace")


def _offsets(nl: np.ndarray) -> np.ndarray:
    offsets = np.empty(len(nl) + 1, dtype=np.int64)
    offsets[0] = 0
    offsets[1:] = nl
    offsets[1:] += 1
    return offsets


def _lines_table(buf: np.ndarray, first_line: int, nl: np.ndarray | None = None) -> pa.Table:
    """Arrow table (line_no, raw, bad_utf8) over ``buf`` (complete lines, each ending in
    a newline, which stays in the text: JSON whitespace), without copying the text.
    ``nl``: the newline positions, when known."""
    if nl is None:
        nl = np.flatnonzero(buf == 10)
    m = len(nl)
    offsets = _offsets(nl)
    line_no = pa.array(np.arange(first_line, first_line + m, dtype=np.int64))
    raw = pa.LargeStringArray.from_buffers(m, pa.py_buffer(offsets), pa.py_buffer(buf))
    try:
        raw.validate(full=True)
        bad = pa.nulls(m, pa.bool_())
    except pa.ArrowInvalid:
        raw, bad = _repair_utf8(buf.tobytes(), offsets)
    return pa.Table.from_arrays([line_no, raw, bad], schema=LINES_SCHEMA)


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


def _complete_lines(
    buf: np.ndarray, first_line: int, max_line_bytes: int, long_lines: list[LongLine]
) -> tuple[pa.Table | None, int]:
    """The line table of ``buf`` (complete lines) without its over-long lines (recorded
    in ``long_lines``), and the number of lines it held."""
    nl = np.flatnonzero(buf == 10)
    lengths = np.diff(_offsets(nl)) - 1
    long_idx = np.flatnonzero(lengths > max_line_bytes)
    table = _lines_table(buf, first_line, nl)
    if len(long_idx):
        starts = _offsets(nl)[:-1]
        for i in long_idx:
            head = buf[starts[i] : starts[i] + LONG_LINE_KEPT].tobytes()
            long_lines.append(LongLine(first_line + int(i), int(lengths[i]), _decode_head(head)))
        keep = np.ones(len(nl), dtype=bool)
        keep[long_idx] = False
        table = table.filter(pa.array(keep))
    return (table if table.num_rows else None), len(nl)


def read_lines(
    path: Path, chunk_bytes: int, max_line_bytes: int, stats: FileStats
) -> Iterator[pa.Table]:
    """Yield the line tables of ``path``; fill ``stats`` (hash, size, lines, long lines)
    at the end. Memory stays bounded by ``chunk_bytes`` + ``max_line_bytes``: a line
    longer than the limit is read past, never held."""
    hasher = hashlib.sha256()
    rem = np.empty(0, dtype=np.uint8)
    next_line = 1
    size = 0
    skipping: int | None = None  # bytes of an over-long line read past so far
    skip_head = b""
    for data in _chunks(path, chunk_bytes, hasher):
        size += len(data)
        if skipping is not None:
            hits = np.flatnonzero(data == 10)
            if not len(hits):
                skipping += len(data)
                continue
            end = int(hits[0])
            stats.long_lines.append(LongLine(next_line, skipping + end, _decode_head(skip_head)))
            next_line += 1
            skipping, skip_head = None, b""
            data = data[end + 1 :]
        buf = np.concatenate([rem, data]) if len(rem) else data
        cut = _after_last_newline(buf, 0, len(buf))
        if not cut:  # no newline yet: keep the line unless it is already too long
            if len(buf) > max_line_bytes:
                skipping, skip_head = len(buf), buf[:LONG_LINE_KEPT].tobytes()
                rem = np.empty(0, dtype=np.uint8)
            else:
                rem = buf.copy()
            continue
        rem = buf[cut:].copy()
        table, count = _complete_lines(buf[:cut], next_line, max_line_bytes, stats.long_lines)
        next_line += count
        if table is not None:
            yield table
    if skipping is not None:  # the file ends inside an over-long line
        stats.long_lines.append(LongLine(next_line, skipping, _decode_head(skip_head)))
        next_line += 1
    elif len(rem):  # a last line without a newline
        buf = np.concatenate([rem, np.array([10], dtype=np.uint8)])
        table, count = _complete_lines(buf, next_line, max_line_bytes, stats.long_lines)
        next_line += count
        if table is not None:
            yield table
    stats.sha256 = hasher.hexdigest()
    stats.size_bytes = path.stat().st_size
    stats.content_bytes = size
    stats.total_lines = next_line - 1


_DONE = object()


def prefetch(it: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Run ``it`` on a reader thread, ``depth`` items ahead (file reads, inflate, SHA-256
    and numpy release the GIL, so reading overlaps DuckDB's work)."""
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
            yield item
    finally:
        stop.set()
        t.join()


__all__ = [
    "LINES_SCHEMA",
    "FileStats",
    "LongLine",
    "is_gzip",
    "prefetch",
    "read_lines",
]
