"""The nightly run lock with the state on PostgreSQL: an advisory lock there, so two
machines (two homes: no shared locks folder) never run the nightly at once; a holder
killed with SIGKILL releases it (its connection goes, and the lock with it)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from billing_batch._core.errors import LockedError
from billing_batch.config.settings import Settings, load_settings
from billing_batch.nightly.steps import run_lock
from billing_batch.storage.locking import advisory_lock, postgres_conninfo
from tests.postgres_harness import PgServer

pytestmark = pytest.mark.scale

HOLD_RUN_LOCK = """\
import sys
from billing_batch.config import load_settings
from billing_batch.nightly.steps import run_lock
with run_lock(load_settings(env={"BILLING_HOME": sys.argv[1]})):
    print("held", flush=True)
    sys.stdin.read()
"""


def state_home(home: Path, url: str) -> Settings:
    home.mkdir(parents=True, exist_ok=True)
    (home / "billing.toml").write_text(f'[state]\nurl = "{url}"\n')
    return load_settings(env={"BILLING_HOME": str(home)})


def hold(home: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_RUN_LOCK, str(home)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def test_the_run_lock_excludes_another_machine_and_names_the_holder(
    tmp_path: Path, pg_server: PgServer, pg_database: str
) -> None:
    url = pg_server.url(pg_database)
    other = state_home(tmp_path / "b", url)
    holder = hold(state_home(tmp_path / "a", url).home)
    try:
        with pytest.raises(LockedError, match=rf"another nightly run .*pid {holder.pid}"):
            with run_lock(other):
                pass
        assert not (other.locks_dir / "run.lock").exists()  # not a file lock
    finally:
        holder.communicate("")
    with run_lock(other):  # released by its holder
        pass


def test_a_killed_holder_releases_the_run_lock(
    tmp_path: Path, pg_server: PgServer, pg_database: str
) -> None:
    url = pg_server.url(pg_database)
    holder = hold(state_home(tmp_path / "a", url).home)
    other = state_home(tmp_path / "b", url)
    with pytest.raises(LockedError):
        with run_lock(other):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.communicate()
    # the server notices the closed connection at once (same host); allow for a slow one
    conninfo = postgres_conninfo(url)
    with advisory_lock(conninfo, "run", timeout=30, what="nightly run", scope="process"):
        pass
    with run_lock(other):
        pass


def test_the_advisory_run_lock_is_reentrant_in_its_process_only(
    tmp_path: Path, pg_server: PgServer, pg_database: str
) -> None:
    settings = state_home(tmp_path / "a", pg_server.url(pg_database))
    entered: list[str] = []

    def other_thread() -> None:
        with run_lock(settings):  # process scope: the CLI holds it, Prefect's thread too
            entered.append("yes")

    with run_lock(settings):
        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
        refused = subprocess.run(
            [sys.executable, "-c", HOLD_RUN_LOCK, str(settings.home)],
            input="",
            capture_output=True,
            text=True,
        )
    assert entered == ["yes"]
    assert refused.returncode == 1 and "another nightly run is in progress" in refused.stderr
