"""The one way billing-batch writes a file outside the lake: a temporary name in the same
folder, flushed and fsynced, then ``os.replace`` onto the final name, then the folder
fsynced. A crash leaves either the old file or the new one, never a partial one, and at
worst a hidden ``.<name>.*.tmp`` that the next write of that name does not reuse."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


def fsync_dir(folder: Path) -> None:
    """Make the entries of ``folder`` durable (a rename, a new file)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(folder: Path) -> None:
    """``mkdir -p`` that also makes each new folder durable (fsync of its parent)."""
    missing: list[Path] = []
    p = folder
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
        fsync_dir(d.parent)


def _write_temp(folder: Path, name: str, data: bytes) -> Path:
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def atomic_write_files(files: Sequence[tuple[Path, bytes]]) -> list[Path]:
    """Write several files of one folder: every temporary first, then the renames, so a
    failure before the renames leaves none of them (e.g. an invoice's JSON and PDF)."""
    temps: list[tuple[Path, Path]] = []
    try:
        for path, data in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            temps.append((_write_temp(path.parent, path.name, data), path))
        for tmp, path in temps:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        raise
    for folder in {path.parent for path, _ in files}:
        fsync_dir(folder)
    return [path for path, _ in files]


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    return atomic_write_files([(path, data)])[0]


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """For a writer that makes the file itself (DuckDB's ``COPY ... TO``): yields a
    temporary path in ``path``'s folder; on a clean exit that file is fsynced, renamed
    onto ``path`` and the folder fsynced; on an error it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


__all__ = [
    "atomic_output",
    "atomic_write_bytes",
    "atomic_write_files",
    "atomic_write_text",
    "fsync_dir",
    "make_dirs",
]
