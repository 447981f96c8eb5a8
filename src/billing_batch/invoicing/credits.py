"""Prepaid credits in the state: grants, their balance ledger, the drawdown at
finalization and the nightly's expiry. The decisions (which grant, how much, what
expired) are pure, in :mod:`billing_batch.rating.credits`; the tables are
``credit_grants`` and ``credit_ledger`` (mirrored into the lake for analysts).

Every movement has a deterministic id (grant, kind, invoice), so rerunning a
finalization or an expiry adds nothing.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from .._core import clock, money
from .._core.errors import InputError
from .._core.ids import check_workspace_id, new_id, stable_id
from ..config.settings import Settings
from ..rating.credits import Draw, Grant, drawdown, expired
from ..storage import state
from ..storage.state import StateConnection

ZERO = Decimal(0)


def _movement(
    con: StateConnection,
    grant: Grant,
    kind: str,
    amount: Decimal,
    on: date,
    now: datetime,
    invoice_id: str | None = None,
) -> None:
    params = {
        "id": f"{grant.id}:{kind}:{invoice_id or ''}",
        "grant_id": grant.id,
        "workspace_id": grant.workspace_id,
        "currency": grant.currency,
        "kind": kind,
        "amount": str(amount),
        "invoice_id": invoice_id,
        "on_date": on.isoformat(),
        "recorded_at": clock.ts(now),
    }
    state.query(con, "credits/insert_movement", params)


def load_grants(
    con: StateConnection,
    *,
    workspace_id: str | None = None,
    currency: str | None = None,
    on: date | None = None,
) -> list[Grant]:
    """Grants with their balance (movements on or before ``on``; None: all)."""
    balance: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for m in state.query(con, "credits/movements", {"workspace_id": workspace_id}):
        if on is None or date.fromisoformat(m["on_date"]) <= on:
            balance[m["grant_id"]] += Decimal(m["amount"])
    params = {"workspace_id": workspace_id, "currency": currency}
    return [
        Grant(
            id=r["id"],
            workspace_id=r["workspace_id"],
            currency=r["currency"],
            amount=Decimal(r["amount"]),
            effective_on=date.fromisoformat(r["effective_on"]),
            expires_on=date.fromisoformat(r["expires_on"]) if r["expires_on"] else None,
            priority=int(r["priority"]),
            balance=balance[r["id"]],
            reason=r["reason"],
        )
        for r in state.query(con, "credits/grants", params)
    ]


def _checked_grant(
    workspace_id: str,
    amount: Decimal,
    currency: str,
    effective_on: date,
    expires_on: date | None,
) -> str:
    check_workspace_id(workspace_id)
    code = currency.upper()
    money.minor_units(code)  # InputError for an unknown currency
    if amount <= 0:
        raise InputError(f"a credit grant must be positive, got {amount} {code}")
    if money.quantize(amount, code) != amount:
        raise InputError(
            f"{amount} is not a whole number of {code} minor units "
            f"({money.minor_units(code)} decimals)"
        )
    if expires_on is not None and expires_on < effective_on:
        raise InputError(f"the grant expires ({expires_on}) before it starts ({effective_on})")
    return code


def grant_credit(
    settings: Settings,
    workspace_id: str,
    amount: Decimal,
    currency: str,
    *,
    effective_on: date,
    expires_on: date | None = None,
    priority: int = 0,
    reason: str = "",
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> Grant:
    """Grant ``amount`` of ``currency`` to a workspace (its ``grant`` movement too).

    ``idempotency_key`` (e.g. the order or contract reference): the same key for the same
    workspace gives the grant made the first time, never a second one; with other terms
    it is refused (InputError)."""
    now = clock.aware(now)
    code = _checked_grant(workspace_id, amount, currency, effective_on, expires_on)
    gid = stable_id("cg", workspace_id, idempotency_key) if idempotency_key else new_id("cg")
    grant = Grant(
        gid, workspace_id, code, amount, effective_on, expires_on, priority, amount, reason
    )
    params = {
        "id": grant.id,
        "workspace_id": workspace_id,
        "currency": code,
        "amount": str(amount),
        "effective_on": effective_on.isoformat(),
        "expires_on": expires_on.isoformat() if expires_on else None,
        "priority": priority,
        "reason": reason,
        "created_at": clock.ts(now),
    }
    with state.opened(settings) as con, state.transaction(con):
        if idempotency_key:
            done = [g for g in load_grants(con, workspace_id=workspace_id) if g.id == gid]
            if done:
                return _same_grant(done[0], grant, idempotency_key)
        state.query(con, "credits/insert_grant", params)
        _movement(con, grant, "grant", amount, effective_on, now)
    return grant


def _same_grant(done: Grant, asked: Grant, key: str) -> Grant:
    """The grant already made under ``key``, if ``asked`` has its terms."""
    terms = ("currency", "amount", "effective_on", "expires_on", "priority", "reason")
    differ = [t for t in terms if getattr(done, t) != getattr(asked, t)]
    if differ:
        raise InputError(
            f"idempotency key {key!r} was used for grant {done.id} with other terms "
            f"({', '.join(differ)}): nothing granted"
        )
    return done


def list_grants(settings: Settings, workspace_id: str | None = None) -> list[Grant]:
    with state.opened(settings) as con:
        return load_grants(con, workspace_id=workspace_id)


def balances(settings: Settings, workspace_id: str, on: date) -> dict[str, Decimal]:
    """The workspace's usable credit per currency on ``on`` (grants in force that day)."""
    out: dict[str, Decimal] = {}
    with state.opened(settings) as con:
        for g in load_grants(con, workspace_id=workspace_id, on=on):
            if g.usable_on(on):
                out[g.currency] = out.get(g.currency, ZERO) + g.balance
    return dict(sorted(out.items()))


