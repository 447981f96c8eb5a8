"""The audit's state: a recorded audit and its findings read back, and the newest nightly
run it defaults to (its date and the snapshot its invoices were rated at)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from billing_batch._core.jsonutil import dumps
from billing_batch.config.settings import Settings
from billing_batch.invoicing import audit
from billing_batch.storage import state
from tests.invoicing.helpers import api_calls, load


def test_a_recorded_audit_reads_back(settings: Settings, tmp_path: Path) -> None:
    load(settings, tmp_path, api_calls("ws_a", 1, "2024-01-10"))
    report = audit.audit(
        settings, as_of=date(2024, 2, 1), mode="strict", record=True, run_id="run_x"
    )
    assert [(f.workspace_id, f.kind) for f in report.unexplained] == [
        ("ws_a", "unbilled_period"),
        ("ws_a", "usage"),
    ]
    with state.opened(settings) as con:
        (run,) = [dict(r) for r in con.execute("SELECT * FROM audit_runs")]
        rows = [dict(r) for r in con.execute("SELECT * FROM audit_findings ORDER BY rowid")]
    assert run["at"].endswith("Z")
    del run["at"]
    assert run == {
        "audit_id": report.audit_id,
        "run_id": "run_x",
        "as_of": "2024-02-01",
        "lake_snapshot_id": report.lake_snapshot_id,
        "mode": "strict",
        "periods_checked": 1,
        "findings": 2,
        "unexplained": 2,
    }
    assert rows == [
        {
            "audit_id": report.audit_id,
            "workspace_id": "ws_a",
            "period_start": "2024-01-01",
            "period_end": "2024-01-31",
            "segment_start": None,
            "segment_end": None,
            "kind": "unbilled_period",
            "metric": "",
            "lake_quantity": None,
            "billed_quantity": None,
            "status": "unexplained",
            "reason": "closed and not billed",
        },
        {
            "audit_id": report.audit_id,
            "workspace_id": "ws_a",
            "period_start": "2024-01-01",
            "period_end": "2024-01-31",
            "segment_start": "2024-01-01",
            "segment_end": "2024-01-31",
            "kind": "usage",
            "metric": "api_calls",
            "lake_quantity": "1000",
            "billed_quantity": "0",
            "status": "unexplained",
            "reason": "closed and not billed",
        },
    ]


def test_last_run_is_the_newest_nightly_run(settings: Settings) -> None:
    assert audit.last_run(settings) is None
    runs = [("run_1", "2024-02-02", 3), ("run_2", "2024-02-03", 5), ("run_3", "2024-02-01", 9)]
    with state.opened(settings) as con, state.transaction(con):
        for run_id, day, snapshot in runs:
            summary = {"steps": {"invoices": {"counts": {"lake_snapshot": snapshot}}}}
            con.execute(
                "INSERT INTO runs (run_id, run_date, started_at, status, summary) "
                "VALUES (?, ?, ?, 'succeeded', ?)",
                (run_id, day, f"{day}T02:00:00.000000Z", dumps(summary)),
            )
    assert audit.last_run(settings) == (date(2024, 2, 3), 5)
