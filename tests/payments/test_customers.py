"""A workspace's Stripe customer: the price book's, the recorded one, found by metadata, or
created once."""

from __future__ import annotations

from billing_batch.config.settings import Settings
from tests.fake_stripe import FakeStripe, FakeStripeHTTPClient
from tests.payments.support import make_invoice, pay


def test_known_customer_and_recorded_customer_are_reused(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient
) -> None:
    # the price book's customer id wins: nothing created
    known = make_invoice(psettings, workspace="ws_known")
    assert pay(psettings, known, http).succeeded
    assert fake.charges[0].customer == "cus_known"
    assert fake.requests_to("POST", "/v1/customers") == []
    # a second invoice of a workspace reuses the recorded customer
    first = make_invoice(psettings)
    second = make_invoice(psettings, month=2)
    assert pay(psettings, first, http).succeeded
    assert pay(psettings, second, http).succeeded
    assert len(fake.requests_to("POST", "/v1/customers")) == 1
    assert fake.charges[1].customer == fake.charges[2].customer


def test_existing_stripe_customer_found_by_metadata(
    psettings: Settings, fake: FakeStripe, http: FakeStripeHTTPClient
) -> None:
    """Created earlier (say, by a run that crashed before recording it): found, not
    created twice."""
    fake.add_customer("cus_earlier", metadata={"workspace_id": "ws_123"})
    assert pay(psettings, make_invoice(psettings), http).succeeded
    assert fake.requests_to("POST", "/v1/customers") == []
    assert fake.charges[0].customer == "cus_earlier"
