"""Invoice numbers: gap-free per issue year, none taken by a draft, distinct under
concurrent finalizations (separate processes)."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from billing_batch._core.errors import StateError
from billing_batch.config.settings import Settings, load_settings
from billing_batch.invoicing.service import create_invoice, finalize_invoice
from tests.invoicing.helpers import NOW, api_calls, load


def test_numbers_are_sequential_per_year_and_drafts_consume_none(
    settings: Settings, tmp_path: Path
) -> None:
    load(
        settings, tmp_path, [e for ws in ("w1", "w2", "w3") for e in api_calls(ws, 1, "2024-01-10")]
    )
    drafts = {
        ws: create_invoice(settings, ws, date(2024, 1, 1), date(2024, 1, 31), now=NOW)
        for ws in ("w1", "w2", "w3")
    }
    n1 = finalize_invoice(settings, drafts["w1"].id, now=NOW, render=False).number
    n3 = finalize_invoice(settings, drafts["w3"].id, now=NOW, render=False).number
    assert (n1, n3) == ("INV-2024-000001", "INV-2024-000002")  # w2's draft took none
    next_year = datetime(2025, 1, 2, tzinfo=UTC)
    n2 = finalize_invoice(settings, drafts["w2"].id, now=next_year, render=False).number
    assert n2 == "INV-2025-000001"


def _finalize_in_process(home: str, invoice_id: str) -> str:
    s = load_settings(env={"BILLING_HOME": home})
    return finalize_invoice(s, invoice_id, now=NOW, render=False).number or ""


def test_concurrent_finalizations_get_distinct_consecutive_numbers(
    settings: Settings, tmp_path: Path
) -> None:
    wss = [f"cw{i}" for i in range(6)]
    load(settings, tmp_path, [e for ws in wss for e in api_calls(ws, 1, "2024-01-10")])
    ids = [
        create_invoice(settings, ws, date(2024, 1, 1), date(2024, 1, 31), now=NOW).id for ws in wss
    ]
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        numbers = pool.starmap(_finalize_in_process, [(str(settings.home), i) for i in ids])
    assert sorted(numbers) == [f"INV-2024-{n:06d}" for n in range(1, 7)]


def test_a_nightly_numbers_in_one_block_and_gives_back_a_failed_invoice_number(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The nightly counts its numbers in memory and writes the counter once: an invoice
    that fails after taking its number gives it back (no gap), the counter is stored
    (the next finalization continues after the block), and the failed one is billed by
    the next run with the next number."""
    from billing_batch.invoicing import ledger, lifecycle
    from billing_batch.invoicing.service import invoice_closed_periods
    from billing_batch.storage import state

    wss = ["n1", "n2", "n3", "n4"]
    load(settings, tmp_path, [e for ws in wss for e in api_calls(ws, 1, "2024-01-10")])
    real_record = ledger.record

    def failing_record(con: object, invoice_id: str, workspace_id: str, entries: object) -> None:
        if workspace_id == "n2":  # after n2 took its number
            raise StateError("injected: the ledger refused n2")
        real_record(con, invoice_id, workspace_id, entries)  # type: ignore[arg-type]

    monkeypatch.setattr(lifecycle.ledger, "record", failing_record)
    _, results = invoice_closed_periods(settings, date(2024, 2, 1), now=NOW)
    by_ws = {p.workspace_id: r for p, r in results}
    assert isinstance(by_ws["n2"], StateError)
    numbers = sorted(r.number or "" for r in by_ws.values() if not isinstance(r, StateError))
    assert numbers == [f"INV-2024-{i:06d}" for i in (1, 2, 3)]
    with state.opened(settings) as con:
        assert con.execute("SELECT last FROM invoice_numbers WHERE year = 2024").fetchone()[0] == 3
    monkeypatch.setattr(lifecycle.ledger, "record", real_record)
    _, again = invoice_closed_periods(settings, date(2024, 2, 1), now=NOW)
    assert [(p.workspace_id, getattr(r, "number", r)) for p, r in again] == [
        ("n2", "INV-2024-000004")
    ]