def invoice_draws(con: StateConnection, invoice_id: str) -> list[Draw]:
    rows = state.query(con, "credits/invoice_drawdowns", {"invoice_id": invoice_id})
    return [Draw(r["grant_id"], -Decimal(r["amount"])) for r in rows]


def draw_down(
    con: StateConnection,
    invoice_id: str,
    workspace_id: str,
    currency: str,
    total: Decimal,
    period_end: date,
    now: datetime,
) -> list[Draw]:
    """At finalization, inside its transaction: the invoice's total paid from the
    workspace's prepaid credits in force on the last day of its period (rules:
    :func:`billing_batch.rating.credits.drawdown`), one ``drawdown`` movement per grant,
    dated the issue day. A rerun returns what was drawn."""
    done = invoice_draws(con, invoice_id)
    if done:
        return done
    # every movement counts (on=None): a balance is never drawn twice
    grants = {g.id: g for g in load_grants(con, workspace_id=workspace_id, currency=currency)}
    draws = drawdown(grants.values(), total, currency, period_end)
    for d in draws:
        _movement(con, grants[d.grant_id], "drawdown", -d.amount, now.date(), now, invoice_id)
    return draws


def credits_document(draws: list[Draw], total: Decimal) -> dict[str, Any]:
    """What the invoice document shows of its credits: each grant drawn, the amount due."""
    applied = sum((d.amount for d in draws), ZERO)
    return {"creditsApplied": [d.to_json() for d in draws], "amountDue": total - applied}


def expire_credits(settings: Settings, on: date, *, now: datetime | None = None) -> list[Grant]:
    """The nightly's step: every grant that expired before ``on`` loses what is left
    (one ``expiry`` movement, dated its last usable day + 1). Returns the grants expired
    now (a rerun expires nothing more)."""
    now = clock.aware(now)
    with state.opened(settings) as con, state.transaction(con):
        gone = expired(load_grants(con), on)
        for g in gone:
            assert g.expires_on is not None
            after = date.fromordinal(g.expires_on.toordinal() + 1)
            _movement(con, g, "expiry", -g.balance, after, now)
    return gone


__all__ = [
    "balances",
    "credits_document",
    "draw_down",
    "expire_credits",
    "grant_credit",
    "invoice_draws",
    "list_grants",
    "load_grants",
]
