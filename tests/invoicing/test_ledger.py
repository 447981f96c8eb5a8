"""The billing ledger read back: one workspace or all of them, and a void releasing what
its invoice billed (docs/billing-rules.md §6)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

from billing_batch.config.settings import Settings
from billing_batch.invoicing import ledger
from billing_batch.invoicing.service import create_invoice, finalize_invoice, void_invoice
from billing_batch.storage import state
from tests.invoicing.helpers import NOW, api_calls, load

JAN = (date(2024, 1, 1), date(2024, 1, 31))


def test_billed_by_workspace_and_a_void_releases_its_rows(
    settings: Settings, tmp_path: Path
) -> None:
    load(
        settings,
        tmp_path,
        [*api_calls("ws_a", 2, "2024-01-10"), *api_calls("ws_b", 3, "2024-01-10")],
    )
    a, b = (
        finalize_invoice(
            settings, create_invoice(settings, ws, *JAN, now=NOW).id, now=NOW, render=False
        )
        for ws in ("ws_a", "ws_b")
    )
    create_invoice(settings, "ws_c", *JAN, now=NOW)  # a draft bills nothing
    with state.opened(settings) as con:
        everything = ledger.billed(con)
        assert ledger.billed(con, {"ws_a"}) == {"ws_a": everything["ws_a"]}
        assert ledger.billed(con, {"ws_b", "ws_nobody"}) == {"ws_b": everything["ws_b"]}
        assert ledger.billed(con, set()) == {}
    assert set(everything) == {"ws_a", "ws_b"}
    ((segment, billed_a),) = everything["ws_a"][JAN].items()
    assert segment == JAN and billed_a.plan == "payg"
    assert billed_a.usage["api_calls"].quantity == Decimal(2000)
    assert billed_a.usage["api_calls"].amount == a.subtotal
    void_invoice(settings, a.id, now=NOW)
    with state.opened(settings) as con:
        assert ledger.billed(con) == {"ws_b": everything["ws_b"]}
    assert b.status == "open"
