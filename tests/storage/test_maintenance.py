"""Lake housekeeping: old snapshots expire, invoices' snapshots stay, unused files go."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from billing_batch._core.errors import InputError
from billing_batch.cli import main as cli_main
from billing_batch.config.settings import Settings
from billing_batch.invoicing.service import create_invoice, finalize_invoice
from billing_batch.storage import mirror
from billing_batch.storage.lake import Lake
from billing_batch.storage.maintenance import expire_lake_snapshots, pinned_snapshots
from billing_batch.usage.ingest import ingest
from billing_batch.usage.rollup import refresh_rollup
from tests.conftest import event, write_log

NOW = datetime(2024, 2, 1, 9, 30, tzinfo=UTC)


def _day(settings: Settings, tmp_path: Path, day: str, n: int) -> None:
    """One night's work on the lake: an ingest, a rollup, a copy of the state."""
    events = [
        event(id=f"{day}-{i}", workspace="ws_1", quantity=10, timestamp=f"{day}T10:00:00Z")
        for i in range(n)
    ]
    ingest(settings, [write_log(tmp_path / "logs" / f"{day}.jsonl", events)])
    refresh_rollup(settings)
    mirror.mirror_to_lake(settings, reason=f"night of {day}")


def _snapshots(settings: Settings) -> list[int]:
    con = Lake(settings).connect(read_only=True)
    try:
        rows = con.execute(
            "SELECT snapshot_id FROM ducklake_snapshots('lake') ORDER BY 1"
        ).fetchall()
        return [int(r[0]) for r in rows]
    finally:
        con.close()


def _parquet_files(settings: Settings) -> set[Path]:
    return set(Path(settings.data_path).rglob("*.parquet"))


def _events_total(con_settings: Settings, snapshot: int | None = None) -> int:
    lake = Lake(con_settings)
    con = lake.connect(snapshot=snapshot) if snapshot is not None else lake.connect(read_only=True)
    try:
        return int(con.execute("SELECT count(*) FROM events").fetchall()[0][0])
    finally:
        con.close()


@pytest.fixture
def busy_lake(settings: Settings, tmp_path: Path) -> tuple[Settings, int]:
    """Three nights, an invoice rated after the second one (its snapshot is pinned)."""
    _day(settings, tmp_path, "2024-01-10", 3)
    _day(settings, tmp_path, "2024-01-20", 4)
    inv = create_invoice(settings, "ws_1", date(2024, 1, 1), date(2024, 1, 31), now=NOW)
    inv = finalize_invoice(settings, inv.id, now=NOW, render=False)
    mirror.mirror_to_lake(settings, reason="invoices")
    _day(settings, tmp_path, "2024-01-30", 5)
    return settings, inv.lake_snapshot_id


