"""Credit notes against real state: partial and full, by line and lump, on open and paid
invoices; the amount due, the customer balance, the ledger and the audit after each;
numbering, the event, refusals, the golden JSON and the PDF read back."""

from __future__ import annotations

import subprocess
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from billing_batch._core.errors import InputError, StateError
from billing_batch._core.jsonutil import dumps, loads
from billing_batch.config.settings import Settings
from billing_batch.invoicing import audit
from billing_batch.invoicing.balance import get_balance
from billing_batch.invoicing.credit_notes import (
    CreditLine,
    issue_credit_note,
    list_credit_notes,
)
from billing_batch.invoicing.ledger import billed
from billing_batch.invoicing.service import (
    create_invoice,
    finalize_invoice,
    get_invoice,
    void_invoice,
)
from billing_batch.storage import state
from tests.invoicing.helpers import NOW, api_calls, load, seed_usage
from tests.invoicing.test_service import GOLDEN, check_golden

LATER = datetime(2024, 2, 10, 12, 0, tzinfo=UTC)
JAN = (date(2024, 1, 1), date(2024, 1, 31))
FEB = (date(2024, 2, 1), date(2024, 2, 29))


def _seed_invoice(settings: Settings, tmp_path: Path, ws: str = "ws_123") -> str:
    """The seed invoice, finalized: API Calls 45,000 = 450, Contracts 100 = 50, tax 10%."""
    load(settings, tmp_path, seed_usage(ws))
    draft = create_invoice(settings, ws, *JAN, now=NOW)
    return finalize_invoice(settings, draft.id, now=NOW, render=False).id


def _mark_paid(settings: Settings, invoice_id: str, pi: str = "pi_test_1") -> None:
    from billing_batch.invoicing.lifecycle import transition

    with state.opened(settings) as con, state.transaction(con):
        transition(con, invoice_id, "paid", at=NOW, payment_intent_id=pi)


def _pdf_text(path: Path) -> str:
    return subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout


def _events(settings: Settings, type_: str) -> list[dict[str, object]]:
    with state.opened(settings) as con:
        rows = con.execute("SELECT payload FROM outbox WHERE type = :t", {"t": type_}).fetchall()
    return [loads(r[0]) for r in rows]


def _billed_api_calls(settings: Settings, ws: str = "ws_123") -> Decimal:
    with state.opened(settings) as con:
        segments = billed(con, [ws])[ws][JAN]
    return sum((b.usage["api_calls"].quantity for b in segments.values()), Decimal(0))


def test_partial_credit_by_quantity_on_an_open_invoice(settings: Settings, tmp_path: Path) -> None:
    inv_id = _seed_invoice(settings, tmp_path)
    note = issue_credit_note(
        settings,
        inv_id,
        reason="duplicate",
        lines=[CreditLine(1, quantity=Decimal(9000))],
        now=LATER,
    )
    assert note.number == "CN-2024-000001" and note.settlement == "amount_due"
    assert (note.subtotal, note.tax, note.total) == (Decimal(90), Decimal(9), Decimal(99))
    inv = get_invoice(settings, inv_id)
    assert inv.status == "open" and inv.total == Decimal(550) and inv.due == Decimal(451)
    assert inv.to_json()["amountDue"] == Decimal(451)
    # a money-only reason releases nothing: the units stay billed, the audit balances
    assert not note.releases_ledger and _billed_api_calls(settings) == Decimal(45000)
    report = audit.audit(settings, as_of=date(2024, 2, 1), mode="strict")
    assert report.unexplained == []
    (event,) = _events(settings, "billing.credit_note.created")
    assert event["data"]["number"] == "CN-2024-000001"  # type: ignore[index]
    assert event["data"]["total"] == Decimal(99)  # type: ignore[index]
    # numbers are gap-free and the second note credits what is left
    second = issue_credit_note(settings, inv_id, reason="other", amount=Decimal(10), now=LATER)
    assert second.number == "CN-2024-000002" and second.total == Decimal(11)
    assert get_invoice(settings, inv_id).due == Decimal(440)
    assert [n.number for n in list_credit_notes(settings, invoice_id=inv_id)] == [
        "CN-2024-000001",
        "CN-2024-000002",
    ]


