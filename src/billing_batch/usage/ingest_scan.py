"""The fast path's scan of a file and its re-reads (see :mod:`.ingest_read` for the line
numbering all readers share): one pass hashes the file, counts its lines, finds blank,
over-long and unclean lines and indexes a line start every few MiB, so that the rows
DuckDB's own reader returns can be numbered, and any line re-read alone."""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from .ingest_read import (
    _BLANK_BYTES,
    _BLOCK_BYTES,
    _READ_ERRORS,
    FileStats,
    _after_last_newline,
    _chunks,
    _lines_table,
    _read_error,
    is_gzip,
)


@dataclass
class Scan:
    """What :func:`scan_file` found: enough to number the lines another reader returns
    in order, and to re-read any of them."""

    stats: FileStats
    #: Whether every line has non-blank content and is within the length limit (and the
    #: content is not empty): only then is a row-per-line reader's row k line k + 1.
    plain: bool = True
    #: Longest line in bytes (newline excluded).
    longest: int = 0
    #: (content offset, line number) of a line start about every few MiB, ascending.
    blocks: list[tuple[int, int]] = field(default_factory=list)
    #: Lines that are not provably ONE JSON object and nothing after it (their last byte
    #: before the newline, or ``\r\n``, is not ``}``, or they hold more or fewer than one
    #: ``}``): DuckDB's reader stops after the first value and would ignore what follows,
    #: the rule chain calls it invalid JSON, so these lines take the rule chain.
    unclean: list[np.ndarray] = field(default_factory=list)

    def unclean_lines(self) -> np.ndarray:
        if not self.unclean:
            return np.empty(0, dtype=np.int64)
        return np.concatenate(self.unclean)


_WS = np.array(sorted(_BLANK_BYTES), dtype=np.uint8)


def _all_blank(data: np.ndarray) -> bool:
    return bool(np.isin(data, _WS).all())


_BRACE = 125  # "}"


def _unclean(
    chunk: np.ndarray, nl: np.ndarray, open_braces: int, last_two: bytes
) -> tuple[np.ndarray, int]:
    """Indexes (into ``nl``) of the lines of ``chunk`` ending at ``nl`` that are not
    provably one clean object, and the ``}`` count of the line left open at its end.
    ``open_braces``/``last_two``: the open line's ``}`` count and the chunk's last two
    bytes before this chunk (for a line ending at the very start of it)."""
    rb = np.flatnonzero(chunk == _BRACE)
    first = int(np.searchsorted(rb, nl[0]))
    after = int(np.searchsorted(rb, nl[-1]))
    mid = rb[first:after]  # braces of the lines ending at nl[1:]
    bad: list[np.ndarray] = []
    if open_braces + first != 1:
        bad.append(np.zeros(1, dtype=np.int64))
    m = len(nl) - 1
    if m and not (len(mid) == m and bool((mid > nl[:-1]).all()) and bool((mid < nl[1:]).all())):
        counts = np.bincount(np.searchsorted(nl[1:], mid), minlength=m)[:m]
        bad.append(np.flatnonzero(counts != 1) + 1)
    # the last byte before each newline (before "\r\n" when there is one) must be "}"
    prev = np.frombuffer(last_two.rjust(2, b"\n"), dtype=np.uint8)

    def byte_at(pos: np.ndarray) -> np.ndarray:  # pos may be -1 or -2: the previous chunk
        here = chunk[np.maximum(pos, 0)]
        out: np.ndarray = np.where(pos >= 0, here, prev[np.clip(pos + 2, 0, 1)])
        return out

    before = byte_at(nl - 1)
    cr = np.flatnonzero(before == 13)
    if len(cr):
        before[cr] = byte_at(nl[cr] - 2)
    bad.append(np.flatnonzero(before != _BRACE))
    found = np.unique(np.concatenate(bad))
    return found, len(rb) - after


def _inner_lines(scan: Scan, chunk: np.ndarray, nl: np.ndarray) -> None:
    """The lines that start and end in this chunk: the longest, and a blank one."""
    if len(nl) < 2:
        return
    starts = nl[:-1] + 1
    lengths = nl[1:] - starts
    scan.longest = max(scan.longest, int(lengths.max()))
    if scan.plain:
        for i in np.flatnonzero(lengths <= 16):
            if _all_blank(chunk[starts[i] : nl[i + 1]]):
                scan.plain = False
                break


def _add_blocks(scan: Scan, line_starts: np.ndarray, lines: int, next_block: int) -> int:
    """A block starts at the first line start past each block boundary (``line_starts``:
    this chunk's, as file offsets; ``lines``: complete lines before it). Returns the next
    boundary."""
    while next_block <= int(line_starts[-1]):
        k = int(np.searchsorted(line_starts, next_block))
        scan.blocks.append((int(line_starts[k]), lines + 1 + k))
        next_block = int(line_starts[k]) + _BLOCK_BYTES
    return next_block


