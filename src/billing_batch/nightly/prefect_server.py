"""Prefect's temporary API server, started and supervised by billing-batch.

Without ``PREFECT_API_URL``, Prefect starts a temporary ("ephemeral") API server the
first time a flow needs one. On an unattended machine that goes wrong twice: Prefect
waits at most 20 s for it (``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``) while a
start on a loaded 2-core machine took 35-116 s, and its uvicorn process survives a
``kill -9`` of the run (it is left with parent 1).

:func:`ensure_api` starts the same server (Prefect's ``create_app`` under uvicorn, with
the environment Prefect gives it) *before* Prefect needs one, and points
``PREFECT_API_URL`` at it, so Prefect never starts its own:

* it waits up to ``[schedule] ephemeral_startup_timeout_seconds`` (600 s by default),
  saying on stderr (and in the log) what it is waiting for, every 10 s;
* the server cannot outlive this process (see :mod:`billing_batch.children`): SIGKILL
  when the parent dies (``PR_SET_PDEATHSIG``) and a watch pipe that the kernel closes
  on any death, ``kill -9`` included; a normal exit stops it (SIGTERM, then SIGKILL);
* it listens on a socket bound here (127.0.0.1, a free port) and handed over as a file
  descriptor: no race between choosing a port and binding it;
* its output goes to ``$PREFECT_HOME/temporary-api-server.log``, whose end is quoted
  when it fails to start.

One server per process, kept until the process exits (as Prefect keeps its own): the
flows of a backfill, or of several runs in one test session, share it.
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from .._core.children import launcher_args
from .._core.errors import BillingError
from ..config.settings import Settings

log = logging.getLogger(__name__)

#: Seconds between two "still starting" messages.
REPORT_EVERY_SECONDS = 10.0
#: Seconds to wait for a stopped server to exit before killing it.
STOP_GRACE_SECONDS = 10.0
#: The environment Prefect gives its temporary server (``SubprocessASGIServer``).
SERVER_ENV = {
    "PREFECT_UI_ENABLED": "0",
    "PREFECT__SERVER_EPHEMERAL": "1",
    "PREFECT__SERVER_FINAL": "1",
}


@dataclass
class _Server:
    process: subprocess.Popen[bytes]
    url: str
    watch_fd: int
    log_path: Path
    log_file: IO[bytes]

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period; reaps the process."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.watch_fd >= 0:
            os.close(self.watch_fd)
            self.watch_fd = -1
        self.log_file.close()


_server: _Server | None = None
_guard = threading.Lock()


def _say(message: str) -> None:
    print(f"billing-batch: {message}", file=sys.stderr, flush=True)
    log.info(message)


def prefect_home(settings: Settings) -> Path:
    """Prefect's home: ``$PREFECT_HOME``, else ``$BILLING_HOME/prefect``."""
    return Path(os.environ.get("PREFECT_HOME") or settings.home / "prefect")


def ensure_api(settings: Settings, *, report: Callable[[str], None] = _say) -> str:
    """The Prefect API this process uses: ``PREFECT_API_URL`` when set (a real server),
    else this process's supervised temporary server, started now if need be (waiting
    up to ``[schedule] ephemeral_startup_timeout_seconds``). Sets ``PREFECT_API_URL``.

    Raises :class:`BillingError` when the server exits or does not answer in time (the
    server is then stopped: nothing is left behind)."""
    global _server
    with _guard:
        if _server is not None and _server.alive():
            _point_prefect_at(_server.url)
            return _server.url
        configured = os.environ.get("PREFECT_API_URL")
        if configured:
            return configured
        if _server is not None:  # it died: start another
            _server.stop()
            _server = None
        server = _start(settings, settings.schedule.ephemeral_startup_timeout_seconds, report)
        _server = server
        _point_prefect_at(server.url)
        return server.url


def stop() -> None:
    """Stop this process's temporary server, if any (also run at interpreter exit)."""
    global _server
    with _guard:
        if _server is not None:
            _server.stop()
            _server = None


atexit.register(stop)


def server_pid() -> int | None:
    """The temporary server's pid while it runs (for tests and diagnostics)."""
    server = _server
    return server.process.pid if server is not None and server.alive() else None


def _point_prefect_at(url: str) -> None:
    os.environ["PREFECT_API_URL"] = url
    if "prefect.context" in sys.modules:  # Prefect read its settings already: again
        sys.modules["prefect.context"].refresh_global_settings_context()


def _app_dir() -> str:
    spec = importlib.util.find_spec("prefect")
    if spec is None or spec.origin is None:
        raise BillingError("Prefect is not installed (pip install prefect)")
    return str(Path(spec.origin).parent.parent)


def _start(settings: Settings, timeout: float, report: Callable[[str], None]) -> _Server:
    home = prefect_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "temporary-api-server.log"
    log_file = log_path.open("ab")
    log_file.write(f"--- {datetime.now(UTC).isoformat()} started by pid {os.getpid()}\n".encode())
    log_file.flush()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    read_fd, watch_fd = os.pipe()
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        port = sock.getsockname()[1]
        args = [
            "--app-dir",
            _app_dir(),
            "--factory",
            "prefect.server.api.server:create_app",
            "--fd",
            str(sock.fileno()),
            "--log-level",
            "error",
            "--lifespan",
            "on",
        ]
        process = subprocess.Popen(
            launcher_args("uvicorn", args, read_fd),
            pass_fds=(sock.fileno(), read_fd),
            env={**os.environ, **SERVER_ENV},
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    except BaseException:
        os.close(watch_fd)
        log_file.close()
        raise
    finally:
        sock.close()  # the child has its own copy
        os.close(read_fd)
    server = _Server(process, f"http://127.0.0.1:{port}/api", watch_fd, log_path, log_file)
    try:
        _wait_healthy(server, timeout, report)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_healthy(server: _Server, timeout: float, report: Callable[[str], None]) -> None:
    start = time.monotonic()
    report(
        f"starting Prefect's temporary API server (no PREFECT_API_URL; waiting up to "
        f"{timeout:.0f} s) ..."
    )
    next_report = start + REPORT_EVERY_SECONDS
    while True:
        waited = time.monotonic() - start
        if server.process.poll() is not None:
            raise BillingError(
                f"Prefect's temporary API server exited with status "
                f"{server.process.returncode} after {waited:.0f} s; its output "
                f"({server.log_path}):\n{_tail(server.log_path)}"
            )
        if _healthy(server.url, min(5.0, max(0.5, timeout - waited))):
            report(f"Prefect's temporary API server is up after {waited:.0f} s ({server.url})")
            return
        now = time.monotonic()
        if now - start >= timeout:
            raise BillingError(
                f"Prefect's temporary API server did not answer within {timeout:.0f} s "
                "(raise [schedule] ephemeral_startup_timeout_seconds, or point "
                f"PREFECT_API_URL at a running Prefect server); its output "
                f"({server.log_path}):\n{_tail(server.log_path)}"
            )
        if now >= next_report:
            report(f"starting Prefect's temporary API server ... (waited {now - start:.0f} s)")
            next_report += REPORT_EVERY_SECONDS
        time.sleep(0.2)


def _healthy(api_url: str, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, TimeoutError):
        return False


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no output)"
    return "\n".join(text.splitlines()[-lines:]) or "(no output)"


__all__ = ["REPORT_EVERY_SECONDS", "ensure_api", "prefect_home", "server_pid", "stop"]
