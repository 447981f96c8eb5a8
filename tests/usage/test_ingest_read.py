"""The readers agree on line numbers whatever the chunk size: the fast path's scan
(hash, line count, unclean lines, block index), the re-read of given lines, and the rule
chain's streaming reader, on plain and gzip files."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pyarrow as pa
import pytest

from billing_batch.usage.ingest_read import FileStats, read_lines
from billing_batch.usage.ingest_scan import reread_lines, scan_file


def _lines(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        r = rng.random()
        if r < 0.01:
            out.append(f'{{"id":"x{i}"}} junk')  # one object, then something
        elif r < 0.02:
            out.append(f'{{"id":"y{i}","p":{{"a":1}}}}')  # nested: not provably clean
        elif r < 0.03:
            out.append(f'{{"id":"z{i}"}}\r')  # CRLF: clean
        elif r < 0.04:
            out.append(f'{{"id":"w{i}"}} ')  # trailing space: not provably clean
        else:
            out.append(f'{{"id":"e{i}","q":"{"x" * rng.randrange(0, 300)}"}}')
    return out


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("chunk", [97, 4096, 1 << 20])
def test_scan_reread_and_stream_agree(tmp_path: Path, chunk: int, gz: bool) -> None:
    lines = _lines(3000, seed=chunk)
    data = ("\n".join(lines) + "\n").encode()
    path = tmp_path / ("a.jsonl.gz" if gz else "a.jsonl")
    path.write_bytes(gzip.compress(data) if gz else data)
    unclean = [
        i + 1
        for i, line in enumerate(lines)
        if not (line.rstrip("\r").endswith("}") and line.count("}") == 1)
    ]
    scan = scan_file(path, chunk, 1 << 20)
    assert scan.plain and scan.stats.total_lines == 3000
    assert sorted(scan.unclean_lines().tolist()) == unclean
    stats = FileStats()
    streamed = pa.concat_tables(list(read_lines(path, chunk, 1 << 20, stats)))
    assert streamed.num_rows == 3000 and stats.sha256 == scan.stats.sha256
    wanted = [1, 77, 1500, 2999, 3000, *unclean[:5]]
    got = pa.concat_tables(list(reread_lines(path, scan, wanted, chunk)))
    assert got.column("line_no").to_pylist() == sorted(set(wanted))
    assert [r.rstrip("\n") for r in got.column("raw").to_pylist()] == [
        lines[n - 1] for n in sorted(set(wanted))
    ]


@pytest.mark.parametrize(
    "content",
    [b'{"a":1}\n\n{"b":1}\n', b'{"a":1}\n  \t\n', b'{"a":1}\n\r\n', b"", b'{"a":1}\n \x0c'],
    ids=["empty-line", "spaces", "crlf-only", "empty-file", "blank-last-line"],
)
def test_blank_lines_are_seen(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "b.jsonl"
    path.write_bytes(content)
    assert not scan_file(path, 3, 1 << 20).plain


def test_a_line_over_the_limit_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"a":1}\n{"b":"' + b"x" * 5000 + b'"}\n{"c":1}')
    scan = scan_file(path, 1000, 4096)
    assert not scan.plain and scan.longest == 5008 and scan.stats.total_lines == 3
