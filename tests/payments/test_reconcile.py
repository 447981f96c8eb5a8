"""Three-way reconciliation against real state, the real audit and the fake Stripe: a
clean state has no mismatch; a mismatch of each kind, injected, is found (and recorded,
and the CLI exits 1)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from billing_batch.cli import main as cli_main
from billing_batch.config.settings import Settings
from billing_batch.invoicing.credit_notes import issue_credit_note
from billing_batch.invoicing.reconcile import reconcile
from billing_batch.storage import state
from tests.fake_stripe import FakeStripe, FakeStripeHTTPClient
from tests.payments.support import make_invoice, pay


def _paid(settings: Settings, http: FakeStripeHTTPClient, ws: str, month: int) -> Any:
    inv = make_invoice(settings, workspace=ws, month=month)
    result = pay(settings, inv, http, payment_method="pm_card_visa")
    assert result.succeeded
    return inv, str(result.payment_intent_id)


def _refund(settings: Settings, http: FakeStripeHTTPClient, inv_id: str) -> str:
    note = issue_credit_note(
        settings, inv_id, reason="other", amount=Decimal(1), refund=True, http_client=http
    )
    return note.id


def _stripe_refund_of(fake: FakeStripe, note_id: str) -> dict[str, Any]:
    (r,) = [r for r in fake.refunds.values() if r["metadata"].get("credit_note_id") == note_id]
    return r


def test_every_kind_of_mismatch_is_found(
    psettings: Settings,
    fake: FakeStripe,
    http: FakeStripeHTTPClient,
) -> None:
    a, pi_a = _paid(psettings, http, "ws_123", 1)
    b, _ = _paid(psettings, http, "ws_123", 2)
    c = make_invoice(psettings, workspace="ws_known", month=1)
    d = make_invoice(psettings, workspace="ws_known", month=2, status="paid")
    e, _ = _paid(psettings, http, "ws_jpy", 1)
    f, pi_f = _paid(psettings, http, "ws_jpy", 2)
    g, pi_g = _paid(psettings, http, "ws_nopm", 1)
    lost, wrong_amount = _refund(psettings, http, g.id), _refund(psettings, http, g.id)
    fake.refund_outcome = "pending"
    late = _refund(psettings, http, g.id)
    fake.refund_outcome = "succeeded"

    clean = reconcile(psettings, http_client=http)
    assert [m.kind for m in clean.mismatches] == ["payment_not_found"]  # d: paid elsewhere
    assert clean.invoices_checked >= 6 and clean.stripe_checked

    # inject one mismatch of each kind
    fake.payment_intents[pi_a]["amount_received"] -= 1
    twin = dict(fake.payment_intents[pi_a], id="pi_twin")
    twin["metadata"] = {**twin["metadata"], "invoice_id": b.id}
    fake.payment_intents["pi_twin"] = twin
    fake.payment_intents["pi_stray"] = dict(twin, id="pi_stray", metadata={"invoice_id": c.id})
    fake.payment_intents[pi_f]["status"] = "canceled"
    del fake.refunds[_stripe_refund_of(fake, lost)["id"]]
    _stripe_refund_of(fake, wrong_amount)["amount"] += 5
    _stripe_refund_of(fake, late)["status"] = "succeeded"
    fake.refunds["re_unknown"] = {
        "id": "re_unknown",
        "payment_intent": pi_g,
        "amount": 7,
        "status": "succeeded",
        "metadata": {},
    }
    with state.opened(psettings) as con, state.transaction(con):
        con.execute("UPDATE invoices SET payment_intent_id = NULL WHERE id = :id", {"id": e.id})
        con.execute(
            "UPDATE billing_ledger SET quantity = '999999999' "
            "WHERE invoice_id = :id AND metric = 'api_calls'",
            {"id": a.id},
        )

    report = reconcile(psettings, http_client=http)
    found = {(m.kind, m.invoice_id) for m in report.mismatches}
    expected = {
        ("payment_amount", a.id),
        ("duplicate_payment", b.id),
        ("unrecorded_payment", c.id),
        ("payment_not_found", d.id),
        ("paid_without_payment", e.id),
        ("payment_not_succeeded", f.id),
        ("refund_not_found", g.id),
        ("refund_amount", g.id),
        ("refund_status", g.id),
        ("refund_without_credit_note", g.id),
    }
    assert expected <= found, expected - found
    assert any(m.kind == "usage_vs_invoices" and m.reference == "ws_123" for m in report.mismatches)
    assert len(report.mismatches) == len(expected) + sum(
        1 for m in report.mismatches if m.kind == "usage_vs_invoices"
    )
    with state.opened(psettings) as con:
        rows = con.execute(
            "SELECT kind FROM reconcile_findings WHERE reconcile_id = :r",
            {"r": report.reconcile_id},
        ).fetchall()
    assert len(rows) == len(report.mismatches)


def test_cli_reconcile_clean_and_without_stripe(
    psettings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("STRIPE_API_KEY")
    assert cli_main(["--home", str(psettings.home), "reconcile", "--period", "2024-01"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["stripeChecked"] is False and out["mismatchCount"] == 0
    assert out["invoicesChecked"] >= 1
    assert cli_main(["--home", str(psettings.home), "reconcile", "--period", "2024-13"]) == 2
