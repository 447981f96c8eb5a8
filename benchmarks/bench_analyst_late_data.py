"""docs/analysts.md query 9 ("late data"): interval subtraction vs epoch subtraction.

    .venv/bin/python benchmarks/bench_analyst_late_data.py [--events 1000000] [--repeat 3]
                                                          [--home DIR]

Builds (or, with ``--home``, reuses) a lake with a sample month, then runs the query as
the guide had it (``epoch(ingested_at - ts)``: an INTERVAL per event) and as it has it
now (``epoch(ingested_at) - epoch(ts)``), interleaved, in the analysts' sandboxed
session; prints each run and the medians. Both must return the same rows (medians
equal up to floating-point rounding).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

OLD = "quantile_cont(epoch(ingested_at - ts) / 3600, 0.5)"
NEW = "quantile_cont((epoch(ingested_at) - epoch(ts)) / 3600, 0.5)"
QUERY = """
SELECT
    day,
    count(*) AS events,
    {median} AS median_delay_hours,
    count(*) FILTER (WHERE CAST(timezone('UTC', ingested_at) AS DATE) > day + 1)
        AS arrived_after_next_day
FROM events
WHERE day BETWEEN DATE '2024-01-01' AND DATE '2024-01-31'
GROUP BY day
ORDER BY day
"""


def _same(a: object, b: object) -> bool:
    """The same rows, the medians equal up to floating-point rounding (1e-9 relative)."""
    if not isinstance(a, list) or not isinstance(b, list) or len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if (x[0], x[1], x[3]) != (y[0], y[1], y[3]):
            return False
        if abs(x[2] - y[2]) > 1e-9 * max(1.0, abs(x[2])):
            return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--home", help="an existing BILLING_HOME with a month of events")
    args = parser.parse_args()
    import billing_batch
    from billing_batch.config.settings import load_settings
    from billing_batch.usage.ingest import ingest
    from billing_batch.usage.sample import generate

    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="bench-late-"))
    settings = load_settings(env={**os.environ, "BILLING_HOME": str(home)})
    if not args.home:
        t0 = time.perf_counter()
        generate(home / "logs", workspaces=50, events=args.events, seed=1, bad_lines=0)
        ingest(settings, [home / "logs"])
        print(f"lake of {args.events:,} events built in {time.perf_counter() - t0:.1f} s")
    times: dict[str, list[float]] = {"interval": [], "epoch": []}
    results: dict[str, object] = {}
    with billing_batch.analyst_connection(home=home) as con:
        n = con.sql("SELECT count(*) FROM events").fetchall()[0][0]
        print(f"{n:,} events; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        for i in range(args.repeat):
            for name, median in (("interval", OLD), ("epoch", NEW)):
                t0 = time.perf_counter()
                rows = con.sql(QUERY.format(median=median)).fetchall()
                secs = time.perf_counter() - t0
                times[name].append(secs)
                results[name] = rows
                print(f"run {i + 1}: {name:8s} {secs:8.2f} s")
    same = _same(results["interval"], results["epoch"])
    a, b = statistics.median(times["interval"]), statistics.median(times["epoch"])
    print(f"median: interval {a:.2f} s, epoch {b:.2f} s -> {a / b:.0f}x; same rows: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
