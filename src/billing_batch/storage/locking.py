"""Inter-process locks: ``flock`` on a file under ``$BILLING_HOME/locks`` on one
machine; a PostgreSQL advisory lock when the lock must hold across machines.

The lake takes one writer at a time: ingests, rollups, state mirrors and nightly runs
hold ``lake.lock`` while they write. A nightly run also holds ``run.lock`` for its whole
duration so a second run for any date exits at once with a clear message.

:func:`named_lock` picks the kind: the run lock is an advisory lock on the state's
PostgreSQL when ``[state] url`` is one, the lake write lock is an advisory lock on the
catalog's PostgreSQL when ``[lake] catalog`` is one (DuckLake enforces no uniqueness:
two machines ingesting at once could both accept one event id), a file lock otherwise.
An advisory lock is held by a connection of its own: a holder that dies (even by
``kill -9``, or its machine) loses the connection and with it the lock.

A lock is re-entrant within its holder: a thread (``scope="thread"``, the default: another
thread of the same process still waits) or the whole process (``scope="process"``: the
run lock, which the CLI takes before Prefect starts and the flow takes again, whatever
thread Prefect runs it in). A forked child never inherits the holding: it is another
process, and its own attempt conflicts like anyone else's.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .._core.errors import LakeError, LockedError

if TYPE_CHECKING:
    from ..config.settings import Settings

# Locks held, per holder ((path, pid, thread or 0 for the whole process) → depth): a
# holder taking a lock it holds is a no-op, so a function that locks can call another that
# locks the same thing. Another thread still waits for a thread-scoped lock (flock
# conflicts between open file descriptions); the pid keeps a forked child out.
_held: dict[tuple[str, int, int], int] = {}
_held_guard = threading.Lock()


@contextmanager
def file_lock(
    path: Path,
    *,
    timeout: float = 0.0,
    what: str = "lock",
    scope: Literal["thread", "process"] = "thread",
) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (re-entrant within its holder: the thread, or
    with ``scope="process"`` any thread of this process).

    ``timeout=0`` fails at once when another process holds it; a positive timeout
    waits (polling) that many seconds. The holder's pid is written into the file so the
    error can name it.
    """
    key = _holder_key(str(path.resolve()), scope)
    if _reenter(key):
        try:
            yield
        finally:
            _leave(key)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    holder = _read_holder(path)
                    raise LockedError(
                        f"another {what} is in progress{holder}; "
                        f"try again when it finishes ({path})"
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        with _held_guard:
            _held[key] = 1
        try:
            yield
        finally:
            with _held_guard:
                _held.pop(key, None)
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _holder_key(name: str, scope: Literal["thread", "process"]) -> tuple[str, int, int]:
    return (name, os.getpid(), threading.get_ident() if scope == "thread" else 0)


def _reenter(key: tuple[str, int, int]) -> bool:
    """Count one more holding when this holder already holds the lock."""
    with _held_guard:
        if key in _held:  # re-entrant within one process: the outer holder owns it
            _held[key] += 1
            return True
    return False


def _leave(key: tuple[str, int, int]) -> None:
    with _held_guard:
        _held[key] -= 1


def advisory_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for ``name`` (``billing-batch:<name>``)."""
    digest = hashlib.blake2b(f"billing-batch:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def advisory_lock(
    conninfo: str,
    name: str,
    *,
    timeout: float = 0.0,
    what: str = "lock",
    scope: Literal["thread", "process"] = "thread",
) -> Iterator[None]:
    """Hold the PostgreSQL session advisory lock ``name`` on the database ``conninfo``
    (libpq form: ``dbname=... host=...`` or ``postgresql://...``), on a connection of its
    own, re-entrant like :func:`file_lock`. ``timeout=0`` fails at once when another
    session (any machine) holds it; a positive timeout waits, polling. The connection's
    ``application_name`` says who holds it (pid and host), so the error can name them."""
    import psycopg

    key = _holder_key(f"pg:{conninfo}:{name}", scope)
    if _reenter(key):
        try:
            yield
        finally:
            _leave(key)
        return
    lock_id = advisory_key(name)
    me = f"billing-batch {what} pid {os.getpid()} on {socket.gethostname()}"[:63]
    try:
        con = psycopg.connect(conninfo, autocommit=True, application_name=me, connect_timeout=60)
    except psycopg.Error as exc:
        raise LakeError(f"cannot reach PostgreSQL for the {what} lock: {exc}") from exc
    try:
        deadline = time.monotonic() + timeout
        while True:
            row = con.execute("SELECT pg_try_advisory_lock(%(k)s)", {"k": lock_id}).fetchone()
            if row is not None and row[0]:
                break
            if time.monotonic() >= deadline:
                raise LockedError(
                    f"another {what} is in progress{_advisory_holder(con, lock_id)}; "
                    f"try again when it finishes (PostgreSQL advisory lock {name!r})"
                )
            time.sleep(0.2)
        with _held_guard:
            _held[key] = 1
        try:
            yield
        finally:
            with _held_guard:
                _held.pop(key, None)
            try:
                con.execute("SELECT pg_advisory_unlock(%(k)s)", {"k": lock_id})
            except psycopg.Error:
                pass  # the connection is gone: so is the lock
    finally:
        con.close()


def _advisory_holder(con: object, lock_id: int) -> str:
    """`` (billing-batch ... pid N on host)`` for the session holding ``lock_id``."""
    import psycopg

    assert isinstance(con, psycopg.Connection)
    classid, objid = (lock_id >> 32) & 0xFFFFFFFF, lock_id & 0xFFFFFFFF
    try:
        row = con.execute(
            "SELECT a.application_name FROM pg_locks AS l "
            "JOIN pg_stat_activity AS a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.classid = %(c)s AND l.objid = %(o)s AND l.objsubid = 1",
            {"c": classid, "o": objid},
        ).fetchone()
    except psycopg.Error:
        return ""
    return f" ({row[0]})" if row and row[0] else ""


def postgres_conninfo(url: str) -> str:
    """libpq's form of a SQLAlchemy URL (``postgresql+psycopg://...``) or of a DuckLake
    catalog (``postgres:dbname=... host=...``)."""
    if url.startswith("postgres:"):
        return url.removeprefix("postgres:")
    if url.startswith("postgresql:") and not url.startswith("postgresql://"):
        return url.removeprefix("postgresql:")
    scheme, sep, rest = url.partition("://")
    return f"postgresql://{rest}" if sep else url


@contextmanager
def named_lock(
    settings: Settings,
    name: Literal["run", "lake"],
    *,
    timeout: float = 0.0,
    what: str = "lock",
    scope: Literal["thread", "process"] = "thread",
) -> Iterator[None]:
    """The ``run`` lock (nightly runs) or the ``lake`` write lock: an advisory lock on
    the state's (run) or the catalog's (lake) PostgreSQL when it is one, across
    machines; else ``locks/<name>.lock``."""
    url = ""
    if name == "run" and settings.state_on_postgres:
        url = settings.state.url
    elif name == "lake" and settings.catalog_on_postgres:
        url = settings.catalog_url
    if url:
        with advisory_lock(postgres_conninfo(url), name, timeout=timeout, what=what, scope=scope):
            yield
    else:
        with file_lock(
            settings.locks_dir / f"{name}.lock", timeout=timeout, what=what, scope=scope
        ):
            yield


__all__ = ["advisory_key", "advisory_lock", "file_lock", "named_lock", "postgres_conninfo"]


def _read_holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid else ""
