"""A throwaway PostgreSQL cluster for the tests (Debian's ``postgresql`` package).

``initdb`` + ``postgres`` in a temporary directory, listening on 127.0.0.1 and a free
port, run as a non-root user (``setpriv`` to ``nobody`` when the tests run as root:
``initdb`` refuses root). The server is a direct child of the test process with
``--pdeathsig=KILL``: a killed test run leaves no server behind. One cluster per test
process (session fixture), one fresh database per test (:func:`pg_database`).

Without the binaries (no ``postgresql`` package) the tests that need it are skipped,
saying so; ``scripts/system-deps.sh`` installs it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["PgServer", "find_pg_bin", "pg_database", "pg_server"]


def find_pg_bin() -> Path | None:
    """The directory holding ``initdb`` and ``postgres`` (newest Debian version first)."""
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        for version in sorted(root.iterdir(), key=lambda p: p.name, reverse=True):
            if (version / "bin" / "postgres").exists():
                return version / "bin"
    found = shutil.which("initdb")
    if found and (Path(found).resolve().parent / "postgres").exists():
        return Path(found).resolve().parent
    return None


@dataclass
class PgServer:
    host: str
    port: int
    user: str

    def conninfo(self, dbname: str) -> str:
        """libpq key/value form (the DuckLake catalog's ``postgres:...``)."""
        return f"dbname={dbname} host={self.host} port={self.port} user={self.user}"

    def url(self, dbname: str) -> str:
        """SQLAlchemy form (``[state] url``)."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as con:
            con.execute(sql)  # harness-only DDL with names it generated itself


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd]


def _start(bindir: Path, base: Path) -> tuple[subprocess.Popen[bytes], int]:
    data = base / "data"
    if os.geteuid() == 0:
        os.chown(base, _nobody_uid(), -1)
    subprocess.run(
        _as_user(
            [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]
            + ["-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]
        ),
        check=True,
        capture_output=True,
    )
    port = _free_port()
    log = open(base / "server.log", "wb")  # noqa: SIM115 - the server's lifetime
    options = ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"]
    cmd = [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(base), *options]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] + [
            "--pdeathsig=KILL",
            *cmd,
        ]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + 120  # a loaded 2-core machine: generous
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((base / "server.log").read_text())
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
            import psycopg

            psycopg.connect(
                f"dbname=postgres host=127.0.0.1 port={port} user=postgres", connect_timeout=5
            ).close()
            return proc, port
        except Exception:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the test PostgreSQL did not start in 120 s")


def _nobody_uid() -> int:
    import pwd

    return pwd.getpwnam("nobody").pw_uid


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL cluster for this test process, stopped after."""
    bindir = find_pg_bin()
    if bindir is None:
        pytest.skip(
            "PostgreSQL binaries not found: install the Debian package 'postgresql' "
            "(scripts/system-deps.sh)"
        )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (the 'scale' extra)")
    base = Path(tempfile.mkdtemp(prefix="bb-pg-"))
    os.chmod(base, 0o755)
    proc, port = _start(bindir, base)
    try:
        yield PgServer(host="127.0.0.1", port=port, user="postgres")
    finally:
        proc.send_signal(signal.SIGINT)  # fast shutdown: clients are cut off
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_database(pg_server: PgServer) -> Iterator[str]:
    """A fresh, empty database (its name), dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg_server.admin(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        pg_server.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