def test_expire_keeps_current_and_invoice_snapshots(busy_lake: tuple[Settings, int]) -> None:
    settings, pinned = busy_lake
    assert pinned_snapshots(settings) == {pinned}
    before = _snapshots(settings)
    files_before = _parquet_files(settings)
    at_invoice = _events_total(settings, snapshot=pinned)
    assert at_invoice == 7 and _events_total(settings) == 12

    # retention 0 with the clock a minute ahead: every snapshot is old enough
    expiry = expire_lake_snapshots(
        settings, retention_days=0, now=datetime.now(UTC) + timedelta(minutes=1)
    )
    current = max(before)
    assert sorted(expiry.expired) == sorted(set(before) - {pinned, current})
    assert expiry.kept == [pinned]
    assert _snapshots(settings) == sorted({pinned, current})
    # the superseded copies of the state tables (and rollup days) are gone from disk...
    files_after = _parquet_files(settings)
    assert expiry.files_deleted > 0
    assert len(files_after) == len(files_before) - expiry.files_deleted
    # ...and nothing either remaining snapshot reads
    assert _events_total(settings) == 12
    assert _events_total(settings, snapshot=pinned) == at_invoice
    con = Lake(settings).connect(read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM invoices").fetchall()[0][0] == 1
        assert con.execute("SELECT sum(quantity) FROM usage_daily").fetchall()[0][0] == 120
    finally:
        con.close()
    # a second pass has nothing left to do
    again = expire_lake_snapshots(
        settings, retention_days=0, now=datetime.now(UTC) + timedelta(minutes=1)
    )
    assert again.expired == [] and again.files_deleted == 0


def test_retention_and_dry_run_change_nothing(busy_lake: tuple[Settings, int]) -> None:
    settings, _ = busy_lake
    before = _snapshots(settings)
    files = _parquet_files(settings)
    # everything is younger than the default 90 days
    assert expire_lake_snapshots(settings).expired == []
    dry = expire_lake_snapshots(
        settings, retention_days=0, dry_run=True, now=datetime.now(UTC) + timedelta(minutes=1)
    )
    assert dry.dry_run and len(dry.expired) == len(before) - 2
    assert _snapshots(settings) == before and _parquet_files(settings) == files


def test_negative_retention_is_refused(settings: Settings) -> None:
    with pytest.raises(InputError, match="0 days or more"):
        expire_lake_snapshots(settings, retention_days=-1)


def test_cli_expire_dry_run(
    busy_lake: tuple[Settings, int], capsys: pytest.CaptureFixture[str]
) -> None:
    settings, pinned = busy_lake
    code = cli_main(["--home", str(settings.home), "lake", "expire", "--dry-run"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {
        "expired": [],
        "kept": [],
        "files_deleted": 0,
        "dry_run": True,
        "orphan_files": [],
        "orphans_skipped": None,
    }


# --- files a crashed write left behind --------------------------------------------------
_CRASH_BEFORE_COMMIT = """
import os, sys
from contextlib import contextmanager
import billing_batch.storage.lake as lake_mod
from billing_batch.config import load_settings
from billing_batch.usage.ingest import ingest
real = lake_mod.Lake.transaction
@contextmanager
def crashing(self, con, message, extra=None):
    with real(self, con, message, extra) as c:
        yield c
        if message.startswith("ingest "):
            os._exit(9)  # every file written, nothing committed: a hard crash
lake_mod.Lake.transaction = crashing
ingest(load_settings(), [sys.argv[1]])
"""


def _ducklake_files(settings: Settings) -> set[Path]:
    return {p for p in Path(settings.data_path).rglob("ducklake-*.parquet")}


def test_crash_mid_ingest_orphans_are_deleted_safely(settings: Settings, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import random_events

    _day(settings, tmp_path, "2024-01-10", 3)  # a committed lake to keep intact
    committed = _ducklake_files(settings)
    log = write_log(tmp_path / "big.jsonl", [*random_events(2000, seed=4), "junk"])
    env = {**os.environ, "BILLING_HOME": str(settings.home)}
    proc = subprocess.run([sys.executable, "-c", _CRASH_BEFORE_COMMIT, str(log)], env=env)
    assert proc.returncode == 9
    orphans = _ducklake_files(settings) - committed
    assert orphans, "the crashed ingest wrote no data file"
    assert _events_total(settings) == 3  # nothing of it is visible
    # a file that is not DuckLake's, in the data path: never touched
    stranger = Path(settings.data_path) / "main" / "events" / "notes.parquet"
    stranger.write_bytes(b"PAR1 not ours")

    # young orphans are left alone (a write could still be running)
    young = expire_lake_snapshots(settings)
    assert young.orphan_files == [] and orphans <= _ducklake_files(settings)
    # old enough: a dry run lists them, changes nothing
    old = NOW.replace(year=2100)
    dry = expire_lake_snapshots(settings, dry_run=True, now=old)
    assert {Path(p) for p in dry.orphan_files} == orphans
    assert orphans <= _ducklake_files(settings)
    # the CLI, with the age threshold set to 0 through the environment
    env0 = {**env, "BILLING_LAKE_ORPHAN_MIN_AGE_HOURS": "0"}
    out = subprocess.run(
        [sys.executable, "-m", "billing_batch", "lake", "expire"],
        env=env0,
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(out.stdout)
    assert {Path(p) for p in report["orphan_files"]} == orphans
    assert report["files_deleted"] >= len(orphans)
    assert _ducklake_files(settings) == committed  # every committed file is still there
    assert stranger.exists()
    assert _events_total(settings) == 3
    # the crashed ingest, rerun, lands once
    r = ingest(settings, [log])
    assert (r.to_dict()["accepted"], r.to_dict()["rejected"]) == (2000, 1)
    assert _events_total(settings) == 2003
