"""Invoice PDF throughput: ``documents.pool.render_many`` vs a plain WeasyPrint loop, same run.

    .venv/bin/python benchmarks/bench_render.py [--n 200] [--processes 0] [--repeat 3]

The baseline is what one would write first: for each invoice, the template's HTML (with
the stylesheet linked) → ``weasyprint.HTML(string=..., base_url=templates).write_pdf()``
→ a file; one process, warmed up with one render before timing. ``render_many`` is timed
cold, process-pool start-up included, and writes JSON + PDF per invoice (atomically).
Prints PDFs/s for each and the speed-up; the medians of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from billing_batch.config.price_book import read_price_book
from billing_batch.config.settings import TEMPLATES_DIR
from billing_batch.documents.pdf import render_html
from billing_batch.documents.pool import render_many
from billing_batch.rating.plans import line_description, totals

METRICS = {
    "api_calls": ("API Calls", "calls"),
    "contracts": ("Contracts", "contracts"),
    "kyc_checks": ("KYC Checks", "checks"),
    "storage": ("Storage", "GB-months"),
}


def typical_invoices(n: int, *, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` invoices of 4-6 lines priced with the default book (payg and growth)."""
    rng = random.Random(seed)
    book = read_price_book()
    docs: list[dict[str, Any]] = []
    for i in range(n):
        plan = book.plan(rng.choice(["payg", "payg", "growth"]))
        lines: list[dict[str, Any]] = []
        if plan.base_fee:
            lines.append(
                {
                    "description": f"{plan.display_name} plan, January 2024",
                    "amount": plan.base_fee,
                    "kind": "base_fee",
                    "metric": None,
                    "plan": plan.name,
                    "quantity": None,
                    "unit": None,
                    "unitPrice": None,
                    "periodStart": "2024-01-01",
                    "periodEnd": "2024-01-31",
                    "tiers": [],
                }
            )
        for metric, (label, unit) in METRICS.items():
            qty = Decimal(rng.randrange(1, 2_000_000 if metric == "api_calls" else 3_000))
            if metric == "storage":
                qty = Decimal(rng.randrange(1, 500_000)) / 1000
            charge = plan.rate(metric, qty)
            lines.append(
                {
                    "description": line_description(label, qty),
                    "amount": charge.amount,
                    "kind": "usage",
                    "metric": metric,
                    "plan": plan.name,
                    "quantity": qty,
                    "unit": unit,
                    "unitPrice": charge.unit_price,
                    "periodStart": "2024-01-01",
                    "periodEnd": "2024-01-31",
                    "tiers": [t.to_detail() for t in charge.tiers],
                }
            )
        if rng.random() < 0.5:
            lines = lines[: rng.randint(4, len(lines))]
        usage = sum((x["amount"] for x in lines if x["kind"] == "usage"), Decimal(0))
        top_up = plan.minimum_top_up(usage)
        if top_up:
            lines.append(
                {
                    "description": f"Minimum commitment top-up ({plan.display_name})",
                    "amount": top_up,
                    "kind": "minimum",
                    "metric": None,
                    "plan": plan.name,
                    "quantity": None,
                    "unit": None,
                    "unitPrice": None,
                    "periodStart": "2024-01-01",
                    "periodEnd": "2024-01-31",
                    "tiers": [],
                }
            )
        if len(lines) < 6 and rng.random() < 0.3:
            qty = Decimal(rng.randrange(100, 5000))
            charge = book.plan("payg").rate("api_calls", qty)
            lines.append(
                {
                    "description": f"Late usage for 2023-12: {line_description('API Calls', qty)}",
                    "amount": charge.amount,
                    "kind": "late_usage",
                    "metric": "api_calls",
                    "plan": "payg",
                    "quantity": qty,
                    "unit": "calls",
                    "unitPrice": charge.unit_price,
                    "periodStart": "2023-12-01",
                    "periodEnd": "2023-12-31",
                    "tiers": [],
                }
            )
        t = totals([x["amount"] for x in lines], Decimal("0.10"), plan.currency)
        docs.append(
            {
                "id": f"inv_bench{i:05d}",
                "workspaceId": f"ws_{i:04d}",
                "status": "open",
                "number": f"INV-2024-{i + 1:06d}",
                "currency": plan.currency,
                "period": {"start": "2024-01-01", "end": "2024-01-31"},
                "issuedAt": "2024-02-01T02:00:00Z",
                "dueDate": "2024-03-02",
                "subtotal": t.subtotal,
                "taxRate": Decimal("0.10"),
                "tax": t.tax,
                "total": t.total,
                "lineItems": lines,
                "billTo": {
                    "workspaceId": f"ws_{i:04d}",
                    "name": f"Customer {i} Ltd.",
                    "address": f"{i} Example Street\nSpringfield\nUnited States",
                    "email": f"ap{i}@example.com",
                },
                "issuer": {
                    "name": "Billing Rail, Inc.",
                    "address": "1 Market Street\nSan Francisco, CA 94105\nUnited States",
                    "email": "billing@example.com",
                },
                "priceBookVersion": book.version,
                "lakeSnapshotId": 12,
                "payment": None,
            }
        )
    return docs


