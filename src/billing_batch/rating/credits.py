"""PURE: prepaid credits: which grants an invoice draws from, how much, and what expires.

A **grant** is an amount of one currency a workspace may spend from ``effective_on``
through ``expires_on`` (inclusive; ``None``: never expires). Its **balance** is the sum
of its ledger movements (grant, drawdowns, expiry); the store computes it, this module
only decides.

Rules (docs/pricing.md "Prepaid credits"):

* **when**: at finalization, after discounts and tax, from the grants in force on the
  last day of the invoice's period (the usage it pays was consumed under them): credits
  pay the invoice's *total* (they are a means of payment, not a price reduction, so they
  never change the tax); the amount due (what Stripe charges) is total − credits applied;
* **which**: grants in the invoice's currency, usable on the issue date, with a positive
  balance, in draw order: lower ``priority`` first, then the earliest expiry (never
  expiring last), then the earliest effective date, then the grant id;
* **how much**: from each grant ``min(balance, still due)``; never more than the total,
  never below zero; grants hold whole minor units (validated when granted), so every
  drawdown does too: no rounding happens here (``money.quantize`` only checks);
* **expiry**: on day D, every grant whose ``expires_on`` is before D loses its remaining
  balance (one ``expiry`` movement).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from .._core import money

ZERO = Decimal(0)


@dataclass(frozen=True)
class Grant:
    id: str
    workspace_id: str
    currency: str
    amount: Decimal  # granted
    effective_on: date
    expires_on: date | None
    priority: int
    balance: Decimal  # what is left (sum of the grant's movements)
    reason: str = ""

    def usable_on(self, day: date) -> bool:
        return self.effective_on <= day and (self.expires_on is None or day <= self.expires_on)

    def draw_key(self) -> tuple[int, date, date, str]:
        return (self.priority, self.expires_on or date.max, self.effective_on, self.id)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "credit_grant",
            "workspaceId": self.workspace_id,
            "currency": self.currency,
            "amount": self.amount,
            "balance": self.balance,
            "effectiveOn": self.effective_on,
            "expiresOn": self.expires_on,
            "priority": self.priority,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Draw:
    """An amount one grant pays of one invoice."""

    grant_id: str
    amount: Decimal

    def to_json(self) -> dict[str, Any]:
        return {"grantId": self.grant_id, "amount": self.amount}


def draw_order(grants: Iterable[Grant], currency: str, day: date) -> list[Grant]:
    """The grants an invoice in ``currency`` issued on ``day`` may draw from, in order."""
    usable = [g for g in grants if g.currency == currency and g.usable_on(day) and g.balance > ZERO]
    return sorted(usable, key=Grant.draw_key)


def drawdown(grants: Iterable[Grant], total: Decimal, currency: str, day: date) -> list[Draw]:
    """What each grant pays of an invoice total of ``total`` (nothing for a total ≤ 0)."""
    due = total
    draws: list[Draw] = []
    for g in draw_order(grants, currency, day):
        if due <= ZERO:
            break
        take = min(g.balance, due)
        if money.quantize(take, currency) != take:  # pragma: no cover - grants are whole
            raise ValueError(f"grant {g.id}: {take} is not whole {currency} minor units")
        draws.append(Draw(g.id, take))
        due -= take
    return draws


def applied_total(draws: Sequence[Draw]) -> Decimal:
    return sum((d.amount for d in draws), ZERO)


def expired(grants: Iterable[Grant], day: date) -> list[Grant]:
    """The grants that expired before ``day`` and still hold a balance."""
    return sorted(
        (g for g in grants if g.expires_on is not None and g.expires_on < day and g.balance > 0),
        key=lambda g: g.id,
    )


__all__ = ["Draw", "Grant", "applied_total", "draw_order", "drawdown", "expired"]
