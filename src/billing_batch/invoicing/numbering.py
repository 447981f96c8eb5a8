"""Invoice numbers: gap-free per issue year, ``<prefix>-<year>-<000001>`` (the prefix is
``[invoices] number_prefix``, ``INV`` by default).

A number is taken only when a draft is finalized, in the transaction that finalizes it:
a draft consumes none, and a rollback gives its number back. The state's writer lock
(``BEGIN IMMEDIATE``) serializes concurrent finalizations, so numbers never repeat.
"""

from __future__ import annotations

from ..config.settings import Settings
from ..storage import state
from ..storage.state import StateConnection


def next_number(settings: Settings, con: StateConnection, year: int) -> str:
    """Take the next number of ``year`` (inside the caller's transaction)."""
    row = state.query(con, "invoicing/next_invoice_number", {"year": year}).fetchone()
    return f"{settings.invoices.number_prefix}-{year}-{int(row[0]):06d}"


__all__ = ["next_number"]