def _cpu() -> float:
    """CPU seconds of this process and its reaped children (the pool's workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def plain_loop(docs: list[dict[str, Any]], out: Path) -> tuple[float, float]:
    import weasyprint

    base = str(TEMPLATES_DIR) + "/"
    html = render_html(docs[0], link_stylesheet=True)
    weasyprint.HTML(string=html, base_url=base).write_pdf()  # warm-up, not timed
    cpu, started = _cpu(), time.perf_counter()
    for doc in docs:
        html = render_html(doc, link_stylesheet=True)
        pdf = weasyprint.HTML(string=html, base_url=base).write_pdf()
        (out / f"{doc['number']}.pdf").write_bytes(pdf)
    return time.perf_counter() - started, _cpu() - cpu


def many(
    docs: list[dict[str, Any]], out: Path, processes: int, start_method: str | None = None
) -> tuple[float, float]:
    cpu, started = _cpu(), time.perf_counter()
    results = render_many(
        [(d, out, d["number"]) for d in docs], processes=processes, start_method=start_method
    )
    elapsed, used = time.perf_counter() - started, _cpu() - cpu
    failed = [r for r in results if not r.ok]
    if failed:
        sys.exit(f"{len(failed)} invoices failed, first: {failed[0].error}")
    return elapsed, used


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="invoices per run (default 200)")
    ap.add_argument("--processes", type=int, default=0, help="render_many processes (0 = cores)")
    ap.add_argument("--repeat", type=int, default=3, help="runs; medians are printed")
    ap.add_argument("--start-method", choices=["spawn", "fork", "forkserver"], default=None)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "render")
    args = ap.parse_args()

    docs = typical_invoices(args.n)
    cores = os.cpu_count() or 1
    print(
        f"{args.n} invoices, {min(len(x['lineItems']) for x in docs)}-"
        f"{max(len(x['lineItems']) for x in docs)} lines each; {cores} cores"
    )
    print(
        f"load average before: {os.getloadavg()[0]:.2f} (other work on the machine skews wall time)"
    )
    runs: dict[str, list[tuple[float, float]]] = {"loop": [], "one": [], "many": []}
    for run in range(args.repeat):
        for name in runs:
            shutil.rmtree(args.out / name, ignore_errors=True)
            (args.out / name).mkdir(parents=True)
        runs["loop"].append(plain_loop(docs, args.out / "loop"))
        runs["one"].append(many(docs, args.out / "one", 1))
        runs["many"].append(many(docs, args.out / "many", args.processes, args.start_method))
        print(
            "  run {}: loop {:.2f} s, render_many(1) {:.2f} s, render_many({}) {:.2f} s".format(
                run + 1,
                runs["loop"][-1][0],
                runs["one"][-1][0],
                args.processes or cores,
                runs["many"][-1][0],
            )
        )
    loop = statistics.median(w for w, _ in runs["loop"])
    labels = {
        "loop": "plain WeasyPrint loop, 1 process",
        "one": "render_many, processes=1",
        "many": f"render_many, processes={args.processes or cores}",
    }
    print(f"{'':36s} {'PDFs/s':>8s} {'vs loop':>8s} {'CPU ms/PDF':>11s}")
    for name, label in labels.items():
        wall = statistics.median(w for w, _ in runs[name])
        cpu = statistics.median(c for _, c in runs[name])
        print(f"{label:36s} {args.n / wall:8.1f} {loop / wall:7.2f}x {cpu / args.n * 1000:11.1f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
