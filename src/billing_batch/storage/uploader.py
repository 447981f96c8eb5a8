"""PUTs to object storage from a helper process, so that a process rendering PDFs spends
none of its own CPU, nor its GIL, on the S3 client.

Measured here against SeaweedFS (one rendering process, 4 interleaved rounds of 200
invoices, medians): 59.0 ms per invoice to local disk, 62.1 ms with the PUTs on two
threads of the rendering process (s3fs/botocore's Python, ~1.4 ms of CPU per PUT, and
the renderer waiting for the GIL those threads hold), 57.2 ms with this helper process.
An :class:`Uploader` moves that work into a child process of its own: the renderer
hands it each invoice's bytes through a pipe (a copy, no file) and goes on with the
next invoice; the child PUTs them with :meth:`FileArea.write_many` (the same code, the
same atomicity: each object one PUT, the JSON before the PDF) and answers which
locations it wrote or why not.

* **Nothing is recorded before it is stored**: :meth:`Uploader.submit` returns a future
  that resolves to the locations once the child has written them; a failed upload is
  that future's :class:`StorageError`, and a child that dies fails every upload it had
  not answered (the next run renders those invoices again).
* **No orphan**: the child is started by ``_core.children.launcher_args`` and dies with
  this process, ``kill -9`` included (by the watch pipe, which is per process: not by
  ``PR_SET_PDEATHSIG``, which would kill it when the thread that started it ends).
* **Credentials** reach the child in its environment only (inherited), never on its
  command line nor in the pipe: it gets the area's root and the S3 settings (plain data).

One uploader per process and S3 settings (:func:`shared_uploader`), started on first use
and kept for later batches (a Dask worker renders many); :func:`close_uploaders` waits
for their uploads and stops them (also at exit).
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from queue import SimpleQueue
from typing import IO, Any

from .._core.children import launcher_args
from .._core.errors import StorageError
from ..config.settings import S3Settings
from .files import FileArea

#: Objects in flight at once in the child (each an invoice's JSON then its PDF).
UPLOAD_THREADS = 4

#: Uploads submitted and not yet answered, at most: past it :meth:`Uploader.submit`
#: waits, so a slow object store holds the renderer back instead of filling its memory
#: (an invoice's two files are ~60 KB: 64 of them ~4 MB).
MAX_IN_FLIGHT = 64


class Uploader:
    """A child process that PUTs files for this process (see the module docstring)."""

    def __init__(
        self, s3: S3Settings, threads: int = UPLOAD_THREADS, max_in_flight: int = MAX_IN_FLIGHT
    ) -> None:
        self.s3 = s3
        self._room = threading.BoundedSemaphore(max_in_flight)
        self._pending: dict[int, Future[list[str]]] = {}
        self._lock = threading.Lock()
        self._next_id = 0
        self._ended: str | None = None  # why the child can take no more, once it cannot
        self._outbox: SimpleQueue[list[bytes] | None] = SimpleQueue()
        read_fd, self._watch_fd = os.pipe()
        try:
            self._proc = subprocess.Popen(
                # not bound to this thread: a Dask worker keeps it for its later tasks
                launcher_args(
                    __name__, [s3.model_dump_json(), str(threads)], read_fd, thread_bound=False
                ),
                pass_fds=(read_fd,),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        except BaseException:
            os.close(self._watch_fd)
            raise
        finally:
            os.close(read_fd)
        self._writer = threading.Thread(target=self._write, name="uploader-in", daemon=True)
        self._reader = threading.Thread(target=self._read, name="uploader-out", daemon=True)
        self._writer.start()
        self._reader.start()

    @property
    def alive(self) -> bool:
        return self._ended is None and self._proc.poll() is None

    def submit(self, area: FileArea, files: Sequence[tuple[str, bytes]]) -> Future[list[str]]:
        """PUT ``files`` (name, bytes), in order, into ``area`` (which must be on this
        uploader's S3 settings); the future gives their locations. Waits while
        :data:`MAX_IN_FLIGHT` uploads are unanswered."""
        if area.s3 != self.s3:
            raise ValueError("this uploader writes with other S3 settings")
        for name, _ in files:
            area.location(name)  # a bad name fails here, not in the child
        future: Future[list[str]] = Future()
        self._room.acquire()
        future.add_done_callback(lambda _: self._room.release())
        with self._lock:
            if self._ended is not None:
                future.set_exception(StorageError(self._ended))
                return future
            request_id = self._next_id
            self._next_id += 1
            self._pending[request_id] = future
        head = {
            "id": request_id,
            "root": area.root,
            "names": [n for n, _ in files],
            "sizes": [len(d) for _, d in files],
        }
        self._outbox.put([json.dumps(head).encode() + b"\n", *(d for _, d in files)])
        return future

    def close(self) -> None:
        """Wait for every upload submitted, then stop the child."""
        self._outbox.put(None)
        self._writer.join()
        self._reader.join()
        self._proc.wait()
        os.close(self._watch_fd)

    # --- the two threads ---------------------------------------------------------------
    def _write(self) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            while (chunks := self._outbox.get()) is not None:
                for chunk in chunks:
                    stdin.write(chunk)
                if self._outbox.empty():
                    stdin.flush()
        except OSError:  # the child is gone: the reader fails what is pending
            pass
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    def _read(self) -> None:
        stdout = self._proc.stdout
        assert stdout is not None
        why = ""
        try:
            for line in stdout:
                answer = json.loads(line)
                with self._lock:
                    future = self._pending.pop(int(answer["id"]))
                if "error" in answer:
                    future.set_exception(StorageError(str(answer["error"])))
                else:
                    future.set_result([str(x) for x in answer["locations"]])
        except Exception as exc:  # an answer this side cannot read: stop the child
            why = f"; an unreadable answer ({type(exc).__name__})"
            self._proc.kill()
        finally:
            stdout.close()
            status = self._proc.wait()
            with self._lock:
                self._ended = f"the upload process ended (exit status {status}{why})"
                pending, self._pending = self._pending, {}
            for future in pending.values():
                future.set_exception(StorageError(f"{self._ended} before this upload was done"))


_UPLOADERS: dict[tuple[int, S3Settings], Uploader] = {}
_UPLOADERS_LOCK = threading.Lock()


def shared_uploader(s3: S3Settings) -> Uploader:
    """This process's uploader for ``s3`` (started now, or again if its child ended)."""
    key = (os.getpid(), s3)
    with _UPLOADERS_LOCK:
        uploader = _UPLOADERS.get(key)
        if uploader is None or not uploader.alive:
            uploader = _UPLOADERS[key] = Uploader(s3)
        return uploader


def close_uploaders() -> None:
    """Wait for this process's uploads and stop its uploaders."""
    with _UPLOADERS_LOCK:
        mine = [k for k in _UPLOADERS if k[0] == os.getpid()]
        uploaders = [_UPLOADERS.pop(k) for k in mine]
    for uploader in uploaders:
        uploader.close()


atexit.register(close_uploaders)


# --- the child ---------------------------------------------------------------------------
def _read_exact(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError("the request ended early")
    return data


def _serve(s3_json: str, threads: int) -> int:
    """The child: read requests on stdin until it closes, answer each on stdout."""
    s3 = S3Settings.model_validate_json(s3_json)
    stdin = sys.stdin.buffer
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything else printed goes to stderr, never into the answers
    lock = threading.Lock()

    def answer(message: dict[str, Any]) -> None:
        with lock:
            answers.write(json.dumps(message).encode() + b"\n")
            answers.flush()

    def put(request_id: int, area: FileArea, files: list[tuple[str, bytes]]) -> None:
        try:
            answer({"id": request_id, "locations": area.write_many(files)})
        except Exception as exc:
            reason = str(exc) if isinstance(exc, StorageError) else f"{type(exc).__name__}"
            answer({"id": request_id, "error": reason})

    with ThreadPoolExecutor(threads, thread_name_prefix="put") as pool:
        while line := stdin.readline():
            head = json.loads(line)
            files = [
                (str(n), _read_exact(stdin, int(s)))
                for n, s in zip(head["names"], head["sizes"], strict=True)
            ]
            pool.submit(put, int(head["id"]), FileArea(str(head["root"]), s3), files)
    answers.close()
    return 0


__all__ = ["MAX_IN_FLIGHT", "UPLOAD_THREADS", "Uploader", "close_uploaders", "shared_uploader"]


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1], int(sys.argv[2])))
