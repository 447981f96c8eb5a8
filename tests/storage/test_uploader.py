"""The upload process (``storage.uploader``): against an S3 stand-in on loopback that
records every PUT. The bytes arrive intact and each invoice's JSON before its PDF; a
refused PUT is that upload's error; a child that dies fails what it had not answered and
the next request starts another; a ``kill -9`` of the parent leaves no child behind.
(The same path against a real SeaweedFS: ``tests/scale/test_s3_files.py``.)"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from billing_batch._core.errors import StorageError
from billing_batch.config.settings import S3Settings
from billing_batch.storage.files import FileArea
from billing_batch.storage.uploader import Uploader, close_uploaders, shared_uploader
from tests.nightly.support import marked_processes, new_marker, run_env, wait_for_no_survivors

REPO = Path(__file__).resolve().parents[2]


class _FakeS3(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.puts: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.held = threading.Event()  # set when a PUT of a key with "hold" arrives
        self.release = threading.Event()  # which then waits for this


class _Handler(BaseHTTPRequestHandler):
    server: _FakeS3
    protocol_version = "HTTP/1.1"  # botocore's PUT asks "Expect: 100-continue"

    def log_message(self, *args: Any) -> None:
        pass

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if "deny" in self.path:
            self._answer(403, b"<Error><Code>AccessDenied</Code><Message>no</Message></Error>")
            return
        if "hold" in self.path:
            self.server.held.set()
            self.server.release.wait(60)
        with self.server.lock:
            self.server.puts.append((self.path, body))
        self.send_response(200)
        self.send_header("ETag", f'"{hashlib.md5(body).hexdigest()}"')  # noqa: S324
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def fake_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[_FakeS3]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    server = _FakeS3()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    close_uploaders()
    server.shutdown()
    server.server_close()


def _area(server: _FakeS3) -> FileArea:
    port = server.server_address[1]
    s3 = S3Settings(endpoint=f"http://127.0.0.1:{port}", url_style="path", region="us-east-1")
    return FileArea("s3://bucket/files/invoices", s3)


def test_uploads_arrive_intact_each_json_before_its_pdf(fake_s3: _FakeS3) -> None:
    area = _area(fake_s3)
    rng = random.Random(7)
    sent = {
        f"I{i}": (rng.randbytes(rng.randint(0, 300_000)), rng.randbytes(rng.randint(1, 90_000)))
        for i in range(24)
    }  # larger than a pipe's buffer, and an empty file
    uploader = Uploader(area.s3)
    futures = {
        name: uploader.submit(area, [(f"{name}.json", j), (f"{name}.pdf", p)])
        for name, (j, p) in sent.items()
    }
    for name, future in futures.items():
        assert future.result(timeout=120) == [
            f"s3://bucket/files/invoices/{name}.json",
            f"s3://bucket/files/invoices/{name}.pdf",
        ]
    uploader.close()
    got = dict(fake_s3.puts)
    order = [path for path, _ in fake_s3.puts]
    for name, (j, p) in sent.items():
        json_key, pdf_key = (f"/bucket/files/invoices/{name}.{x}" for x in ("json", "pdf"))
        assert got[json_key] == j and got[pdf_key] == p
        assert order.index(json_key) < order.index(pdf_key)
    assert len(fake_s3.puts) == 2 * len(sent)


def test_a_refused_put_is_that_uploads_error_only(fake_s3: _FakeS3) -> None:
    area = _area(fake_s3)
    uploader = shared_uploader(area.s3)
    denied = uploader.submit(area, [("deny.json", b"{}"), ("deny.pdf", b"%PDF")])
    fine = uploader.submit(area, [("ok.json", b"{}"), ("ok.pdf", b"%PDF")])
    with pytest.raises(StorageError, match=r"cannot write s3://bucket/files/invoices/deny\.json"):
        denied.result(timeout=120)
    assert fine.result(timeout=120)[1].endswith("/ok.pdf")
    assert "/bucket/files/invoices/deny.pdf" not in dict(fake_s3.puts)  # no PDF without JSON
    assert "test-secret" not in str(denied.exception())


def test_a_dead_upload_process_fails_what_it_had_not_answered(fake_s3: _FakeS3) -> None:
    area = _area(fake_s3)
    first = shared_uploader(area.s3)
    held = first.submit(area, [("hold.json", b"{}"), ("hold.pdf", b"%PDF")])
    assert fake_s3.held.wait(60), "the upload never reached the server"
    first._proc.kill()
    with pytest.raises(StorageError, match=r"upload process ended \(exit status -9.*before"):
        held.result(timeout=60)
    assert not first.alive
    with pytest.raises(StorageError, match="upload process ended"):
        first.submit(area, [("late.json", b"{}")]).result(timeout=5)
    second = shared_uploader(area.s3)
    assert second is not first and second.alive
    fake_s3.release.set()
    assert second.submit(area, [("again.json", b"{}")]).result(timeout=120)


def test_the_upload_process_outlives_the_thread_that_started_it(fake_s3: _FakeS3) -> None:
    """A Dask worker starts it from one task's thread and keeps it for the next tasks,
    which may run on another thread."""
    area = _area(fake_s3)
    started: list[Uploader] = []

    def task() -> None:  # starts it, and ends once it has answered (it is up)
        started.append(shared_uploader(area.s3))
        started[0].submit(area, [("first.json", b"{}")]).result(timeout=120)

    thread = threading.Thread(target=task)
    thread.start()
    thread.join()
    time.sleep(1.0)  # PR_SET_PDEATHSIG would have killed it by now
    assert started[0].alive
    assert shared_uploader(area.s3) is started[0]
    assert started[0].submit(area, [("later.json", b"{}")]).result(timeout=120)


def test_submit_waits_while_too_many_uploads_are_unanswered(fake_s3: _FakeS3) -> None:
    """A slow object store holds the renderer back instead of filling its memory."""
    area = _area(fake_s3)
    uploader = Uploader(area.s3, max_in_flight=2)
    held = uploader.submit(area, [("hold.json", b"{}")])
    assert fake_s3.held.wait(60)
    uploader.submit(area, [("second.json", b"{}")]).result(timeout=120)
    third = uploader.submit(area, [("hold2.json", b"{}")])  # in flight with the held one
    submitted = threading.Event()

    def fourth() -> None:
        uploader.submit(area, [("fourth.json", b"{}")])
        submitted.set()

    waiting = threading.Thread(target=fourth)
    waiting.start()
    assert not submitted.wait(1.0)  # two unanswered: the fourth waits
    fake_s3.release.set()
    assert submitted.wait(120)
    assert held.result(timeout=120) and third.result(timeout=120)
    waiting.join()
    uploader.close()
    assert {p for p, _ in fake_s3.puts} >= {
        f"/bucket/files/invoices/{n}.json" for n in ("hold", "second", "hold2", "fourth")
    }


def test_render_many_mixing_local_and_object_storage(fake_s3: _FakeS3, tmp_path: Path) -> None:
    from billing_batch.documents import pool
    from tests.documents.samples import invoice

    area = _area(fake_s3)
    items = [(invoice(id="inv_a"), tmp_path, "A"), (invoice(id="inv_b"), area, "B")]
    local, remote = pool.render_many(items, processes=1)
    assert local.ok and Path(str(local.pdf_path)).read_bytes().startswith(b"%PDF-")
    assert remote.ok and remote.pdf_path == "s3://bucket/files/invoices/B.pdf"
    assert dict(fake_s3.puts)["/bucket/files/invoices/B.pdf"].startswith(b"%PDF-")


PARENT = textwrap.dedent(
    """\
    import sys, time
    from billing_batch.config.settings import S3Settings
    from billing_batch.storage.uploader import shared_uploader

    up = shared_uploader(S3Settings(endpoint="http://127.0.0.1:9", url_style="path"))
    print(up._proc.pid, flush=True)
    time.sleep(3600)
    """
)


def test_kill_9_of_the_parent_leaves_no_upload_process(tmp_path: Path) -> None:
    marker = new_marker()
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT],
        cwd=REPO,
        env=run_env(tmp_path, marker),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert child in marked_processes(marker)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=60)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
    wait_for_no_survivors(marker, [child])