def test_partial_credits_add_up_to_the_invoice_exactly(settings: Settings, tmp_path: Path) -> None:
    """Three thirds of the contracts line (50.00 for 100): 16.50 + 16.50 + 17.00, the
    tax following the cumulative subtotal; then the rest: exactly the total in all."""
    inv_id = _seed_invoice(settings, tmp_path)
    thirds = [Decimal(33), Decimal(33), Decimal(34)]
    notes = [
        issue_credit_note(
            settings, inv_id, reason="other", lines=[CreditLine(2, quantity=q)], now=LATER
        )
        for q in thirds
    ]
    assert [n.subtotal for n in notes] == [Decimal("16.50"), Decimal("16.50"), Decimal("17.00")]
    assert sum(n.subtotal for n in notes) == Decimal(50)
    with pytest.raises(InputError, match="nothing left to credit"):
        issue_credit_note(settings, inv_id, reason="other", lines=[CreditLine(2, quantity=1)])
    rest = issue_credit_note(settings, inv_id, reason="other", now=LATER)  # full: what is left
    assert sum(n.total for n in [*notes, rest]) == Decimal(550)
    assert sum(n.tax for n in [*notes, rest]) == Decimal(50)
    inv = get_invoice(settings, inv_id)
    assert inv.due == 0 and inv.status == "paid"  # nothing left to pay
    with pytest.raises(InputError, match="501.00 of its subtotal 500.00"):
        issue_credit_note(settings, inv_id, reason="other", amount=Decimal(1), refund=False)


def test_full_credit_of_an_open_invoice_marks_it_paid(settings: Settings, tmp_path: Path) -> None:
    inv_id = _seed_invoice(settings, tmp_path)
    note = issue_credit_note(settings, inv_id, reason="product_unsatisfactory", now=LATER)
    assert note.total == Decimal(550) and note.tax == Decimal(50)
    assert [(x.invoice_line_no, x.quantity, x.amount) for x in note.lines] == [
        (1, Decimal(45000), Decimal(450)),
        (2, Decimal(100), Decimal(50)),
    ]
    inv = get_invoice(settings, inv_id)
    assert (inv.status, inv.due, inv.payment_intent_id) == ("paid", Decimal(0), None)
    assert [e["data"]["number"] for e in _events(settings, "billing.invoice.paid")] == [  # type: ignore[index]
        inv.number
    ]
    assert _billed_api_calls(settings) == Decimal(45000)
    with pytest.raises(InputError, match="nothing left to credit"):
        issue_credit_note(settings, inv_id, reason="other")


def test_order_change_releases_units_billed_again_by_the_next_invoice(
    settings: Settings, tmp_path: Path
) -> None:
    inv_id = _seed_invoice(settings, tmp_path)
    note = issue_credit_note(
        settings,
        inv_id,
        reason="order_change",
        lines=[CreditLine(1, quantity=Decimal(9000))],
        now=LATER,
    )
    assert note.releases_ledger
    assert _billed_api_calls(settings) == Decimal(36000)
    with state.opened(settings) as con:
        (row,) = [dict(r) for r in con.execute("SELECT * FROM ledger_releases")]
    assert row["credit_note_id"] == note.id
    assert (Decimal(row["quantity"]), Decimal(row["amount"])) == (-9000, -90)
    # the audit: explained (the next run bills them), nothing unexplained
    now_report = audit.audit(settings, as_of=date(2024, 2, 1))
    assert now_report.unexplained == []
    assert [(f.kind, f.lake_quantity, f.billed_quantity) for f in now_report.findings] == [
        ("usage", Decimal(45000), Decimal(36000))
    ]
    # the next invoice carries them as late usage, and then everything balances
    load(settings, tmp_path, api_calls("ws_123", 1, "2024-02-05", prefix="feb"))
    feb = create_invoice(settings, "ws_123", *FEB, now=LATER)
    late = [x for x in feb.lines if x.kind == "late_usage"]
    assert [(x.quantity, x.amount) for x in late] == [(Decimal(9000), Decimal(90))]
    finalize_invoice(settings, feb.id, now=LATER, render=False)
    assert _billed_api_calls(settings) == Decimal(45000)
    assert audit.audit(settings, as_of=date(2024, 3, 1), mode="strict").findings == []


def test_money_only_credit_is_not_billed_again(settings: Settings, tmp_path: Path) -> None:
    inv_id = _seed_invoice(settings, tmp_path)
    issue_credit_note(settings, inv_id, reason="duplicate", lines=[CreditLine(1, quantity=9000)])
    load(settings, tmp_path, api_calls("ws_123", 1, "2024-02-05", prefix="feb"))
    feb = create_invoice(settings, "ws_123", *FEB, now=LATER)
    assert [x.kind for x in feb.lines] == ["usage"]  # no late line: nothing re-billed


def test_order_change_refuses_what_it_cannot_release(settings: Settings, tmp_path: Path) -> None:
    inv_id = _seed_invoice(settings, tmp_path)
    with pytest.raises(InputError, match="not a lump amount"):
        issue_credit_note(settings, inv_id, reason="order_change", amount=Decimal(5))
    with pytest.raises(InputError, match="credit it by quantity"):
        issue_credit_note(
            settings, inv_id, reason="order_change", lines=[CreditLine(1, amount=Decimal(5))]
        )
    # nothing was written by the refusals: no number taken
    assert list_credit_notes(settings) == []


