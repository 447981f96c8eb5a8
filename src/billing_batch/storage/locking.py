"""Inter-process locks (``flock`` on a file under ``$BILLING_HOME/locks``).

The lake takes one writer at a time: ingests, rollups, state mirrors and nightly runs
hold ``lake.lock`` while they write. A nightly run also holds ``run.lock`` for its whole
duration so a second run for any date exits at once with a clear message.

A lock is re-entrant within its holder: a thread (``scope="thread"``, the default: another
thread of the same process still waits) or the whole process (``scope="process"``: the
run lock, which the CLI takes before Prefect starts and the flow takes again, whatever
thread Prefect runs it in). A forked child never inherits the holding: it is another
process, and its own attempt conflicts like anyone else's.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from .._core.errors import LockedError

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
    owner = threading.get_ident() if scope == "thread" else 0
    key = (str(path.resolve()), os.getpid(), owner)
    with _held_guard:
        if key in _held:  # re-entrant within one process: the outer holder owns it
            _held[key] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _held_guard:
                _held[key] -= 1
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


def _read_holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid else ""
