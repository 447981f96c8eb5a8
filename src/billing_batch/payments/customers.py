"""A workspace's Stripe customer: the price book's ``stripe_customer_id``; else the one
recorded in the ``customers`` table (SQL in ``sql/state/payments/``); else one found by
``metadata['workspace_id']`` (created by an earlier run that did not get to record it);
else created (idempotently: ``customer-<workspace_id>``) and recorded."""

from __future__ import annotations

import logging
from datetime import datetime

from .._core import clock
from ..config.settings import Settings
from ..rating.plans import Account
from ..storage import state
from ..storage.state import StateConnection
from .stripe_gateway import StripeGateway

log = logging.getLogger(__name__)


def _recorded(con: StateConnection, workspace_id: str) -> str | None:
    row = state.query(con, "payments/customer_of_workspace", {"workspace_id": workspace_id})
    found = row.fetchone()
    return str(found[0]) if found is not None else None


def stripe_customer(
    settings: Settings, gateway: StripeGateway, account: Account, *, now: datetime
) -> str:
    """The Stripe customer (``cus_...``) to charge ``account``'s invoices to. Two runs
    racing: the first customer recorded is the one both use."""
    if account.stripe_customer_id:
        return account.stripe_customer_id
    workspace_id = account.workspace_id
    with state.opened(settings) as con:
        recorded = _recorded(con, workspace_id)
    if recorded is not None:
        return recorded
    customer_id = gateway.find_customer(workspace_id)
    if customer_id is None:
        customer_id = gateway.create_customer(
            workspace_id, name=account.legal_name or workspace_id, email=account.email
        )
        log.info("workspace %s: created Stripe customer %s", workspace_id, customer_id)
    with state.opened(settings) as con, state.transaction(con):
        state.query(
            con,
            "payments/insert_customer",
            {
                "workspace_id": workspace_id,
                "stripe_customer_id": customer_id,
                "created_at": clock.ts(now),
            },
        )
        recorded = _recorded(con, workspace_id)
    assert recorded is not None
    return recorded


__all__ = ["stripe_customer"]
