"""Closing a month at scale through the nightly flow: wall time and peak RSS per step.

    .venv/bin/python benchmarks/bench_nightly.py [--events 10000000] [--workspaces 10000]
                                                 [--data-dir /tmp/billing-bench] [--keep]
    .venv/bin/python benchmarks/bench_nightly.py --scale ...   # = benchmarks/bench_scale.py

Generates a sample month (``billing_batch.usage.sample.generate``: January 2024, Zipf-skewed
workspaces, all four metrics, retries, bad lines; cached in ``--data-dir``), hard-links
it into the landing folder of a fresh ``$BILLING_HOME``, then runs
``billing-batch run --date 2024-02-01`` in a child process (Prefect's ephemeral API, no
Stripe key: payments are skipped) and prints each step's wall time and the peak RSS
reached by its end (the flow process, and its largest PDF worker), from the run
summary. Target on a 2-core machine: <= 5 minutes end to end, every invoice finalized
with its JSON and PDF.
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

ROOT = Path(__file__).resolve().parents[1]
BB = Path(sys.executable).with_name("billing-batch")


def sample(data_dir: Path, events: int, workspaces: int) -> Path:
    out = data_dir / f"nightly-{events}-{workspaces}"
    if (out / ".complete").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    code = (
        "import sys; from billing_batch.usage.sample import generate; "
        "generate(sys.argv[1], month='2024-01', events=int(sys.argv[2]), "
        "workspaces=int(sys.argv[3]), seed=11, bad_lines=25)"
    )
    subprocess.run([sys.executable, "-c", code, str(out), str(events), str(workspaces)], check=True)
    (out / ".complete").write_text("ok")
    print(
        f"generated {events:,} events over {workspaces:,} workspaces in "
        f"{time.perf_counter() - t0:.1f} s -> {out}"
    )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--workspaces", type=int, default=10_000)
    ap.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "billing-bench")
    ap.add_argument("--keep", action="store_true", help="keep the BILLING_HOME afterwards")
    args = ap.parse_args()
    logs = sample(args.data_dir, args.events, args.workspaces)
    home = Path(tempfile.mkdtemp(prefix="bench-nightly-", dir=args.data_dir))
    landing = home / "landing"
    landing.mkdir(parents=True)
    for f in sorted(logs.glob("usage-*")):
        os.link(f, landing / f.name)
    env = {k: v for k, v in os.environ.items() if k != "STRIPE_API_KEY"}
    # Prefect's own database lives on between nightly runs: warm it up once (an empty
    # run in a scratch home) so the timed run pays what a nightly run pays, not the
    # one-off creation of Prefect's database.
    prefect_home = args.data_dir / "prefect-home"
    env.update(PREFECT_HOME=str(prefect_home), PREFECT_LOGGING_LEVEL="WARNING")
    scratch = Path(tempfile.mkdtemp(prefix="bench-warmup-", dir=args.data_dir))
    subprocess.run(
        [str(BB), "--home", str(scratch), "run", "--date", "2024-02-01"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    shutil.rmtree(scratch, ignore_errors=True)
    env.update(BILLING_HOME=str(home))
    print(f"load average before: {os.getloadavg()[0]:.2f}; home {home}")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [str(BB), "run", "--date", "2024-02-01"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, _, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read() if proc.stderr else ""
    runs = sorted((home / "runs").glob("*.json"))
    if not runs:
        print(err[-3000:])
        return 1
    summary = json.loads(runs[-1].read_text())
    print(
        f"\n{args.events:,} events, {args.workspaces:,} workspaces, 2 cores; "
        f"status {summary['status']}, {len(summary['failures'])} failure(s)"
    )
    print(f"{'step':<12}{'wall s':>9}{'peak RSS MiB':>15}  counts")
    for name, step in summary["steps"].items():
        counts = {k: v for k, v in step["counts"].items() if not isinstance(v, (dict, list))}
        print(f"{name:<12}{step['seconds']:>9.1f}{step['peakRssMiB'] or 0:>15,.0f}  {counts}")
    steps_total = sum(s["seconds"] for s in summary["steps"].values())
    print(f"{'(steps)':<12}{steps_total:>9.1f}")
    print(
        f"{'end to end':<12}{wall:>9.1f}{usage.ru_maxrss / 1024:>15,.0f}  "
        f"(CLI process incl. Prefect's ephemeral API start; RSS = largest process)"
    )
    pdfs = len(list((home / "invoices").glob("*.pdf")))
    jsons = len(list((home / "invoices").glob("*.json")))
    finalized = summary["steps"]["invoices"]["counts"]["invoices_finalized"]
    print(f"invoices finalized {finalized:,}; JSON files {jsons:,}; PDF files {pdfs:,}")
    print(f"target <= 300 s end to end: {'met' if wall <= 300 else 'NOT met'} ({wall:.0f} s)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if not args.keep:
        shutil.rmtree(home, ignore_errors=True)
    return 0 if summary["status"] == "succeeded" and pdfs == finalized else 1


if __name__ == "__main__":
    if "--scale" in sys.argv:  # the same close past one machine: bench_scale.py
        sys.argv.remove("--scale")
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_scale import main as scale_main

        sys.exit(scale_main())
    sys.exit(main())
