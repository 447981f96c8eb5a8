"""Lake housekeeping: expire old snapshots, delete the data files nobody reads any more.

Every nightly run adds snapshots to the lake (an ingest, a rollup, two copies of the state
tables), and DuckLake keeps each snapshot's files for time travel: left alone, the data
folder grows by a copy of the state tables twice a night. :func:`expire_lake_snapshots`
(the nightly's last step when ``[lake] expire_snapshots`` is on, and ``billing-batch lake
expire``) expires the snapshots older than ``[lake] snapshot_retention_days`` except the
ones invoices were rated at (``invoices.lake_snapshot_id``: ``invoice explain`` and the
analysts' "as the invoice saw it" queries travel back to them), then deletes the files no
remaining snapshot reads, and the files a crashed write left behind (tracked by no
snapshot, older than ``[lake] orphan_min_age_hours``: see ``Lake.delete_orphan_files``).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from .._core.errors import InputError
from ..config.settings import Settings
from . import state as store
from .lake import Expiry, Lake


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
        expiry = lake.expire_snapshots(cutoff, keep=pinned_snapshots(settings), dry_run=dry_run)
        if "://" in settings.data_path:
            skipped = f"orphan files are looked for in a local data path only: {settings.data_path}"
            return dataclasses.replace(expiry, orphans_skipped=skipped)
        orphans = lake.delete_orphan_files(orphan_min_age, dry_run=dry_run, now=clock)
    return dataclasses.replace(
        expiry, files_deleted=expiry.files_deleted + len(orphans), orphan_files=orphans
    )


__all__ = ["expire_lake_snapshots", "pinned_snapshots"]
