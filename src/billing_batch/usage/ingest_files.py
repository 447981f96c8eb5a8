"""Which files an ingest reads, and the quarantine for those it cannot read at all.

Folders are walked with every listing error reported (a folder that cannot be read is
never skipped silently: its usage would never be billed). A landing file that cannot be
read (permissions, a corrupt gzip, an I/O error) is moved to ``$BILLING_HOME/quarantine``
under its path relative to the landing folder, with ``<name>.reason.json`` beside it
(original path, reason, ingest, time): the next run does not trip on it again, and an
operator who fixes it moves it back into the landing folder to have it ingested.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .._core.errors import IngestError, StorageError
from .._core.files import atomic_write_text
from .._core.jsonutil import dumps
from ..config.settings import Settings
from ..storage.files import Entry, FileArea, area

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


# --- landing on object storage -------------------------------------------------------
@dataclass(frozen=True)
class Claim:
    """A landing object to ingest, by its identity (key, size, ETag), and the local copy
    the ingest reads."""

    source: str  # s3://bucket/key: recorded as the manifest's source_file
    name: str  # relative to the landing area
    size: int
    etag: str | None
    local: Path


#: (source, size, etag) of every file the manifest records.
Seen = set[tuple[str, int, str | None]]


#: Landing objects downloaded at once (each one GET; in order of the listing).
_DOWNLOADS = 4


def _fetch(settings: Settings, landing: FileArea, e: Entry) -> Claim | Problem:
    """Download one landing object to ``tmp/landing/<digest>/`` (its claim), or say why
    it could not be fetched."""
    digest = hashlib.sha256(f"{e.location}\0{e.etag}".encode()).hexdigest()[:16]
    local = settings.tmp_dir / "landing" / digest / e.name.rsplit("/", 1)[-1]
    try:
        landing.download(e.name, local)
    except (OSError, StorageError) as exc:
        return (Path(e.name), f"{e.location}: cannot be fetched: {exc}")
    return Claim(e.location, e.name, e.size, e.etag, local)


def remote_landing(
    settings: Settings, seen: Seen, suffixes: tuple[str, ...]
) -> tuple[list[Claim], list[Problem]]:
    """The landing objects not yet ingested (no manifest row with the same key, size and
    ETag: a file seen by two machines is claimed once, an object replaced under the same
    key is a new file), each downloaded to ``tmp/landing/`` for the ingest to read, and
    the objects that could not be listed or fetched (never skipped silently)."""
    landing = area(settings, "landing")
    try:
        entries = landing.list(suffixes)
    except StorageError as exc:
        return [], [(Path(landing.root), f"{landing.root}: cannot be listed: {exc}")]
    new = [e for e in entries if (e.location, e.size, e.etag) not in seen]
    with ThreadPoolExecutor(_DOWNLOADS, thread_name_prefix="landing") as pool:
        fetched = list(pool.map(lambda e: _fetch(settings, landing, e), new))
    claims = [c for c in fetched if isinstance(c, Claim)]
    problems = [p for p in fetched if not isinstance(p, Claim)]
    return claims, problems


def quarantine_remote(settings: Settings, claim: Claim, reason: str, ingest_id: str | None) -> str:
    """Move a landing object that could not be read to the quarantine area (copy, then
    delete) with its ``.reason.json``; return where it went."""
    landing: FileArea = area(settings, "landing")
    target = area(settings, "quarantine")
    now = datetime.now(UTC)
    name = claim.name
    if target.exists(name):
        name = f"{name}.{now:%Y%m%dT%H%M%S%f}"
    record = {
        "file": claim.source,
        "etag": claim.etag,
        "quarantined_to": target.location(name),
        "reason": reason,
        "ingest_id": ingest_id,
        "quarantined_at": now.isoformat(),
        "to_retry": f"move it back into {landing.root} once fixed",
    }
    target.write_text(f"{name}.reason.json", dumps(record, indent=2) + "\n")
    out = target.put_file(claim.local, name)
    landing.delete(claim.name)
    return out


__all__ = [
    "Claim",
    "find_inputs",
    "is_under",
    "landing_candidates",
    "quarantine",
    "quarantine_remote",
    "remote_landing",
]