def test_paid_invoice_credit_goes_to_the_balance_then_the_next_invoice(
    settings: Settings, tmp_path: Path
) -> None:
    inv_id = _seed_invoice(settings, tmp_path)
    _mark_paid(settings, inv_id)
    note = issue_credit_note(settings, inv_id, reason="other", amount=Decimal(100), now=LATER)
    assert note.settlement == "balance" and note.total == Decimal(110)
    paid = get_invoice(settings, inv_id)
    assert paid.status == "paid" and paid.due == Decimal(550)  # what was paid stays
    assert get_balance(settings, "ws_123") == {"USD": Decimal(110)}
    load(settings, tmp_path, api_calls("ws_123", 2, "2024-02-05", prefix="feb"))  # 20 + 2 tax
    feb = finalize_invoice(
        settings, create_invoice(settings, "ws_123", *FEB, now=LATER).id, now=LATER
    )
    assert (feb.total, feb.due) == (Decimal(22), Decimal(0))
    assert feb.to_json()["amountDue"] == Decimal(0)
    text = _pdf_text(Path(feb.pdf_path or ""))
    assert "Credits applied" in text and "-22.00" in text and "Amount due" in text
    assert get_balance(settings, "ws_123") == {"USD": Decimal(88)}  # the rest waits


def test_refusals(settings: Settings, tmp_path: Path) -> None:
    load(settings, tmp_path, api_calls("ws_a", 1, "2024-01-10"))
    draft = create_invoice(settings, "ws_a", *JAN, now=NOW)
    with pytest.raises(StateError, match="draft: only open, overdue or paid"):
        issue_credit_note(settings, draft.id, reason="other")
    inv = finalize_invoice(settings, draft.id, now=NOW, render=False)
    cases: list[tuple[dict[str, object], str]] = [
        ({"reason": "because"}, "unknown credit note reason"),
        ({"reason": "other", "lines": [CreditLine(9, quantity=1)]}, "has no line 9"),
        ({"reason": "other", "lines": [CreditLine(1, quantity=2000)]}, "of its 1000"),
        ({"reason": "other", "lines": [CreditLine(1)]}, "a quantity or an amount"),
        ({"reason": "other", "amount": Decimal("0.001")}, "finer than USD"),
        ({"reason": "other", "amount": Decimal(-1)}, "positive"),
        ({"reason": "other", "amount": Decimal(11)}, "of its subtotal 10"),
        ({"reason": "other", "refund": True}, "nothing was paid"),
        ({"reason": "other", "amount": Decimal(1), "lines": []}, "not both"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InputError, match=message):
            issue_credit_note(settings, inv.id, **kwargs)  # type: ignore[arg-type]
    void_invoice(settings, inv.id, now=NOW)
    with pytest.raises(StateError, match="void"):
        issue_credit_note(settings, inv.id, reason="other")
    assert list_credit_notes(settings) == []


def test_credit_note_golden_json_and_pdf_text(settings: Settings, tmp_path: Path) -> None:
    inv_id = _seed_invoice(settings, tmp_path)
    note = issue_credit_note(
        settings,
        inv_id,
        reason="product_unsatisfactory",
        lines=[CreditLine(1, quantity=Decimal(4500)), CreditLine(2, amount=Decimal("12.34"))],
        memo="Outage of 2024-01-12",
        now=LATER,
    )
    json_path, pdf_path = Path(note.json_path or ""), Path(note.pdf_path or "")
    assert json_path.name == "CN-2024-000001.json" and pdf_path.name == "CN-2024-000001.pdf"
    doc = loads(json_path.read_text())
    assert doc == loads(dumps(note.to_json()))
    doc["id"], doc["invoiceId"] = "cn_<id>", "inv_<id>"
    check_golden(GOLDEN / "credit_note.json", dumps(doc, indent=2) + "\n")
    text = _pdf_text(pdf_path)
    for expected in (
        "Credit note",
        "CN-2024-000001",
        "INV-2024-000001",
        "Product unsatisfactory",
        "4,500",
        "45.00",
        "12.34",
        "5.73",  # tax: 10% of 57.34, rounded once
        "63.07",
        "Outage of 2024-01-12",
        "Deducted from the invoice",
    ):
        assert expected in text, expected
    # immutable: a later credit note writes its own files and leaves these alone
    before = pdf_path.read_bytes()
    issue_credit_note(settings, inv_id, reason="other", amount=Decimal(1), now=LATER)
    assert pdf_path.read_bytes() == before
