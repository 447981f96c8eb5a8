"""Ingest throughput and memory, side by side with a bare DuckDB COPY of the same files.

    .venv/bin/python benchmarks/bench_ingest.py            # 1M and 10M sample events
    .venv/bin/python benchmarks/bench_ingest.py --50m      # ... and 50M (+ a re-ingest)
    .venv/bin/python benchmarks/bench_ingest.py --sizes 1m --repeat 3

For each size it generates sample logs once (``billing_batch.sample.generate``; cached in
``--data-dir``), then measures, each in a fresh subprocess so that peak RSS
(``wait4``'s ``ru_maxrss`` of that child) belongs to one contender:

* ``ingest``: ``billing_batch.ingest.ingest`` of the folder into a fresh
  ``$BILLING_HOME`` (validation, history-wide dedupe, sorted DuckLake commit, rejects),
  with the project's settings (``BILLING_*`` variables apply);
* ``bare``: DuckDB ``COPY (SELECT *, day FROM read_json(files, ignore_errors=true)) TO
  dir (FORMAT parquet, PARTITION_BY (day))`` of the same files: no validation, no
  dedupe, DuckDB's defaults (snappy), the day computed the cheap way ours is.

The 50M run ingests 5 sample months of 10M events (with their retries and bad lines),
then re-ingests two days of one month under new file names plus a file of fresh events:
every re-ingested line must come out as a duplicate (history-wide dedupe, exact), the
fresh ones accepted, with memory still bounded. ``events/s`` counts input lines.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"1m": 1_000_000, "10m": 10_000_000, "50m": 50_000_000}
#: Events per sample.generate call: its memory grows with the size (~4.7 GB at 10M).
_GEN_BATCH = 10_000_000
#: The same day expression as sql/ingest_validate.sql (a DATE cast goes through ICU).
_DAY = (
    "DATE '1970-01-01' + CAST((epoch_us({ts}) - CASE WHEN epoch_us({ts}) < 0 "
    "THEN 86399999999 ELSE 0 END) // 86400000000 AS INTEGER)"
)


# --- data ----------------------------------------------------------------------------
def _generate(folder: Path, events: int, seed: int) -> dict[str, Any]:
    """Sample logs in ``folder`` (one sample month per 10M events); cached by a stamp."""
    stamp = folder / "sample.json"
    if stamp.exists():
        return dict(json.loads(stamp.read_text()))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    parts = []
    remaining, k = events, 0
    while remaining > 0:
        n = min(_GEN_BATCH, remaining)
        month = f"{2024 + (k // 12)}-{k % 12 + 1:02d}"
        out = folder / f"m{k:02d}"
        # a child per month: the generator's peak memory is returned to the OS each time
        code = (
            "import json, sys; from billing_batch.usage.sample import generate; "
            f"r = generate({str(out)!r}, month={month!r}, workspaces=500, events={n}, "
            f"seed={seed + k}); print(json.dumps(r.__dict__))"
        )
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if res.returncode:
            raise SystemExit(f"sample generation failed:\n{res.stderr}")
        parts.append(json.loads(res.stdout.strip().splitlines()[-1]))
        remaining -= n
        k += 1
    info = {
        "events": sum(p["events"] for p in parts),
        "lines": sum(p["lines"] for p in parts),
        "duplicate_lines": sum(p["duplicate_lines"] for p in parts),
        "bad_lines": sum(p["bad_lines"] for p in parts),
        "files": sum(len(p["files"]) for p in parts),
        "bytes": sum(f.stat().st_size for f in folder.rglob("*.jsonl*")),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    stamp.write_text(json.dumps(info))
    return info


def _files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*.jsonl*"))


# --- contenders (run as children) ----------------------------------------------------
def child_ingest(home: str, paths: list[str]) -> dict[str, Any]:
    from billing_batch.config.settings import load_settings
    from billing_batch.ingest import ingest

    env = {**os.environ, "BILLING_HOME": home}
    settings = load_settings(env=env)
    t0 = time.perf_counter()
    report = ingest(settings, paths)
    wall = time.perf_counter() - t0
    d = report.to_dict()
    keys = ("files", "lines", "accepted", "duplicates", "conflicts", "rejected")
    return {"wall": wall, **{k: d[k] for k in keys}, "timings": report.timings}


def child_bare(out: str, paths: list[str]) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    t0 = time.perf_counter()
    # the columns are given (no sampling: a sample day's bad line can make it guess a
    # single JSON column), as read_json detects them on a clean file
    columns = {
        "id": "VARCHAR",
        "workspaceId": "VARCHAR",
        "metric": "VARCHAR",
        "quantity": "DOUBLE",
        "timestamp": "VARCHAR",
    }
    day = _DAY.format(ts="CAST(timestamp AS TIMESTAMPTZ)")
    con.execute(
        f"COPY (SELECT *, {day} AS day FROM read_json($files, columns = $columns, "
        "format = 'newline_delimited', ignore_errors = true)) "
        f"TO '{out}' (FORMAT parquet, PARTITION_BY (day))",
        {"files": paths, "columns": columns},
    )
    wall = time.perf_counter() - t0
    row = con.execute(f"SELECT count(*) FROM read_parquet('{out}/**/*.parquet')").fetchone()
    return {"wall": wall, "rows": int(row[0]) if row else 0}


def _run_child(kind: str, target: str, paths: list[str]) -> dict[str, Any]:
    """Run one contender in a fresh interpreter; add its peak RSS and CPU seconds."""
    args_file = Path(target).with_suffix(".args.json")
    args_file.write_text(json.dumps(paths))
    cmd = [sys.executable, __file__, "--child", kind, target, str(args_file)]
    load0 = os.getloadavg()[0]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    out = proc.stdout.read() if proc.stdout else ""
    err = proc.stderr.read() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{kind} failed:\n{err}")
    result = dict(json.loads(out.strip().splitlines()[-1]))
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    result["cpu"] = usage.ru_utime + usage.ru_stime
    result["load"] = (load0, os.getloadavg()[0])
    args_file.unlink()
    return result


# --- the table -------------------------------------------------------------------------
def _row(size: str, name: str, lines: int, r: dict[str, Any], ratio: str = "") -> str:
    rate = lines / r["wall"] if r["wall"] else 0.0
    load = f"{r['load'][0]:.1f}/{r['load'][1]:.1f}"
    return (
        f"| {size:>5} | {name:<16} | {rate:>12,.0f} | {r['wall']:>7.2f} | {r['cpu']:>7.2f} "
        f"| {r['peak_rss_mb']:>8,.0f} | {ratio:>5} | {load:>9} |"
    )


HEADER = (
    "| size  | contender        |     events/s |  wall s |   cpu s | peak RSS MB | ratio |"
    "  load 1m |\n"
    "|------:|------------------|-------------:|--------:|--------:|---------:|------:|"
    "---------:|"
)


def bench_size(size: str, data_dir: Path, repeat: int) -> list[str]:
    n = SIZES[size]
    folder = data_dir / f"sample-{size}"
    info = _generate(folder, n, seed=7)
    paths = _files(folder)
    lines = int(info["lines"])
    print(
        f"\n{size}: {info['events']:,} events, {lines:,} lines in {info['files']} files "
        f"({info['bytes'] / 1e9:.2f} GB on disk, every third file gzipped)",
        flush=True,
    )
    rows = []
    for _ in range(repeat):
        bare_out = data_dir / f"bare-{size}"
        shutil.rmtree(bare_out, ignore_errors=True)
        bare = _run_child("bare", str(bare_out), paths)
        shutil.rmtree(bare_out, ignore_errors=True)
        home = data_dir / f"home-{size}"
        shutil.rmtree(home, ignore_errors=True)
        ing = _run_child("ingest", str(home), paths)
        expect = (info["events"], info["bad_lines"])
        if (ing["accepted"], ing["rejected"]) != expect:
            raise SystemExit(f"{size}: unexpected counts {ing} (expected {expect})")
        ratio = f"{ing['wall'] / bare['wall']:.2f}"
        rows += [
            _row(size, "bare read_json→COPY", lines, bare),
            _row(size, "ingest", lines, ing, ratio),
        ]
        print(rows[-2], "\n" + rows[-1], flush=True)
        print(f"       ingest phases (s): {ing['timings']}", flush=True)
        if size == "50m":
            rows += _reingest(data_dir, folder, home, info)
        shutil.rmtree(home, ignore_errors=True)
    return rows


def _reingest(data_dir: Path, folder: Path, home: Path, info: dict[str, Any]) -> list[str]:
    """Second ingest against the 50M history: two days of the first month under new
    names (every line a duplicate: ids via history, id-less lines via content hash) and
    a small file of new events (accepted)."""
    again = data_dir / "reingest-50m"
    shutil.rmtree(again, ignore_errors=True)
    again.mkdir()
    for src in sorted((folder / "m00").glob("usage-2024-01-1[45].jsonl*")):
        dst = again / f"again-{src.name}"
        shutil.copyfile(src, dst)
    code = (
        "from billing_batch.usage.sample import generate; "
        f"r = generate({str(again / 'fresh')!r}, month='2030-01', workspaces=50, "
        "events=100000, seed=99, retry_rate=0, bad_lines=0); print(r.events)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    fresh = int(res.stdout.split()[-1])
    paths = _files(again)
    r = _run_child("ingest", str(home), paths)
    lines = r["lines"]
    dup_expected = lines - fresh - r["rejected"]
    ok = r["accepted"] == fresh and r["duplicates"] == dup_expected
    print(
        f"       re-ingest: {lines:,} lines → accepted {r['accepted']:,} (expected {fresh:,}), "
        f"duplicates {r['duplicates']:,} (expected {dup_expected:,}), rejected "
        f"{r['rejected']}: {'exact' if ok else 'WRONG'}",
        flush=True,
    )
    if not ok:
        raise SystemExit("history-wide dedupe is not exact")
    shutil.rmtree(again, ignore_errors=True)
    return [_row("50m", "re-ingest (hist)", lines, r)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="1m,10m", help="comma-separated: 1m, 10m, 50m")
    p.add_argument("--50m", dest="with_50m", action="store_true", help="add the 50M run")
    p.add_argument("--repeat", type=int, default=1, help="measurements per size")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "billing-bench",
        help="sample logs (kept between runs), lakes and bare output",
    )
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        kind, target, args_file = a.child
        paths = json.loads(Path(args_file).read_text())
        fn = child_ingest if kind == "ingest" else child_bare
        print(json.dumps(fn(target, paths), default=str))
        return 0
    sizes = [s.strip() for s in a.sizes.split(",") if s.strip()]
    if a.with_50m and "50m" not in sizes:
        sizes.append("50m")
    a.data_dir.mkdir(parents=True, exist_ok=True)
    print(f"billing-batch ingest benchmark: {os.cpu_count()} cores, data in {a.data_dir}")
    rows = []
    for size in sizes:
        rows += bench_size(size, a.data_dir, a.repeat)
    print("\n" + HEADER)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
