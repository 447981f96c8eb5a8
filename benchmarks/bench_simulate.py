"""Price simulation vs the nightly's own read of the same history.

    .venv/bin/python benchmarks/bench_simulate.py [--events 200000] [--workspaces 200]
                                                  [--repeat 3] [--home DIR]

Builds (or, with ``--home``, reuses) a lake with a sample month (January 2024) invoiced
by the nightly's invoicing for 2024-02-01, then runs, interleaved: the nightly's
read-only plan (``plan_closed_periods``: positions from the lake and the ledger, no
rating) and ``simulate`` of January with a candidate book (the same positions, every
period rated in full with discounts, beside the invoiced lines, an Arrow table written as
Parquet). Prints each run and the medians: the price of the rating and the report over
the read both share.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--workspaces", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--home", help="an existing BILLING_HOME built by this script")
    args = parser.parse_args()
    from billing_batch.config.price_book import default_price_book_text
    from billing_batch.config.settings import load_settings
    from billing_batch.invoicing.service import invoice_closed_periods, plan_closed_periods
    from billing_batch.invoicing.simulate import simulate
    from billing_batch.usage.ingest import ingest
    from billing_batch.usage.sample import generate

    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="bench-sim-"))
    settings = load_settings(env={**os.environ, "BILLING_HOME": str(home)})
    if not args.home:
        t0 = time.perf_counter()
        generate(home / "logs", workspaces=args.workspaces, events=args.events, seed=1, bad_lines=0)
        ingest(settings, [home / "logs"])
        invoice_closed_periods(settings, date(2024, 2, 1))
        print(f"lake of {args.events:,} events invoiced in {time.perf_counter() - t0:.1f} s")
    book = home / "candidate.toml"
    book.write_text(
        default_price_book_text().replace('unit_price = "0.01"', 'unit_price = "0.012"', 1)
    )
    out = home / "simulation.parquet"
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    times: dict[str, list[float]] = {"plan (read only)": [], "simulate": []}
    rows = 0
    for i in range(args.repeat):
        for name in times:
            t0 = time.perf_counter()
            if name == "simulate":
                rows = simulate(
                    settings, book, date(2024, 1, 1), date(2024, 1, 31), out=out
                ).rows.num_rows
            else:
                plan_closed_periods(settings, date(2024, 2, 1))
            secs = time.perf_counter() - t0
            times[name].append(secs)
            print(f"run {i + 1}: {name:17s} {secs:8.2f} s")
    medians = {k: statistics.median(v) for k, v in times.items()}
    print(
        "median: "
        + ", ".join(f"{k} {v:.2f} s" for k, v in medians.items())
        + f"; {rows} periods simulated"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
