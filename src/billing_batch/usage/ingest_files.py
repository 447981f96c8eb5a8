"""Which files an ingest reads, and the quarantine for those it cannot read at all.

Folders are walked with every listing error reported (a folder that cannot be read is
never skipped silently: its usage would never be billed). A landing file that cannot be
read (permissions, a corrupt gzip, an I/O error) is moved to ``$BILLING_HOME/quarantine``
under its path relative to the landing folder, with ``<name>.reason.json`` beside it
(original path, reason, ingest, time): the next run does not trip on it again, and an
operator who fixes it moves it back into the landing folder to have it ingested.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from .._core.errors import IngestError
from .._core.files import atomic_write_text
from .._core.jsonutil import dumps
from ..config.settings import Settings

#: (path, why) of a file or folder that could not be looked at.
Problem = tuple[Path, str]


def _is_source_name(name: str, suffixes: tuple[str, ...]) -> bool:
    low = name.lower()
    return not low.startswith(".") and low.endswith(suffixes)


def _walk(top: Path, suffixes: tuple[str, ...]) -> tuple[list[tuple[Path, int]], list[Problem]]:
    """(file, size) of every source file under ``top``, and what could not be listed."""
    found: list[tuple[Path, int]] = []
    problems: list[Problem] = []

    def listing_failed(exc: OSError) -> None:
        where = Path(exc.filename) if exc.filename else top
        problems.append((where, f"{where}: folder cannot be read: {exc.strerror or exc}"))

    for folder, _dirs, names in os.walk(top, onerror=listing_failed):
        for name in names:
            if not _is_source_name(name, suffixes):
                continue
            path = Path(folder) / name
            try:
                st = path.stat()
            except OSError as exc:
                problems.append((path, f"{path}: file cannot be read: {exc.strerror or exc}"))
                continue
            if stat.S_ISREG(st.st_mode):
                found.append((path, st.st_size))
    return found, problems


def find_inputs(
    paths: Sequence[str | os.PathLike[str]], suffixes: tuple[str, ...]
) -> tuple[list[Path], list[Problem]]:
    """Files and folders → the source files (sorted, absolute) and the folders that
    could not be listed. A missing path raises IngestError before anything is read."""
    out: set[Path] = set()
    problems: list[Problem] = []
    for raw in paths:
        p = Path(raw).expanduser().absolute()
        if not os.path.lexists(p):
            raise IngestError("no such file or directory", path=str(raw))
        p = p.resolve()
        if p.is_dir():
            files, probs = _walk(p, suffixes)
            out.update(f for f, _ in files)
            problems += probs
        else:
            out.add(p)
    return sorted(out), sorted(problems)


def landing_candidates(
    landing: Path, suffixes: tuple[str, ...]
) -> tuple[list[tuple[Path, int]], list[Problem]]:
    """(file, size) of every source file in the landing folder, and what could not be
    listed there."""
    if not landing.is_dir():
        return [], []
    files, problems = _walk(landing.resolve(), suffixes)
    return sorted(files), sorted(problems)


def is_under(path: Path, folder: Path) -> bool:
    try:
        path.absolute().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def quarantine(settings: Settings, path: Path, reason: str, ingest_id: str | None) -> Path:
    """Move landing file ``path`` into the quarantine with its ``.reason.json``; return
    where it went. OSError if it cannot be moved (the reason file is then removed)."""
    rel = path.absolute().relative_to(settings.landing_dir.resolve())
    target = settings.quarantine_dir / rel
    now = datetime.now(UTC)
    if os.path.lexists(target):  # quarantined before under that name: keep both
        target = target.with_name(f"{target.name}.{now:%Y%m%dT%H%M%S%f}")
    target.parent.mkdir(parents=True, exist_ok=True)
    sidecar = target.with_name(target.name + ".reason.json")
    record = {
        "file": str(path),
        "quarantined_to": str(target),
        "reason": reason,
        "ingest_id": ingest_id,
        "quarantined_at": now.isoformat(),
        "to_retry": f"move it back into {settings.landing_dir} once fixed",
    }
    atomic_write_text(sidecar, dumps(record, indent=2) + "\n")
    try:
        shutil.move(str(path), str(target))
    except OSError:
        sidecar.unlink(missing_ok=True)
        raise
    return target


__all__ = ["find_inputs", "is_under", "landing_candidates", "quarantine"]
