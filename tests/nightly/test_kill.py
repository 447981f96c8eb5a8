"""`kill -9` of a nightly run leaves no process behind: not Prefect's API server (while it
starts, or serving the flow), not a PDF worker; and the run lock is free again.

The run is a real `billing-batch run` subprocess killed with SIGKILL; every process it
started carries a marker in its environment, and none may outlive it (a process whose
parent died is re-parented, so the census goes by the marker, not by the tree)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from billing_batch.config.settings import load_settings
from billing_batch.nightly.steps import run_lock
from billing_batch.storage.locking import file_lock
from tests.nightly.support import (
    have_proc,
    marked_processes,
    new_marker,
    run_env,
    sample_home,
    start_run,
    wait_for_no_survivors,
    wait_until,
)

pytestmark = [
    pytest.mark.skipif(not have_proc(), reason="the process census needs /proc"),
    pytest.mark.slow,
]

REPO = Path(__file__).resolve().parents[2]


def _servers(marker: str) -> list[int]:
    return [
        pid
        for pid, cmd in marked_processes(marker).items()
        if "prefect.server.api.server:create_app" in cmd
    ]


class HangingReceiver:
    """A webhook receiver on 127.0.0.1 that never answers: a run delivering to it is
    held in its webhooks step (mid-flow, Prefect's server serving it) until killed."""

    def __init__(self) -> None:
        self.called = threading.Event()
        self.release = threading.Event()
        called, release = self.called, self.release

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                called.set()
                release.wait(120)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("moment", ["while Prefect's server starts", "during the flow"])
def test_kill_9_of_a_run_leaves_no_process_behind(tmp_path: Path, moment: str) -> None:
    home = sample_home(tmp_path)
    marker = new_marker()
    starting = moment == "while Prefect's server starts"
    env = run_env(tmp_path, marker, server_delay=600 if starting else None)
    receiver = HangingReceiver()
    (home / "billing.toml").write_text(
        "[webhooks]\nallow_private_addresses = true\ntimeout_seconds = 120\n"
        f'[[webhooks.endpoints]]\nid = "hang"\nurl = "{receiver.url}"\n'
        'secret_env = "TEST_WHSEC"\n'
    )
    env["TEST_WHSEC"] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    err_path = tmp_path / "run.err"
    try:
        with err_path.open("wb") as err:
            run = start_run(home, env, err, "--date", "2024-02-01")
            try:
                wait_until(lambda: bool(_servers(marker)), 120, "Prefect's server process")
                if not starting:  # held in the webhooks step, the flow half done
                    wait_until(
                        lambda: receiver.called.is_set() or run.poll() is not None,
                        300,
                        "the run to deliver its first webhook",
                    )
                assert run.poll() is None, err_path.read_text()
                assert _servers(marker), "no server to outlive the run"
                seen = list(marked_processes(marker))
                os.kill(run.pid, signal.SIGKILL)
                run.wait(timeout=60)
            finally:
                if run.poll() is None:
                    run.kill()
                    run.wait()
    finally:
        receiver.close()
    assert run.returncode == -signal.SIGKILL
    wait_for_no_survivors(marker, seen)
    # flock went with the process: the next run may start
    with run_lock(load_settings(env={"BILLING_HOME": str(home)})):
        pass


#: A parent that holds a lock and renders invoices with two worker processes and, after
#: the first batch, blocks (in the progress callback) while the workers are alive: the
#: moment to kill it. A forked worker that survived would also hold the lock.
RENDER_PARENT = textwrap.dedent(
    """\
    import sys, time
    from pathlib import Path
    from billing_batch.documents.pool import render_many
    from billing_batch.storage.locking import file_lock
    from tests.documents.samples import invoice

    out = Path(sys.argv[1])
    items = [(invoice(id=f"inv_{i}"), out, f"I{i}") for i in range(8)]

    def progress(n):
        print("rendered", n, flush=True)
        time.sleep(3600)

    with file_lock(out / "run.lock"):  # as a nightly run holds its lock
        render_many(items, processes=2, start_method=sys.argv[2], progress=progress)
    """
)


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_kill_9_of_a_renderer_leaves_no_pdf_worker_behind(
    tmp_path: Path, start_method: str
) -> None:
    marker = new_marker()
    env = run_env(tmp_path, marker)
    parent = subprocess.Popen(
        [sys.executable, "-c", RENDER_PARENT, str(tmp_path), start_method],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()  # the first batch is done: workers are alive
        assert line.startswith(b"rendered"), parent.stderr.read() if parent.stderr else line
        workers = [p for p in marked_processes(marker) if p != parent.pid]
        assert len(workers) >= 2, "no worker processes to outlive the parent"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=60)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for stream in (parent.stdout, parent.stderr):
            if stream is not None:
                stream.close()
    wait_for_no_survivors(marker, workers)
    with file_lock(tmp_path / "run.lock"):  # no survivor holds the parent's lock
        pass
