"""Refunds through Stripe: a credit note on an invoice paid through the fake Stripe is
refunded once, against its PaymentIntent, under its own idempotency key; a process
killed between Stripe's answer and the record leaves exactly one refund at Stripe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from billing_batch._core.errors import InputError, StripeNotConfiguredError
from billing_batch.cli import main as cli_main
from billing_batch.config.settings import Settings
from billing_batch.invoicing import service as invoices
from billing_batch.invoicing.credit_notes import CreditLine, issue_credit_note
from billing_batch.payments import refunds
from billing_batch.storage import state
from tests.fake_stripe import FakeStripe, FakeStripeHTTPClient, FakeStripeServer
from tests.payments.support import KEY, at, make_invoice, pay


def _paid(settings: Settings, http: FakeStripeHTTPClient) -> invoices.Invoice:
    inv = make_invoice(settings)
    assert pay(settings, inv, http).succeeded
    return invoices.get_invoice(settings, inv.id)


def _refund(settings: Settings, note_id: str) -> refunds.Refund:
    with state.opened(settings) as con:
        found = refunds.refund_of(con, note_id)
    assert found is not None
    return found


def test_refund_of_a_partial_credit(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient
) -> None:
    inv = _paid(psettings, http)
    (charge,) = fake.charges
    note = issue_credit_note(
        psettings,
        inv.id,
        reason="product_unsatisfactory",
        lines=[CreditLine(1, amount=Decimal(1))],
        refund=True,
        now=at(1),
        http_client=http,
    )
    assert note.settlement == "refund"
    r = _refund(psettings, note.id)
    assert (r.status, r.amount_minor, r.idempotency_key) == (
        "succeeded",
        note.total_minor,
        f"refund-{note.id}",
    )
    (moved,) = fake.refund_ledger
    assert (moved.payment_intent, moved.amount, moved.id) == (
        charge.payment_intent,
        note.total_minor,
        r.stripe_refund_id,
    )
    assert moved.metadata["credit_note_id"] == note.id
    # the invoice stays paid for what was charged; a second send changes nothing
    assert invoices.get_invoice(psettings, inv.id).status == "paid"
    assert refunds.send_refund(psettings, note.id, http_client=http) == r
    assert len(fake.requests_to("POST", "/v1/refunds")) == 1
    # the rest: a second refund; in all, exactly the charge
    rest = issue_credit_note(psettings, inv.id, reason="other", refund=True, http_client=http)
    assert _refund(psettings, rest.id).status == "succeeded"
    assert sum(x.amount for x in fake.refund_ledger) == charge.amount
    with pytest.raises(InputError, match="nothing left to credit"):
        issue_credit_note(psettings, inv.id, reason="other", refund=True, http_client=http)


def test_refund_statuses_pending_then_failed_and_refused(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient
) -> None:
    inv = _paid(psettings, http)
    fake.inject("server_error", times=10, method="POST", path="/v1/refunds")
    note = issue_credit_note(
        psettings, inv.id, reason="duplicate", amount=Decimal(1), refund=True, http_client=http
    )
    r = _refund(psettings, note.id)
    assert r.status == "pending" and r.error_code == "api_error"
    fake.clear_faults()
    fake.refund_outcome = "failed"
    (done,) = refunds.resolve_pending_refunds(psettings, http_client=http)
    assert done.status == "failed" and done.error_code == "expired_or_canceled_card"
    assert fake.refund_ledger == []


def test_refund_needs_stripe_and_a_payment(
    psettings: Settings, monkeypatch: pytest.MonkeyPatch, http: FakeStripeHTTPClient
) -> None:
    inv = _paid(psettings, http)
    monkeypatch.delenv("STRIPE_API_KEY")
    with pytest.raises(StripeNotConfiguredError):
        issue_credit_note(psettings, inv.id, reason="other", amount=Decimal(1), refund=True)
    with state.opened(psettings) as con:
        assert con.execute("SELECT count(*) FROM credit_notes").fetchone()[0] == 0


def test_process_killed_between_refund_and_record(
    psettings: Settings, fake: FakeStripe, server: FakeStripeServer, home: Path
) -> None:
    """A real process gets Stripe's refund, then os._exit before the record: the rerun
    finds the refund by its metadata; the fake Stripe holds exactly one refund."""
    http = FakeStripeHTTPClient(fake)
    inv = _paid(psettings, http)
    script = textwrap.dedent(
        """
        import os, sys
        from decimal import Decimal
        import stripe
        from billing_batch.config import load_settings
        from billing_batch.invoicing.credit_notes import issue_credit_note

        class Killed(stripe.RequestsClient):
            def request(self, method, url, headers, post_data=None):
                answer = super().request(method, url, headers, post_data)
                if method == "post" and url.endswith("/v1/refunds"):
                    os._exit(137)
                return answer

        issue_credit_note(load_settings(), sys.argv[1], reason="other",
                          amount=Decimal(1), refund=True, http_client=Killed())
        """
    )
    env = {**os.environ, "STRIPE_API_KEY": KEY, "STRIPE_API_BASE": server.url}
    proc = subprocess.run(
        [sys.executable, "-c", script, inv.id], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 137, proc.stderr
    assert len(fake.refund_ledger) == 1
    with state.opened(psettings) as con:
        (row,) = con.execute("SELECT credit_note_id, status FROM refunds").fetchall()
    assert row["status"] == "pending"  # committed before the call, never completed
    (done,) = refunds.resolve_pending_refunds(psettings, http_client=http)
    assert done.status == "succeeded" and done.stripe_refund_id == fake.refund_ledger[0].id
    assert len(fake.refund_ledger) == 1, "refunded twice"
    assert len(fake.requests_to("POST", "/v1/refunds")) == 1  # found, not resent


def test_cli_credit_note_create_get_list(
    psettings: Settings, http: FakeStripeHTTPClient, capsys: pytest.CaptureFixture[str]
) -> None:
    inv = make_invoice(psettings)
    home = ["--home", str(psettings.home)]
    assert (
        cli_main(
            [*home, "credit-note", "create", inv.id, "--reason", "other", "--line", "1:amount=1"]
        )
        == 0
    )
    created = json.loads(capsys.readouterr().out)
    assert created["number"].startswith("CN-")
    assert created["settlement"] == "amount_due" and created["refund"] is None
    assert Path(created["files"]["pdf"]).read_bytes()[:5] == b"%PDF-"
    assert cli_main([*home, "credit-note", "get", created["number"]]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == created["id"]
    assert cli_main([*home, "credit-note", "list", "--invoice", inv.id]) == 0
    assert [n["id"] for n in json.loads(capsys.readouterr().out)] == [created["id"]]
    with pytest.raises(SystemExit) as bad_reason:
        cli_main([*home, "credit-note", "create", inv.id, "--reason", "x"])
    assert bad_reason.value.code == 2
    assert (
        cli_main([*home, "credit-note", "create", inv.id, "--reason", "other", "--line", "1:qty"])
        == 2
    )
    assert cli_main([*home, "credit-note", "get", "CN-1999-000001"]) != 0
