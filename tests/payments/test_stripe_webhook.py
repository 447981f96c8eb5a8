"""Stripe → us through the real app: ``POST /v1/billing/stripe/webhook`` with signatures
made by the official SDK's helper; a tampered body, a wrong secret and a stale timestamp
are refused; a replay changes nothing; a 3-D Secure payment completed later pays the
invoice; a dispute shows on the invoice; charge.refunded settles a pending refund."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from billing_batch.api import create_app
from billing_batch.config.settings import Settings
from billing_batch.invoicing import service as invoices
from billing_batch.invoicing.credit_notes import issue_credit_note
from billing_batch.payments import refunds
from billing_batch.storage import state
from tests.api.test_api import AppClient, with_keys
from tests.fake_stripe import FakeStripe, FakeStripeHTTPClient
from tests.fake_stripe_refunds import sign
from tests.payments.support import attempts, make_invoice, outbox, pay

SECRET = "whsec_test_0123456789abcdef"
URL = "/v1/billing/stripe/webhook"


@pytest.fixture
def client(psettings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppClient]:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", SECRET)
    c = AppClient(create_app(with_keys(psettings), mirror=False))
    yield c
    c.close()


def post(client: AppClient, event: dict[str, Any], **kw: Any) -> Any:
    body = json.dumps(event).encode()
    header = sign(body, kw.pop("secret", SECRET), timestamp=kw.pop("timestamp", None))
    return client.post(URL, content=body, headers={"Stripe-Signature": header}, key="")


def test_3ds_completed_later_pays_the_invoice_once(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient, client: AppClient
) -> None:
    inv = make_invoice(psettings, workspace="ws_3ds")
    result = pay(psettings, inv, http)
    assert result.status == "requires_action"
    pi = dict(fake.payment_intents[str(result.payment_intent_id)])
    pi.update(status="succeeded", amount_received=pi["amount"])  # the customer authenticated
    event = fake.event("payment_intent.succeeded", pi)
    answer = post(client, event)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "id": event["id"],
        "type": "payment_intent.succeeded",
        "duplicate": False,
        "outcome": "invoice paid",
        "invoiceId": inv.id,
    }
    paid = invoices.get_invoice(psettings, inv.id)
    assert (paid.status, paid.payment_intent_id) == ("paid", pi["id"])
    assert [a.status for a in attempts(psettings, inv.id)] == ["succeeded"]
    assert len(outbox(psettings, "billing.invoice.paid", inv.id)) == 1
    # a replay (Stripe retries) is recorded once and changes nothing
    again = post(client, event)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert len(outbox(psettings, "billing.invoice.paid", inv.id)) == 1
    with state.opened(psettings) as con:
        assert con.execute("SELECT count(*) FROM stripe_events").fetchone()[0] == 1


def test_bad_signatures_are_refused(
    psettings: Settings, fake: FakeStripe, client: AppClient
) -> None:
    inv = make_invoice(psettings, workspace="ws_3ds")
    pi = {
        "id": "pi_x",
        "object": "payment_intent",
        "amount": 55000,
        "amount_received": 55000,
        "status": "succeeded",
        "metadata": {"invoice_id": inv.id},
    }
    event = fake.event("payment_intent.succeeded", pi)
    body = json.dumps(event).encode()
    good = sign(body, SECRET)
    tampered = body.replace(b"55000", b"1", 1)
    for content, header in [
        (tampered, good),  # the body changed after signing
        (body, sign(body, "whsec_someone_else")),  # another secret
        (body, sign(body, SECRET, timestamp=int(time.time()) - 3600)),  # outside the tolerance
        (body, "t=1,v1=deadbeef"),
        (body, None),
    ]:
        headers = {"Stripe-Signature": header} if header else {}
        answer = client.post(URL, content=content, headers=headers, key="")
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == "invalid_signature"
        assert SECRET not in answer.text
    assert invoices.get_invoice(psettings, inv.id).status == "open"
    with state.opened(psettings) as con:
        assert con.execute("SELECT count(*) FROM stripe_events").fetchone()[0] == 0


def test_without_a_secret_503(
    psettings: Settings, fake: FakeStripe, client: AppClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET")
    answer = post(client, fake.event("payment_intent.payment_failed", {"id": "pi_1"}))
    assert answer.status_code == 503


def test_dispute_shows_on_the_invoice(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient, client: AppClient
) -> None:
    inv = make_invoice(psettings)
    result = pay(psettings, inv, http)
    (charge,) = fake.charges
    dispute = {
        "id": "dp_test_1",
        "object": "dispute",
        "amount": charge.amount,
        "currency": "usd",
        "charge": charge.id,
        "payment_intent": result.payment_intent_id,
        "reason": "fraudulent",
        "status": "needs_response",
    }
    answer = post(client, fake.event("charge.dispute.created", dispute))
    assert answer.json()["outcome"] == "dispute shown on the invoice"
    got = client.get(f"/v1/billing/invoices/{inv.id}").json()
    assert got["dispute"] == {"id": "dp_test_1", "status": "needs_response"}
    assert got["status"] == "paid"


def test_charge_refunded_settles_a_pending_refund(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient, client: AppClient
) -> None:
    inv = make_invoice(psettings)
    pay(psettings, inv, http)
    fake.refund_outcome = "pending"  # Stripe still processing it
    note = issue_credit_note(
        psettings, inv.id, reason="duplicate", amount=Decimal(1), refund=True, http_client=http
    )
    with state.opened(psettings) as con:
        pending = refunds.refund_of(con, note.id)
    assert pending is not None and pending.status == "pending"
    (stripe_refund,) = fake.refunds.values()
    stripe_refund = {**stripe_refund, "status": "succeeded"}
    charge = {
        "id": "ch_1",
        "object": "charge",
        "payment_intent": inv.payment_intent_id,
        "refunds": {"object": "list", "data": [stripe_refund]},
    }
    paid = invoices.get_invoice(psettings, inv.id)
    charge["payment_intent"] = paid.payment_intent_id
    answer = post(client, fake.event("charge.refunded", charge))
    assert answer.json()["outcome"] == "1 refund(s) settled"
    with state.opened(psettings) as con:
        done = refunds.refund_of(con, note.id)
    assert done is not None and done.status == "succeeded"
