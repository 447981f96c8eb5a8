"""Child processes that never outlive billing-batch, even after a ``kill -9``.

A process killed with SIGKILL runs no clean-up, and its children are handed to PID 1,
where they stay: an orphaned Prefect server (uvicorn) or PDF worker holds memory, a port,
and, for a forked child, the very file descriptor of the run lock (``flock`` is shared by
a fork), so the next nightly run would find the lock taken forever. Two guards, both set
up inside the child:

* ``PR_SET_PDEATHSIG`` (Linux ``prctl``): the kernel sends the child SIGKILL when the
  *thread* that created it ends, which for the main thread means when the process dies;
* a watch pipe (:func:`launcher_args`): the parent keeps the write end, the child a thread
  blocked reading the other end; when the parent process dies, however it dies, the
  kernel closes the write end and the child's read returns: the child kills itself.
  This one is per process, so a child started from a thread that ends keeps running.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

#: ``prctl`` option number of ``PR_SET_PDEATHSIG`` (linux/prctl.h).
PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux only).
    Returns whether the request was accepted."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(parent_pid: int) -> None:
    """In a child process: die (SIGKILL) when ``parent_pid`` dies.

    A ``ProcessPoolExecutor`` initializer (``initializer=die_with_parent,
    initargs=(os.getpid(),)``). If the parent is already gone (it died before the
    request was made), exit at once.
    """
    set_parent_death_signal()
    if os.getppid() != parent_pid:
        os._exit(70)


#: Python run by :func:`launcher_args` in the child before the real program: the two
#: guards, then the module as ``python -m`` would run it. Kept free of billing-batch
#: imports so that the child starts as fast as the module alone would.
_LAUNCHER = """\
import ctypes, os, runpy, signal, sys, threading
parent, watch_fd, thread_bound = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
if thread_bound and sys.platform.startswith("linux"):
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        pass
if os.getppid() != parent:
    os._exit(70)
def _watch():
    try:
        while os.read(watch_fd, 4096):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGKILL)
threading.Thread(target=_watch, name="billing-batch-parent-watch", daemon=True).start()
module = sys.argv[4]
sys.argv = [module, *sys.argv[5:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def launcher_args(
    module: str, args: list[str], watch_fd: int, *, thread_bound: bool = True
) -> list[str]:
    """The command line that runs ``python -m module *args`` as a child that dies with
    this process: pass ``watch_fd`` (the read end of a pipe whose write end this process
    keeps) in ``Popen(pass_fds=...)``.

    ``thread_bound=False`` leaves ``PR_SET_PDEATHSIG`` out, for a child that must outlive
    the thread starting it (a helper started from one task's thread and kept for the
    next tasks): the watch pipe alone, which is per process, then stops it."""
    bound = "1" if thread_bound else "0"
    return [sys.executable, "-c", _LAUNCHER, str(os.getpid()), str(watch_fd), bound, module, *args]


__all__ = [
    "PR_SET_PDEATHSIG",
    "die_with_parent",
    "launcher_args",
    "set_parent_death_signal",
]
