"""The invoice verbs: the seed invoice (golden), drafts refreshed and finalized, files
written once, the lifecycle's moves and refusals, void and overlapping periods, exact
JSON."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from billing_batch._core.errors import InputError, NotFoundError, StateError
from billing_batch._core.jsonutil import dumps, loads
from billing_batch.config.settings import Settings
from billing_batch.invoicing.service import (
    create_invoice,
    finalize_invoice,
    get_invoice,
    list_invoices,
    mark_overdue,
    transition,
    void_invoice,
)
from billing_batch.storage import state as store
from tests.invoicing.helpers import NOW, api_calls, load, seed_usage

GOLDEN = Path(__file__).parents[1] / "golden"


def check_golden(golden: Path, got: str) -> None:
    """``got`` must equal the reviewed golden file; a missing file fails (a test never
    writes its own expectation: a fresh checkout without it would compare nothing)."""
    if not golden.exists():
        pytest.fail(
            f"golden file {golden} is missing; review this output and commit it as that "
            f"file:\n{got}"
        )
    assert got == golden.read_text()


def normalized(doc: dict[str, Any]) -> dict[str, Any]:
    """The invoice JSON with its random id and wall-clock times replaced."""
    out = loads(dumps(doc))
    out["id"] = "inv_<id>"
    for key in ("createdAt", "lakeSnapshotId", "priceBookDigest"):
        out[key] = f"<{key}>"
    return out


def test_seed_invoice_golden(settings: Settings, tmp_path: Path) -> None:
    load(settings, tmp_path, seed_usage())
    inv = create_invoice(settings, "ws_123", date(2024, 1, 1), date(2024, 1, 31), now=NOW)
    doc = inv.to_json()
    # the seed's response, exactly
    assert doc["status"] == "draft" and doc["workspaceId"] == "ws_123"
    assert (doc["subtotal"], doc["tax"], doc["total"]) == (500, 50, 550)
    assert [(x["description"], x["amount"]) for x in doc["lineItems"]] == [
        ("API Calls (45,000)", 450),
        ("Contracts (100)", 50),
    ]
    assert dumps(doc["total"]) == "550" and doc["currency"] == "USD"
    check_golden(GOLDEN / "invoice_seed.json", dumps(normalized(doc), indent=2) + "\n")


def test_a_missing_golden_file_fails(tmp_path: Path) -> None:
    missing = tmp_path / "invoice_seed.json"
    with pytest.raises(pytest.fail.Exception, match="is missing"):
        check_golden(missing, "{}\n")
    assert not missing.exists()  # and nothing was written in its place


def test_draft_refresh_finalize_and_files(settings: Settings, tmp_path: Path) -> None:
    load(settings, tmp_path, api_calls("ws_a", 2, "2024-01-10"))
    d1 = create_invoice(settings, "ws_a", date(2024, 1, 1), date(2024, 1, 31), now=NOW)
    assert d1.total == Decimal("22.00") and d1.number is None
    load(settings, tmp_path, api_calls("ws_a", 1, "2024-01-11"))
    d2 = create_invoice(settings, "ws_a", date(2024, 1, 1), date(2024, 1, 31), now=NOW)
    assert d2.id == d1.id and d2.total == Decimal("33.00")  # refreshed, not duplicated
    assert len(list_invoices(settings, workspace_id="ws_a")) == 1
    inv = finalize_invoice(settings, d1.id, now=NOW)
    assert inv.status == "open" and inv.number == "INV-2024-000001"
    assert inv.issued_at == NOW and inv.due_date == date(2024, 3, 2)
    json_path, pdf_path = Path(inv.json_path or ""), Path(inv.pdf_path or "")
    assert json_path.name == "INV-2024-000001.json" and pdf_path.read_bytes()[:5] == b"%PDF-"
    written = loads(json_path.read_text())
    assert written["number"] == "INV-2024-000001" and written["total"] == Decimal("33")
    before = (json_path.stat().st_mtime_ns, pdf_path.read_bytes())
    # later usage for January never changes the open invoice
    load(settings, tmp_path, api_calls("ws_a", 5, "2024-01-12", prefix="late"))
    again = get_invoice(settings, inv.id)
    assert again.total == inv.total and again.lines == inv.lines
    with pytest.raises(StateError, match="already has invoice INV-2024-000001"):
        create_invoice(settings, "ws_a", date(2024, 1, 1), date(2024, 1, 31), now=NOW)
    with pytest.raises(StateError, match="only a draft"):
        finalize_invoice(settings, inv.id, now=NOW)
    assert (json_path.stat().st_mtime_ns, pdf_path.read_bytes()) == before  # written once
    assert get_invoice(settings, "INV-2024-000001").id == inv.id  # by number too


def test_lifecycle_transitions_and_refusals(settings: Settings, tmp_path: Path) -> None:
    load(settings, tmp_path, api_calls("ws_b", 1, "2024-01-10"))
    draft = create_invoice(settings, "ws_b", date(2024, 1, 1), date(2024, 1, 31), now=NOW)
    with pytest.raises(StateError, match="draft: it cannot become void"):
        void_invoice(settings, draft.id, now=NOW)
    with store.opened(settings) as con, store.transaction(con), pytest.raises(StateError):
        transition(con, draft.id, "paid", at=NOW)
    inv = finalize_invoice(settings, draft.id, now=NOW, render=False)
    # overdue once, as of a date after the due date
    assert mark_overdue(settings, as_of=date(2024, 3, 2)) == []  # due that day: not yet
    marked = mark_overdue(settings, as_of=date(2024, 3, 3), now=NOW)
    assert [m.status for m in marked] == ["overdue"]
    assert mark_overdue(settings, as_of=date(2024, 3, 4)) == []
    with store.opened(settings) as con, store.transaction(con):
        paid = transition(con, inv.id, "paid", at=NOW, payment_intent_id="pi_1")
    assert paid.status == "paid" and paid.payment_intent_id == "pi_1"
    for bad in ("void", "open", "overdue"):
        with store.opened(settings) as con, store.transaction(con), pytest.raises(StateError):
            transition(con, inv.id, bad, at=NOW)
    with store.opened(settings) as con:
        history = [
            (r["from_status"], r["to_status"])
            for r in con.execute(
                "SELECT * FROM invoice_status_history WHERE invoice_id = ? ORDER BY seq", (inv.id,)
            )
        ]
        events = [r[0] for r in con.execute("SELECT type FROM outbox ORDER BY created_at, type")]
    assert history == [(None, "draft"), ("draft", "open"), ("open", "overdue"), ("overdue", "paid")]
    assert set(events) == {
        "billing.invoice.created",
        "billing.invoice.finalized",
        "billing.invoice.overdue",
        "billing.invoice.paid",
    }
    with pytest.raises(NotFoundError):
        get_invoice(settings, "inv_nope")
    with pytest.raises(InputError, match="before its start"):
        create_invoice(settings, "ws_b", date(2024, 2, 1), date(2024, 1, 1))


def test_void_frees_the_period_and_overlaps_are_refused(settings: Settings, tmp_path: Path) -> None:
    load(settings, tmp_path, api_calls("ws_c", 1, "2024-01-10"))
    inv = finalize_invoice(
        settings,
        create_invoice(settings, "ws_c", date(2024, 1, 1), date(2024, 1, 31), now=NOW).id,
        now=NOW,
        render=False,
    )
    with pytest.raises(InputError, match="not a billing period"):
        create_invoice(settings, "ws_c", date(2024, 1, 15), date(2024, 2, 14), now=NOW)
    voided = void_invoice(settings, inv.id, reason="wrong address", now=NOW)
    assert voided.status == "void" and voided.voided_at == NOW
    again = create_invoice(settings, "ws_c", date(2024, 1, 1), date(2024, 1, 31), now=NOW)
    assert again.id != inv.id and again.status == "draft"


def test_invoice_json_is_exact(settings: Settings, tmp_path: Path) -> None:
    load(settings, tmp_path, api_calls("ws_j", 1, "2024-01-10", qty=1234))
    inv = create_invoice(settings, "ws_j", date(2024, 1, 1), date(2024, 1, 31), now=NOW)
    text = dumps(inv.to_json())
    parsed = json.loads(text)
    assert parsed["lineItems"][0]["amount"] == 12.34 and '"amount": 12.34' in text
    assert '"total": 13.57' in text  # 12.34 + 1.234 tax -> 1.23
