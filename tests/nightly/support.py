"""Helpers for the unattended-run tests: real `billing-batch run` subprocesses, a Prefect
server whose start is made slow by a real hook in the server process, and a census of
every process a run left behind (found by a marker in their environment, which every
descendant inherits, whoever its parent is now)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

BB = str(Path(sys.executable).with_name("billing-batch"))
MARKER_VAR = "BB_TEST_MARKER"

#: Installed as ``sitecustomize`` on the run's PYTHONPATH: in Prefect's API server (the
#: only process with PREFECT__SERVER_EPHEMERAL=1) it makes the import of Prefect's server
#: application slow, where a busy machine makes a real start slow (importing Prefect's
#: server is most of its start-up).
SLOW_SERVER_HOOK = """\
import os, sys, time

class _SlowServerImport:
    def find_spec(self, name, path=None, target=None):
        if name == "prefect.server.api.server":
            sys.meta_path.remove(self)
            time.sleep(float(os.environ.get("BB_TEST_SERVER_DELAY", "0")))
        return None

if os.environ.get("PREFECT__SERVER_EPHEMERAL") == "1":
    sys.meta_path.insert(0, _SlowServerImport())
"""


def new_marker() -> str:
    return uuid.uuid4().hex


def run_env(tmp_path: Path, marker: str, *, server_delay: float | None = None) -> dict[str, str]:
    """The environment of a `billing-batch` subprocess: Prefect's home in tmp, the
    marker, and (``server_delay``) the hook that delays Prefect's server start."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "BILLING_", "PYTEST_")) and k != "PYTHONPATH"
    }
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
        **{MARKER_VAR: marker},
    )
    if server_delay is not None:
        hook = tmp_path / "slow-server-hook"
        hook.mkdir(exist_ok=True)
        (hook / "sitecustomize.py").write_text(SLOW_SERVER_HOOK)
        env["PYTHONPATH"] = str(hook)
        env["BB_TEST_SERVER_DELAY"] = str(server_delay)
    return env


def start_run(
    home: Path, env: dict[str, str], err: IO[bytes], *args: str
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [BB, "--home", str(home), "run", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=err,
    )


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def marked_processes(marker: str) -> dict[int, str]:
    """Live (not zombie) processes carrying ``marker`` in their environment: pid →
    command line."""
    needle = f"{MARKER_VAR}={marker}".encode()
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X"):
            found[int(entry.name)] = cmd
    return found


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (an exiting process may no longer show
    its environment, yet still hold its files: it counts until it is a zombie)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_for_no_survivors(marker: str, known: Iterable[int] = (), timeout: float = 60.0) -> None:
    """Every marked process, and every pid of ``known`` (the run's processes seen before
    it was killed), has gone within ``timeout`` (a killed parent's children get their
    signal at once, but may take a moment to be scheduled on a busy machine)."""
    known = list(known)
    deadline = time.monotonic() + timeout
    while True:
        left = marked_processes(marker)
        left.update({pid: "(exiting)" for pid in known if _running(pid) and pid not in left})
        if not left:
            return
        if time.monotonic() > deadline:
            for pid in left:  # do not leave them to the next test either
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass
            raise AssertionError(f"processes outlived their run: {left}")
        time.sleep(0.2)


def sample_home(tmp_path: Path, *, events: int = 2_000) -> Path:
    """A billing home with a small sample month in landing/."""
    from billing_batch.config.settings import load_settings
    from billing_batch.usage.sample import generate

    home = tmp_path / "home"
    settings = load_settings(env={"BILLING_HOME": str(home)})
    generate(settings.landing_dir, workspaces=3, events=events, seed=11, bad_lines=0)
    return home


def have_proc() -> bool:
    """The process census reads /proc (Linux)."""
    return Path("/proc/self/environ").exists()
