"""Invoice numbers: gap-free per issue year, none taken by a draft, distinct under
concurrent finalizations (separate processes)."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, date, datetime
from pathlib import Path

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
