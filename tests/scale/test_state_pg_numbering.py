"""Gap-free numbering under concurrent finalizers, with the state on PostgreSQL: several
processes creating and finalizing invoices at the same moment get distinct, consecutive
numbers (every writing transaction takes the state's write lock first)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from billing_batch.config.settings import load_settings
from billing_batch.storage import state as store
from billing_batch.storage.transfer import copy_state
from tests.payments.support import WORKSPACES, payments_env
from tests.postgres_harness import PgServer

pytestmark = pytest.mark.scale

FINALIZE = """\
import json, sys
from datetime import UTC, datetime
from billing_batch.config import load_settings
from billing_batch.invoicing import service as invoices
from tests.payments.support import month_bounds
settings = load_settings()
jobs = json.loads(sys.argv[1])
sys.stdin.readline()  # start together
numbers = []
for ws, month in jobs:  # one transaction each: they interleave with the other processes'
    (inv,) = invoices.create_invoices(
        settings, [(ws, *month_bounds(month))], now=datetime(2025, 1, 5, tzinfo=UTC),
        finalize=True,
    )
    numbers.append(inv.number)
print(json.dumps(numbers))
"""


def test_concurrent_finalizers_get_distinct_consecutive_numbers(
    tmp_path: Path, invoice_template: Path, pg_server: PgServer, pg_database: str
) -> None:
    source = load_settings(env=payments_env(invoice_template, invoice_template / "lake"))
    env = {
        **os.environ,
        **payments_env(tmp_path, invoice_template / "lake"),
        "BILLING_STATE_URL": pg_server.url(pg_database),
    }
    target = load_settings(env=env)
    copy_state(source, target)
    processes = 4
    jobs = [(ws, month) for month in range(4, 8) for ws in WORKSPACES]  # 28 invoices
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FINALIZE, json.dumps(jobs[i::processes])],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0] * processes, [o[1][-2000:] for o in outs]
    numbers = [n for out, _ in outs for n in json.loads(out)]
    assert sorted(numbers) == [f"INV-2025-{n:06d}" for n in range(1, len(jobs) + 1)]
    with store.opened(target) as con:
        (last,) = con.execute("SELECT last FROM invoice_numbers WHERE year = 2025").fetchone()
        live = con.execute(
            "SELECT count(*) FROM invoices WHERE number LIKE 'INV-2025-%'"
        ).fetchone()[0]
    assert last == len(jobs) and live == len(jobs)
