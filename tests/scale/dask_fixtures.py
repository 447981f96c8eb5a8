"""A real Dask cluster on 127.0.0.1: ``dask scheduler`` and two ``dask worker``
processes (no nanny: each worker is the process started here), not an in-process
cluster. Every process dies with the test process, even on a ``kill -9`` of it
(``PR_SET_PDEATHSIG``), and is stopped at the end of the session.

Also ``scale_state_env``: extra environment for the scale close (empty here; a Postgres
harness overrides it in ``tests/scale/conftest.py`` to put the state on Postgres).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from billing_batch._core.children import set_parent_death_signal
from billing_batch.nightly.fanout import WORKER_ENV

#: A loaded 2-core machine: a worker registers in ~2 s idle, far longer under load.
START_TIMEOUT = 300.0
WORKERS = 2


@dataclass(frozen=True)
class DaskCluster:
    address: str
    dir: Path
    pids: tuple[int, ...]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            args,
            env=env,
            cwd=log.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=set_parent_death_signal,
        )


def _workers_registered(address: str) -> int:
    from distributed import Client

    with Client(address, timeout=30) as client:
        return len(client.scheduler_info(n_workers=-1)["workers"])


def start_cluster(
    root: Path, env: dict[str, str]
) -> tuple[DaskCluster, list[subprocess.Popen[bytes]]]:
    """Start a scheduler and :data:`WORKERS` worker processes; wait until they are in."""
    dask = str(Path(sys.executable).parent / "dask")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [
        _start(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            root / "scheduler.log",
            env,
        )
    ]
    for i in range(WORKERS):
        procs.append(
            _start(
                [
                    dask,
                    "worker",
                    address,
                    "--host",
                    "127.0.0.1",
                    "--nthreads",
                    "1",
                    "--no-nanny",
                    "--no-dashboard",
                    "--name",
                    f"w{i}",
                    "--local-directory",
                    str(root / f"w{i}"),
                ],
                root / f"worker{i}.log",
                env,
            )
        )
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            stop(procs)
            pytest.fail(f"a Dask process exited ({dead[0].args[1]}): see the logs in {root}")
        try:
            if _workers_registered(address) == WORKERS:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop(procs)
            pytest.fail(f"Dask cluster not ready after {START_TIMEOUT:.0f} s (logs in {root})")
        time.sleep(0.5)
    return DaskCluster(address, root, tuple(p.pid for p in procs)), procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture(scope="session")
def dask_worker_env() -> dict[str, str]:
    """The workers' environment: this one with ``fanout.WORKER_ENV`` (the S3 credentials
    are added by the test module that needs them, before the cluster starts)."""
    return {**os.environ, **WORKER_ENV}


@pytest.fixture(scope="module")
def dask_cluster(
    tmp_path_factory: pytest.TempPathFactory, dask_worker_env: dict[str, str]
) -> Iterator[DaskCluster]:
    root = tmp_path_factory.mktemp("dask")
    cluster, procs = start_cluster(root, dask_worker_env)
    try:
        yield cluster
    finally:
        stop(procs)


@pytest.fixture
def scale_state_env() -> dict[str, str]:
    """Extra environment for the scale side of the close (the state's location)."""
    return {}


__all__ = [
    "WORKERS",
    "DaskCluster",
    "dask_cluster",
    "dask_worker_env",
    "scale_state_env",
    "start_cluster",
    "stop",
]
