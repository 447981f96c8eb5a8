"""Lake housekeeping: expire old snapshots, delete the data files nobody reads any more.

Every nightly run adds snapshots to the lake (an ingest, a rollup, two copies of the state
tables), and DuckLake keeps each snapshot's files for time travel: left alone, the data
folder grows by a copy of the state tables twice a night. :func:`expire_lake_snapshots`
(the nightly's last step when ``[lake] expire_snapshots`` is on, and ``billing-batch lake
expire``) expires the snapshots older than ``[lake] snapshot_retention_days`` except the
ones invoices were rated at (``invoices.lake_snapshot_id``: ``invoice explain`` and the
analysts' "as the invoice saw it" queries travel back to them), then deletes the files no
remaining snapshot reads, and the files a crashed write left behind (tracked by no
snapshot, older than ``[lake] orphan_min_age_hours``: see :func:`delete_orphan_files`).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from .._core.errors import InputError, LakeError
from ..config.settings import Settings
from . import state as store
from .lake import LAKE, Lake


@dataclass(frozen=True)
class Expiry:
    """What :func:`expire_snapshots` did (or, ``dry_run``, would do)."""

    #: Snapshot ids expired: time travel to them is no longer possible.
    expired: list[int]
    #: Old snapshot ids kept because they were asked to be (e.g. invoices rated at them).
    kept: list[int]
    #: Data files deleted because no remaining snapshot reads them.
    files_deleted: int
    dry_run: bool
    #: Files a crashed write left in the data path (no snapshot tracks them), deleted.
    orphan_files: list[str] = field(default_factory=list)
    #: Why orphan files were not looked for (e.g. a remote data path), or None.
    orphans_skipped: str | None = None


#: The name DuckLake gives every data and delete file it writes.
_DUCKLAKE_FILE = re.compile(r"^ducklake-[0-9a-f-]{36}(-delete)?\.parquet$")


def pinned_snapshots(settings: Settings) -> set[int]:
    """The lake snapshots invoices were rated at: never expired."""
    with store.opened(settings) as con:
        rows = store.query(con, "invoicing/pinned_snapshots").fetchall()
    return {int(r[0]) for r in rows}


def expire_lake_snapshots(
    settings: Settings,
    *,
    retention_days: int | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
    orphan_min_age: timedelta | None = None,
) -> Expiry:
    """Expire the lake snapshots older than ``retention_days`` (default: the setting),
    keeping the current one and those invoices were rated at; delete unused files, and
    the files of crashed writes older than ``orphan_min_age`` (default: the setting)."""
    days = settings.lake.snapshot_retention_days if retention_days is None else retention_days
    if days < 0:
        raise InputError(f"retention must be 0 days or more, got {days}")
    if orphan_min_age is None:
        orphan_min_age = timedelta(hours=settings.lake.orphan_min_age_hours)
    if orphan_min_age < timedelta(0):
        raise InputError(f"orphan file age must be 0 or more, got {orphan_min_age}")
    clock = now or datetime.now(UTC)
    cutoff = clock - timedelta(days=days)
    lake = Lake(settings)
    with lake.write_lock():  # the pinned set cannot change under a lake writer's feet
        expiry = expire_snapshots(lake, cutoff, keep=pinned_snapshots(settings), dry_run=dry_run)
        if "://" in settings.data_path:
            skipped = f"orphan files are looked for in a local data path only: {settings.data_path}"
            return dataclasses.replace(expiry, orphans_skipped=skipped)
        orphans = delete_orphan_files(lake, orphan_min_age, dry_run=dry_run, now=clock)
    return dataclasses.replace(
        expiry, files_deleted=expiry.files_deleted + len(orphans), orphan_files=orphans
    )


def expire_snapshots(
    lake: Lake,
    older_than: datetime,
    *,
    keep: Collection[int] = (),
    dry_run: bool = False,
) -> Expiry:
    """Expire the snapshots committed before ``older_than`` except those in ``keep``
    and the current one, then delete the data files no remaining snapshot reads. Under
    the write lock. ``dry_run``: report only.

    Files that no snapshot tracks at all (a crashed write's) are left alone: DuckLake
    finds those by listing the whole data path, so anything else stored there, or a
    data path spelled differently from the catalog's, would be deleted too."""
    keep = set(keep)
    with lake.write_lock():
        con = lake.connect()
        try:
            current = lake.current_snapshot(con)
            old = con.execute(
                "SELECT snapshot_id FROM ducklake_snapshots(?) "
                "WHERE snapshot_time < ? ORDER BY snapshot_id",
                [LAKE, older_than],
            ).fetchall()
            versions = [int(r[0]) for r in old if r[0] != current and r[0] not in keep]
            kept = sorted(int(r[0]) for r in old if r[0] in keep)
            if versions:
                con.execute(
                    "CALL ducklake_expire_snapshots(?, versions => ?, dry_run => ?)",
                    [LAKE, versions, dry_run],
                ).fetchall()
            # files of the expired snapshots (a dry run has scheduled none: nothing
            # is listed for them; earlier-scheduled files are)
            unused = con.execute(
                "CALL ducklake_cleanup_old_files(?, cleanup_all => true, dry_run => ?)",
                [LAKE, dry_run],
            ).fetchall()
        except duckdb.Error as exc:
            raise LakeError(f"cannot expire lake snapshots: {exc}") from exc
        finally:
            con.close()
    return Expiry(
        expired=versions,
        kept=kept,
        files_deleted=len(unused),
        dry_run=dry_run,
    )


def delete_orphan_files(
    lake: Lake, min_age: timedelta, *, dry_run: bool = False, now: datetime | None = None
) -> list[str]:
    """Delete the files a crashed write left in the lake's data path; return them.

    A write that dies before its commit (``kill -9``, power loss) leaves the Parquet
    files it had written (complete or truncated) where DuckLake puts them, and no
    snapshot ever tracks them. Under the lake write lock (no write of ours runs), a
    file is deleted only when all of these hold: it is under the data path, its name
    is one DuckLake gives its files (``ducklake-<uuid>[-delete].parquet``: anything
    else stored there is left alone), no row of the catalog names it (data, delete
    and scheduled-for-deletion files of every table, every snapshot), and it was last
    modified more than ``min_age`` ago (older than any write still running, even one
    that would not take our lock). Files are matched by name: DuckLake's names are
    unique, so a data path spelled differently from the catalog's changes nothing.
    Remote data paths (``s3://``...) are not supported: the caller is told why.
    """
    data = lake.settings.data_path
    if "://" in data:
        raise LakeError(f"orphan files are only looked for in a local data path, not {data}")
    root = Path(data)
    cutoff = (now or datetime.now().astimezone()).timestamp() - min_age.total_seconds()
    with lake.write_lock():
        if not root.is_dir():
            return []
        con = lake.connect()
        try:
            tracked = _tracked_file_names(con)
        finally:
            con.close()
        doomed: list[Path] = []
        for folder, _dirs, files in os.walk(root):
            for name in files:
                if not _DUCKLAKE_FILE.match(name) or name in tracked:
                    continue
                path = Path(folder) / name
                try:
                    if path.lstat().st_mtime < cutoff and path.is_file():
                        doomed.append(path)
                except FileNotFoundError:
                    continue
        if not dry_run:
            for path in doomed:
                path.unlink(missing_ok=True)
    return sorted(str(p) for p in doomed)


def _tracked_file_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The file names (not paths) of every file the catalog knows, any snapshot."""
    meta = f"__ducklake_metadata_{LAKE}"
    sql = " UNION ALL ".join(
        f"SELECT path FROM {meta}.{table}"
        for table in (
            "ducklake_data_file",
            "ducklake_delete_file",
            "ducklake_files_scheduled_for_deletion",
        )
    )
    try:
        rows = con.execute(sql).fetchall()
    except duckdb.Error as exc:
        raise LakeError(f"cannot list the lake's files: {exc}") from exc
    return {str(r[0]).replace("\\", "/").rsplit("/", 1)[-1] for r in rows}


__all__ = [
    "Expiry",
    "delete_orphan_files",
    "expire_lake_snapshots",
    "expire_snapshots",
    "pinned_snapshots",
]
