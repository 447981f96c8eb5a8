"""Ingest throughput and memory, side by side with the naive version and a bare COPY.

    .venv/bin/python benchmarks/bench_ingest.py              # 5M and 10M events, 3 runs each
    .venv/bin/python benchmarks/bench_ingest.py --50m        # ... and 50M (memory) + a re-ingest
    .venv/bin/python benchmarks/bench_ingest.py --sizes 5m --repeat 5

For each size it generates one JSON-lines file of sample events once
(``billing_batch.usage.sample.generate``, one month, with its retries, id-less lines and bad
lines; cached in ``--data-dir``), then runs, interleaved (ours, naive, bare, ours, ...),
each contender in a fresh process, so that wall time includes the process start and
peak RSS (``wait4``'s ``ru_maxrss`` of that child) belongs to one contender:

* ``ours``: ``billing-batch ingest FILE`` into a fresh ``$BILLING_HOME`` (every line
  validated with a reason per rejected line, exact dedupe by (workspace, id) against the
  history, id-less identity, one DuckLake transaction, rejects table and file, manifest,
  the ``billing.usage.recorded`` events), with the project's settings (``BILLING_*``
  variables apply);
* ``naive``: what a first version writes: DuckDB ``read_json`` → ``DISTINCT ON
  (workspaceId, id)`` → ``COPY ... (FORMAT parquet, PARTITION_BY (date))``;
* ``bare``: DuckDB ``read_json`` → ``COPY ... PARTITION_BY (date)``, nothing else.

It prints each run, then the medians, the ratios ours/naive and ours/bare, and the load
average (1 min) before and after each run: on a shared machine, compare within a run.

``--50m``: 50M events in five files of 10M (five months): ours and naive once each, for
the peak RSS; then a re-ingest against that 50M history of two days of the first month
under new names plus a file of fresh events: every re-ingested line must come out as a
duplicate (history-wide dedupe, exact), the fresh ones accepted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"1m": 1_000_000, "5m": 5_000_000, "10m": 10_000_000}
BIN = Path(sys.executable).parent


# --- data ----------------------------------------------------------------------------
def _generate_one(target: Path, events: int, month: str, seed: int) -> dict[str, Any]:
    """One JSON-lines file of a sample month (its days concatenated), in a child so the
    generator's memory is returned to the OS."""
    code = (
        "import json, shutil, sys; from billing_batch.usage.sample import generate; "
        f"r = generate({str(target) + '.parts'!r}, month={month!r}, workspaces=500, "
        f"events={events}, seed={seed}, gzip_every=0); "
        f"out = open({str(target) + '.tmp'!r}, 'wb'); "
        "[shutil.copyfileobj(open(f, 'rb'), out, 1 << 24) for f in sorted(r.files)]; "
        "out.close(); print(json.dumps(r.__dict__))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"sample generation failed:\n{res.stderr}")
    shutil.rmtree(str(target) + ".parts", ignore_errors=True)
    os.replace(str(target) + ".tmp", target)
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def _dataset(
    data_dir: Path, name: str, files: int, per_file: int
) -> tuple[list[str], dict[str, Any]]:
    folder = data_dir / f"data-{name}"
    stamp = folder / "sample.json"
    if not stamp.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        t0 = time.perf_counter()
        parts = [
            _generate_one(folder / f"usage-{k:02d}.jsonl", per_file, f"2024-{k + 1:02d}", 7 + k)
            for k in range(files)
        ]
        info = {
            "events": sum(p["events"] for p in parts),
            "lines": sum(p["lines"] for p in parts),
            "duplicate_lines": sum(p["duplicate_lines"] for p in parts),
            "bad_lines": sum(p["bad_lines"] for p in parts),
            "files": files,
            "bytes": sum(f.stat().st_size for f in folder.glob("*.jsonl")),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        stamp.write_text(json.dumps(info))
    return sorted(str(p) for p in folder.glob("*.jsonl")), json.loads(stamp.read_text())


# --- contenders ----------------------------------------------------------------------
_NAIVE = """
import sys, duckdb
files, out = sys.argv[1].split(","), sys.argv[2]
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
con.execute("SET enable_progress_bar = false")
con.execute(
    "COPY (SELECT DISTINCT ON (workspaceId, id) *, CAST(\\"timestamp\\" AS DATE) AS date "
    "FROM read_json($files, ignore_errors = true)) "
    f"TO '{out}' (FORMAT parquet, PARTITION_BY (date))",
    {"files": files},
)
"""
_BARE = _NAIVE.replace("DISTINCT ON (workspaceId, id) ", "")


def _run(kind: str, paths: list[str], work: Path, *, fresh: bool = True) -> dict[str, Any]:
    """Run one contender in a fresh process: wall, CPU, peak RSS, load, its output.
    ``fresh``: start from an empty ``work`` (a new lake); else ingest into it."""
    if fresh:
        shutil.rmtree(work, ignore_errors=True)
    env = dict(os.environ)
    if kind == "ours":
        env["BILLING_HOME"] = str(work)
        cmd = [str(BIN / "billing-batch"), "ingest", *paths]
    else:
        cmd = [
            sys.executable,
            "-c",
            _NAIVE if kind == "naive" else _BARE,
            ",".join(paths),
            str(work),
        ]
    load0 = os.getloadavg()[0]
    # output to files, not pipes: a child blocked on a full pipe would never exit
    with tempfile.TemporaryFile("w+") as fout, tempfile.TemporaryFile("w+") as ferr:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fout, stderr=ferr, text=True, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        fout.seek(0)
        ferr.seek(0)
        out, err = fout.read(), ferr.read()
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{kind} failed:\n{err}")
    result: dict[str, Any] = {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024,
        "load": (load0, os.getloadavg()[0]),
    }
    if kind == "ours":
        result["report"] = json.loads(out)
    return result


def _line(size: str, kind: str, r: dict[str, Any], lines: int) -> str:
    return (
        f"| {size:>4} | {kind:<6} | {r['wall']:>7.2f} | {lines / r['wall'] / 1e6:>6.2f} "
        f"| {r['cpu']:>6.2f} | {r['rss_mb']:>8,.0f} | {r['load'][0]:>5.1f}/{r['load'][1]:<5.1f} |"
    )


HEADER = (
    "| size | who    |  wall s | M ev/s |  cpu s | peak RSS MB | load before/after |\n"
    "|-----:|--------|--------:|-------:|-------:|---------:|------------------:|"
)


def bench_size(
    size: str, paths: list[str], info: dict[str, Any], data_dir: Path, repeat: int
) -> list[str]:
    lines = int(info["lines"])
    print(
        f"\n{size}: {info['events']:,} events, {lines:,} lines in {len(paths)} file(s) "
        f"({info['bytes'] / 1e9:.2f} GB), {info['duplicate_lines']:,} retries, "
        f"{info['bad_lines']} bad lines\n{HEADER}",
        flush=True,
    )
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "naive": [], "bare": []}
    for _ in range(repeat):
        for kind in runs:
            r = _run(kind, paths, data_dir / f"work-{size}-{kind}")
            if kind == "ours":
                rep = r["report"]
                if (rep["accepted"], rep["rejected"]) != (info["events"], info["bad_lines"]):
                    raise SystemExit(f"{size}: unexpected counts {rep} for {info}")
            runs[kind].append(r)
            print(_line(size, kind, r, lines), flush=True)
            shutil.rmtree(data_dir / f"work-{size}-{kind}", ignore_errors=True)
    med = {
        k: {m: statistics.median(x[m] for x in v) for m in ("wall", "cpu", "rss_mb")}
        for k, v in runs.items()
    }
    loads = [x["load"][0] for v in runs.values() for x in v]
    o, n, b = med["ours"], med["naive"], med["bare"]
    summary = (
        f"| {size} | {o['wall']:.2f} s ({lines / o['wall'] / 1e6:.2f} M ev/s), "
        f"{o['rss_mb']:,.0f} MB | {n['wall']:.2f} s, {n['rss_mb']:,.0f} MB "
        f"| {b['wall']:.2f} s | {o['wall'] / n['wall']:.2f} | {o['wall'] / b['wall']:.2f} "
        f"| cpu {o['cpu']:.1f} / {n['cpu']:.1f} / {b['cpu']:.1f} s "
        f"| {min(loads):.1f}-{max(loads):.1f} |"
    )
    return [summary]


def bench_50m(data_dir: Path) -> list[str]:
    paths, info = _dataset(data_dir, "50m", 5, 10_000_000)
    lines = int(info["lines"])
    print(f"\n50m: {info['events']:,} events, {lines:,} lines in 5 files\n{HEADER}", flush=True)
    home = data_dir / "work-50m-ours"
    ours = _run("ours", paths, home)
    print(_line("50m", "ours", ours, lines), flush=True)
    naive = _run("naive", paths, data_dir / "work-50m-naive")
    print(_line("50m", "naive", naive, lines), flush=True)
    shutil.rmtree(data_dir / "work-50m-naive", ignore_errors=True)
    out = [
        f"| 50m | {ours['wall']:.1f} s, peak RSS {ours['rss_mb']:,.0f} MB "
        f"| naive {naive['wall']:.1f} s, peak RSS {naive['rss_mb']:,.0f} MB "
        f"| load {ours['load'][0]:.1f} |"
    ]
    out += _reingest(data_dir, paths, home)
    shutil.rmtree(home, ignore_errors=True)
    return out


def _reingest(data_dir: Path, paths: list[str], home: Path) -> list[str]:
    """Second ingest against the 50M history: two days of the first file under a new name
    (every line a duplicate: ids via history, id-less lines via content hash... of the
    new file, so id-less lines count as new) and a file of new events (accepted)."""
    again = data_dir / "reingest-50m"
    shutil.rmtree(again, ignore_errors=True)
    again.mkdir()
    with open(paths[0], "rb") as src, open(again / "again.jsonl", "wb") as dst:
        for line in src:
            if b'"2024-01-14T' in line or b'"2024-01-15T' in line:
                if b'"id"' in line and b"bad_" not in line:
                    dst.write(line)
    code = (
        "from billing_batch.usage.sample import generate; "
        f"r = generate({str(again / 'fresh')!r}, month='2030-01', workspaces=50, "
        "events=100000, seed=99, retry_rate=0, bad_lines=0, gzip_every=0); print(r.events)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    fresh = int(res.stdout.split()[-1])
    files = sorted(str(p) for p in again.rglob("*.jsonl"))
    r = _run("ours", files, home, fresh=False)
    rep = r["report"]
    ok = rep["accepted"] == fresh and rep["duplicates"] == rep["lines"] - fresh
    print(
        f"re-ingest: {rep['lines']:,} lines → accepted {rep['accepted']:,} (expected {fresh:,}), "
        f"duplicates {rep['duplicates']:,}: {'exact' if ok else 'WRONG'}; {r['wall']:.1f} s, "
        f"peak RSS {r['rss_mb']:,.0f} MB",
        flush=True,
    )
    shutil.rmtree(again, ignore_errors=True)
    if not ok:
        raise SystemExit("history-wide dedupe is not exact")
    return [
        f"| re-ingest against 50M | {rep['lines']:,} lines, {r['wall']:.1f} s, "
        f"{r['rss_mb']:,.0f} MB | exact |"
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="5m,10m", help="comma-separated: 1m, 5m, 10m")
    p.add_argument("--50m", dest="with_50m", action="store_true", help="add the 50M memory run")
    p.add_argument("--repeat", type=int, default=3, help="interleaved runs per size (median)")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "billing-bench-ingest",
        help="sample files (kept between runs) and outputs",
    )
    a = p.parse_args(argv)
    a.data_dir.mkdir(parents=True, exist_ok=True)
    print(f"billing-batch ingest benchmark: {os.cpu_count()} cores, data in {a.data_dir}")
    rows = []
    for size in [s.strip() for s in a.sizes.split(",") if s.strip()]:
        paths, info = _dataset(a.data_dir, size, 1, SIZES[size])
        rows += bench_size(size, paths, info, a.data_dir, a.repeat)
    if a.with_50m:
        rows += bench_50m(a.data_dir)
    print(
        "\nmedians | ours | naive | bare | ours/naive | ours/bare | cpu ours/naive/bare | load\n"
        "|---|---|---|---|---|---|---|---|"
    )
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