def scan_file(path: Path, chunk_bytes: int, max_line_bytes: int) -> Scan:
    """Read ``path`` once: SHA-256, line count, blank, over-long and unclean lines, and
    the block index."""
    hasher = hashlib.sha256()
    scan = Scan(FileStats())
    offset = 0  # content bytes before this chunk
    lines = 0  # complete lines before this chunk
    line_start = 0  # content offset where the current (unfinished) line starts
    open_blank = True  # the unfinished line is whitespace so far
    open_braces = 0  # "}" in the unfinished line so far
    last_two = b""
    next_block = 0
    for chunk in _chunks(path, chunk_bytes, hasher):
        nl = np.flatnonzero(chunk == 10)
        if not len(nl):
            open_blank = open_blank and _all_blank(chunk)
            open_braces += int(np.count_nonzero(chunk == _BRACE))
            last_two = (last_two + chunk[-2:].tobytes())[-2:]
            offset += len(chunk)
            scan.longest = max(scan.longest, offset - line_start)
            continue
        bad, open_braces = _unclean(chunk, nl, open_braces, last_two)
        if len(bad):
            scan.unclean.append(bad.astype(np.int64) + lines + 1)
        last_two = (last_two + chunk[-2:].tobytes())[-2:]
        # the line that was open ends at the first newline
        scan.longest = max(scan.longest, offset + int(nl[0]) - line_start)
        if open_blank and _all_blank(chunk[: nl[0]]):
            scan.plain = False
        _inner_lines(scan, chunk, nl)
        line_starts = np.concatenate([[line_start], nl + 1 + offset])
        next_block = _add_blocks(scan, line_starts, lines, next_block)
        lines += len(nl)
        line_start = offset + int(nl[-1]) + 1
        open_blank = _all_blank(chunk[nl[-1] + 1 :])
        offset += len(chunk)
        scan.longest = max(scan.longest, offset - line_start)
    if offset > line_start:  # a last line without a newline
        lines += 1
        if open_blank:
            scan.plain = False
        if open_braces != 1 or last_two.rstrip(b"\r")[-1:] != b"}":
            scan.unclean.append(np.array([lines], dtype=np.int64))
    if not scan.blocks:
        scan.blocks.append((0, 1))
    if lines == 0 or scan.longest > max_line_bytes:
        scan.plain = False
    scan.stats.sha256 = hasher.hexdigest()
    scan.stats.size_bytes = path.stat().st_size
    scan.stats.content_bytes = offset
    scan.stats.total_lines = lines
    return scan


def reread_lines(
    path: Path, scan: Scan, wanted: Iterable[int], chunk_bytes: int
) -> Iterator[pa.Table]:
    """The lines numbered ``wanted`` of a scanned file, as tables like :func:`read_lines`
    yields, one per block that holds some of them (only those blocks are read; a gzip
    file is inflated up to the last of them). Memory: one block at a time."""
    numbers = sorted(set(wanted))
    if not numbers:
        return
    block_lines = [b[1] for b in scan.blocks]
    by_block: dict[int, list[int]] = {}
    for n in numbers:
        by_block.setdefault(bisect.bisect_right(block_lines, n) - 1, []).append(n)
    if is_gzip(path):
        yield from _reread_stream(path, numbers, chunk_bytes)
        return
    try:
        with path.open("rb") as fh:
            for b, ns in sorted(by_block.items()):
                start, first = scan.blocks[b]
                last = b + 1 >= len(scan.blocks)
                end = scan.stats.content_bytes if last else scan.blocks[b + 1][0]
                fh.seek(start)
                data = np.frombuffer(fh.read(end - start), dtype=np.uint8)
                if not len(data) or data[-1] != 10:
                    data = np.concatenate([data, np.array([10], dtype=np.uint8)])
                yield _pick(_lines_table(data, first), ns)
    except _READ_ERRORS as exc:
        raise _read_error(path, exc) from exc


def _pick(table: pa.Table, numbers: list[int]) -> pa.Table:
    first = int(table.column("line_no")[0].as_py()) if table.num_rows else 0
    idx = [n - first for n in numbers if 0 <= n - first < table.num_rows]
    return table.take(pa.array(idx, type=pa.int64()))


def _reread_stream(path: Path, numbers: list[int], chunk_bytes: int) -> Iterator[pa.Table]:
    rem = np.empty(0, dtype=np.uint8)
    next_line = 1
    last = numbers[-1]
    for data in _chunks(path, chunk_bytes):
        buf = np.concatenate([rem, data]) if len(rem) else data
        cut = _after_last_newline(buf, 0, len(buf))
        if not cut:
            rem = buf.copy()
            continue
        rem = buf[cut:].copy()
        count = int(np.count_nonzero(buf[:cut] == 10))
        ns = [n for n in numbers if next_line <= n < next_line + count]
        if ns:
            yield _pick(_lines_table(buf[:cut], next_line), ns)
        next_line += count
        if next_line > last:
            return
    if len(rem) and last >= next_line:
        buf = np.concatenate([rem, np.array([10], dtype=np.uint8)])
        yield _pick(_lines_table(buf, next_line), [last])


# --- a reader thread -------------------------------------------------------------------


__all__ = ["Scan", "reread_lines", "scan_file"]
