"""The month close past one machine, side by side in one run (``bench_nightly --scale``).

    .venv/bin/python benchmarks/bench_scale.py [--workspaces 10000] [--events 10000000]
                                               [--rounds 1] [--data-dir /tmp/billing-bench]

Configurations, each a fresh ``$BILLING_HOME`` closing the same sample month with
``billing-batch run --date 2024-02-01`` (a child process, Prefect's ephemeral API, no
Stripe key), run interleaved round after round (medians when ``--rounds`` > 1):

* ``embedded``: the default (local disk, SQLite catalog, PDFs in a pool of one process
  per core);
* ``embedded-1p``: the same with ``[invoices] render_processes = 1`` (one rendering
  process: the baseline a single Dask worker is compared with);
* ``s3``: lake data and every file on SeaweedFS (started here on 127.0.0.1), PDFs in the
  local pool ("SeaweedFS, single worker");
* ``pg``: ``s3`` with the state and the DuckLake catalog on PostgreSQL (a throwaway
  cluster started here, as the tests' harness does; a fresh database pair per close):
  "Postgres + SeaweedFS, single worker";
* ``pg-1p``: ``pg`` with one rendering process: everything ``dask-1`` has but Dask, so
  ``dask-1`` vs ``pg-1p`` is what Dask itself adds;
* ``dask-1`` / ``dask-2``: ``pg`` plus the PDFs on a Dask scheduler with 1 / 2 worker
  processes (``dask worker --nthreads 1 --no-nanny``), started here.

Prints per-step seconds, each configuration's ratio to ``embedded``, the overhead of the
distributed path at one worker (``dask-1`` vs ``embedded-1p``: target <= 15%), and the
extrapolation from the measured per-invoice costs of how many workers close 1,000,000
workspaces in under an hour. On a 2-core machine two workers cannot beat two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_nightly import BB, ROOT, sample  # noqa: E402

from billing_batch.nightly.fanout import WORKER_ENV  # noqa: E402

ACCESS, SECRET = "benchkey", "bench-secret-key"
CONFIGS = ("embedded", "embedded-1p", "s3", "pg", "pg-1p", "dask-1", "dask-2")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    from billing_batch._core.children import set_parent_death_signal

    with log.open("wb") as out:
        return subprocess.Popen(
            args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent,
            preexec_fn=set_parent_death_signal,
        )  # fmt: skip


def start_seaweedfs(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    weed = str(Path(sys.executable).parent / "weed")
    p = [_port() for _ in range(11)]
    names = ["master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
             "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc", "webdav.port",
             "admin.port", "admin.port.grpc"]  # fmt: skip
    args = [weed, "mini", f"-dir={root}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-master.telemetry=false", "-admin.ui=false", "-s3.port.iceberg=0",
            "-s3.port.lance=0", *(f"-{n}={v}" for n, v in zip(names, p, strict=True))]  # fmt: skip
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": SECRET}
    proc = _spawn(args, root / "weed.log", env)
    endpoint = f"127.0.0.1:{p[6]}"
    import s3fs

    fs = s3fs.S3FileSystem(key=ACCESS, secret=SECRET, client_kwargs={"endpoint_url": f"http://{endpoint}"},
                           config_kwargs={"s3": {"addressing_style": "path"}})  # fmt: skip
    deadline = time.monotonic() + 300
    while True:
        try:
            fs.mkdir("bench")
            break
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"SeaweedFS did not start: see {root / 'weed.log'}") from None
            time.sleep(0.5)
    return proc, endpoint


def start_dask(root: Path, workers: int, env: dict[str, str]) -> tuple[list[Any], str]:
    dask = str(Path(sys.executable).parent / "dask")
    port = _port()
    address = f"tcp://127.0.0.1:{port}"
    root.mkdir(parents=True, exist_ok=True)
    procs = [_spawn([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                     "--no-dashboard"], root / "scheduler.log", env)]  # fmt: skip
    for i in range(workers):
        procs.append(_spawn([dask, "worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                             "--no-nanny", "--no-dashboard", "--local-directory",
                             str(root / f"w{i}")], root / f"worker{i}.log", env))  # fmt: skip
    from distributed import Client

    deadline = time.monotonic() + 300
    while True:
        try:
            with Client(address, timeout=30) as c:
                if len(c.scheduler_info(n_workers=-1)["workers"]) == workers:
                    return procs, address
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"Dask did not start: logs in {root}")
        time.sleep(0.5)


def stop(procs: list[Any]) -> None:
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()


def start_postgres(root: Path) -> tuple[subprocess.Popen[bytes], Any]:
    """A throwaway PostgreSQL (the tests' harness: initdb + postgres on 127.0.0.1)."""
    sys.path.insert(0, str(ROOT))
    from tests.postgres_harness import PgServer, _start, find_pg_bin

    bindir = find_pg_bin()
    if bindir is None:
        raise SystemExit("PostgreSQL binaries not found: run scripts/system-deps.sh")
    os.chmod(root, 0o755)  # the server runs as nobody: its folder must be reachable
    proc, port = _start(bindir, root)
    return proc, PgServer(host="127.0.0.1", port=port, user="postgres")


def close_once(
    name: str,
    logs: Path,
    work: Path,
    endpoint: str,
    env: dict[str, str],
    rnd: int,
    pg: Any = None,
) -> dict[str, Any]:
    """One month close in a fresh home; the run summary plus the end-to-end seconds."""
    home = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=work))
    run_env = {**env, "BILLING_HOME": str(home)}
    if name.startswith(("pg", "dask")):
        db = f"bench_{name.replace('-', '_')}_{rnd}"
        pg.admin(f"CREATE DATABASE {db}")
        pg.admin(f"CREATE DATABASE {db}_lake")
        run_env.update(BILLING_STATE_URL=pg.url(db),
                       BILLING_LAKE_CATALOG=f"postgres:{pg.conninfo(db + '_lake')}")  # fmt: skip
    if name.endswith("-1p"):
        run_env["BILLING_INVOICES_RENDER_PROCESSES"] = "1"
    if name.startswith(("s3", "pg", "dask")):
        import s3fs

        prefix = f"bench/{name}-{rnd}"
        run_env.update(
            AWS_ACCESS_KEY_ID=ACCESS, AWS_SECRET_ACCESS_KEY=SECRET,
            BILLING_S3_ENDPOINT=f"http://{endpoint}", BILLING_S3_URL_STYLE="path",
            BILLING_LAKE_DATA_PATH=f"s3://{prefix}/lake/", BILLING_FILES_URL=f"s3://{prefix}/files",
        )  # fmt: skip
        fs = s3fs.S3FileSystem(key=ACCESS, secret=SECRET, client_kwargs={"endpoint_url": f"http://{endpoint}"},
                               config_kwargs={"s3": {"addressing_style": "path"}})  # fmt: skip
        fs.put([str(f) for f in sorted(logs.glob("usage-*"))], f"{prefix}/files/landing/")
    else:
        (home / "landing").mkdir()
        for f in sorted(logs.glob("usage-*")):
            os.link(f, home / "landing" / f.name)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(BB), "run", "--date", "2024-02-01"], env=run_env, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    with subprocess.Popen(
        [sys.executable, "-c", _READ_SUMMARY], env=run_env, stdout=subprocess.PIPE, text=True
    ) as reader:
        out = reader.communicate()[0]
    if not out.strip():
        raise SystemExit(f"{name}: no run summary (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    summary: dict[str, Any] = json.loads(out)
    summary["wall"] = wall
    for failure in summary["failures"][:3]:
        print(f"  {name}: failure: {json.dumps(failure, default=str)[:500]}")
    shutil.rmtree(home, ignore_errors=True)
    return summary


#: Reads the newest run summary of $BILLING_HOME wherever the files live.
_READ_SUMMARY = """\
import json
from billing_batch.config.settings import load_settings
from billing_batch.storage.files import area
runs = area(load_settings(), "runs")
if runs.remote:
    name = [e.name for e in runs.list((".json",))][-1]
else:
    from pathlib import Path
    name = sorted(p.name for p in Path(runs.root).glob("*.json"))[-1]
print(runs.read_bytes(name).decode())
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workspaces", type=int, default=10_000)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "billing-bench")
    ap.add_argument("--summaries", type=Path, help="write every run summary here (JSON)")
    args = ap.parse_args()
    configs = [c for c in args.configs.split(",") if c]
    logs = sample(args.data_dir, args.events, args.workspaces)
    work = Path(tempfile.mkdtemp(prefix="bench-scale-", dir=args.data_dir))
    env = {k: v for k, v in os.environ.items() if k != "STRIPE_API_KEY"}
    env.update(PREFECT_HOME=str(args.data_dir / "prefect-home"), PREFECT_LOGGING_LEVEL="WARNING")
    procs: list[Any] = []
    pg_root: Path | None = None
    results: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
    try:
        (work / "weed").mkdir()
        weed, endpoint = start_seaweedfs(work / "weed")
        procs.append(weed)
        pg = None
        if any(c.startswith(("pg", "dask")) for c in configs):
            pg_root = Path(tempfile.mkdtemp(prefix="bb-bench-pg-"))
            pg_proc, pg = start_postgres(pg_root)
            procs.append(pg_proc)
        clusters: dict[str, str] = {}
        for c in configs:
            if c.startswith("dask-"):
                wenv = {**env, **WORKER_ENV, "AWS_ACCESS_KEY_ID": ACCESS,
                        "AWS_SECRET_ACCESS_KEY": SECRET}  # fmt: skip
                ps, address = start_dask(work / c, int(c.split("-")[1]), wenv)
                procs += ps
                clusters[c] = address
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        for rnd in range(args.rounds):
            for c in configs:
                cenv = dict(env)
                if c in clusters:
                    cenv["BILLING_SCALE_DASK_ADDRESS"] = clusters[c]
                s = close_once(c, logs, work, endpoint, cenv, rnd, pg)
                results[c].append(s)
                print(f"  round {rnd + 1} {c:<12} {s['wall']:7.1f} s end to end, status "
                      f"{s['status']}, load {os.getloadavg()[0]:.1f}")  # fmt: skip
    finally:
        stop(procs)
        shutil.rmtree(work, ignore_errors=True)
        if pg_root is not None:
            shutil.rmtree(pg_root, ignore_errors=True)
    report(results, args.workspaces, args.events)
    if args.summaries:
        args.summaries.write_text(json.dumps(results, indent=1, default=str))
        print(f"run summaries: {args.summaries}")
    return 0


def report(results: dict[str, list[dict[str, Any]]], workspaces: int, events: int) -> None:
    configs = list(results)
    steps = list(results[configs[0]][0]["steps"])

    def med(c: str, step: str | None) -> float:
        if step is None:
            return statistics.median(
                sum(s["seconds"] for s in r["steps"].values()) for r in results[c]
            )
        return statistics.median(r["steps"][step]["seconds"] for r in results[c])  # fmt: skip

    print(f"\n{events:,} events, {workspaces:,} workspaces; seconds (median of "
          f"{len(results[configs[0]])}); load average now {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'step':<12}" + "".join(f"{c:>13}" for c in configs))
    for st in steps:
        print(f"{st:<12}" + "".join(f"{med(c, st):>13.1f}" for c in configs))
    print(f"{'(steps)':<12}" + "".join(f"{med(c, None):>13.1f}" for c in configs))
    walls = {c: statistics.median(r["wall"] for r in results[c]) for c in configs}
    print(f"{'end to end':<12}" + "".join(f"{walls[c]:>13.1f}" for c in configs))
    phases = results[configs[0]][0]["steps"]["ingest"]["counts"].get("seconds", {})

    def phase(c: str, ph: str) -> float:
        return statistics.median(
            r["steps"]["ingest"]["counts"]["seconds"].get(ph, 0.0) for r in results[c]
        )

    for ph in phases:  # the ingest's phases (find: listing, and from S3 downloading)
        print(f"{'  ingest ' + ph:<12}" + "".join(f"{phase(c, ph):>13.1f}" for c in configs))
    base = med("embedded", None) if "embedded" in results else None
    if base:
        print(f"{'÷ embedded':<12}" + "".join(f"{med(c, None) / base:>13.2f}" for c in configs))
    invoices = results[configs[0]][0]["steps"]["invoices"]["counts"]["invoices_finalized"]
    if "dask-1" in results and "embedded-1p" in results:
        over = med("dask-1", None) / med("embedded-1p", None) - 1
        print(f"distributed overhead at 1 worker (dask-1 vs embedded-1p, all steps): "
              f"{over:+.1%} (target <= +15%)")  # fmt: skip
        if "pg-1p" in results:
            storage = med("pg-1p", None) / med("embedded-1p", None) - 1
            own = med("dask-1", None) / med("pg-1p", None) - 1
            print(f"  of which Postgres + SeaweedFS (pg-1p vs embedded-1p): {storage:+.1%}; "
                  f"Dask itself (dask-1 vs pg-1p): {own:+.1%}")  # fmt: skip
        if "pg" in results and "embedded" in results:
            print(f"  Postgres + SeaweedFS with the local pool (pg vs embedded): "
                  f"{med('pg', None) / med('embedded', None) - 1:+.1%}")  # fmt: skip
        d1 = med("dask-1", "documents") / invoices
        coord = med("dask-1", None) - med("dask-1", "documents")
        per_ws = coord / workspaces
        print(f"per invoice: rendering {d1 * 1000:.0f} ms on one worker; the coordinator's "
              f"other steps {per_ws * 1000:.1f} ms per workspace")  # fmt: skip
        budget = 3600 - per_ws * 1_000_000
        if budget <= 0:
            print(f"1,000,000 workspaces: the coordinator alone needs {per_ws * 1e6:,.0f} s "
                  "(> 1 h): rating/finalizing must be fanned out first")  # fmt: skip
        else:
            need = d1 * 1_000_000 / budget
            print(f"1,000,000 workspaces in 1 h: coordinator ~{per_ws * 1e6:,.0f} s, leaving "
                  f"{budget:,.0f} s for {d1 * 1e6:,.0f} worker-seconds of PDFs -> "
                  f">= {need:.0f} single-core workers")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
