"""Explaining an invoice: per line, the daily quantities and the tier arithmetic from the
lake snapshot that priced it; and whether rating its period again, at that snapshot and
with today's lake, gives the same amounts. It prices with the invoice's own price book
(stored by digest when it priced the invoice, :mod:`.price_books`), not today's."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import duckdb

from .._core.errors import BillingError
from ..config.price_book import load_price_book
from ..config.settings import Settings
from ..periods import Period
from ..rating import Billed, SegmentState
from ..rating.plans import PriceBook
from ..storage import state
from ..storage.lake import Lake
from ..subscriptions.service import load_subscriptions
from ..usage.queries import daily_quantities
from ..usage.rollup import ensure_fresh
from .model import Invoice
from .positions import load_positions
from .price_books import stored_book
from .rate import rate_discounted
from .service import get_invoice


def _lines(con: duckdb.DuckDBPyConnection, book: PriceBook, inv: Invoice) -> list[dict[str, Any]]:
    """Each line with its daily quantities and tier arithmetic (usage), or its detail."""
    explained: list[dict[str, Any]] = []
    for n, line in enumerate(inv.lines, start=1):
        entry: dict[str, Any] = {
            "line": n,
            "description": line.description,
            "amount": line.amount,
            "kind": line.kind,
        }
        if line.metric:
            daily = daily_quantities(con, inv.workspace_id, line.period_start, line.period_end)
            entry["daily"] = [{"date": d, "quantity": q} for m, d, q in daily if m == line.metric]
            if line.plan and line.quantity is not None and line.kind == "usage":
                price = book.plan(line.plan).prices.get(line.metric)
                if price is not None:
                    entry["arithmetic"] = price.rate(line.quantity, inv.currency).explain()
        elif line.detail:
            entry["detail"] = dict(line.detail)
        explained.append(entry)
    return explained


def explain_invoice(settings: Settings, invoice_id: str) -> dict[str, Any]:
    """Per line: the daily quantities, the tier arithmetic and the lake snapshot; and
    whether re-rating the period at that snapshot, and today, gives the same amounts."""
    inv = get_invoice(settings, invoice_id)
    now_book = load_price_book(settings)
    digest = inv.extra.get("priceBookDigest")
    with state.opened(settings) as scon:
        stored = stored_book(settings, scon, str(digest)) if digest else None
    book = stored or now_book
    ensure_fresh(settings)
    con = Lake(settings).connect(read_only=True, snapshot=inv.lake_snapshot_id or None)
    try:
        explained = _lines(con, book, inv)
    finally:
        con.close()
    return {
        "invoice": inv.to_json(),
        "lakeSnapshotId": inv.lake_snapshot_id,
        "priceBookVersion": inv.price_book_version,
        "priceBookVersionNow": now_book.version,
        "priceBookChanged": digest not in (None, now_book.digest),
        # the invoice's own book (stored when it priced the invoice), else today's
        "priceBookUsed": "stored" if stored is not None else "current (not stored)",
        "lines": explained,
        "recomputedAtSnapshot": _rerate(settings, book, inv, snapshot=inv.lake_snapshot_id),
        "recomputedToday": _rerate(settings, book, inv, snapshot=None),
    }


def _rerate(
    settings: Settings, book: PriceBook, inv: Invoice, *, snapshot: int | None
) -> dict[str, Any]:
    """The invoice's period rated in full (as if nothing had been billed for it) at the
    lake snapshot, compared with the invoice's own (not late) lines."""
    nominal = inv.extra.get("nominalPeriod") or {}
    period = Period(
        inv.period_start,
        inv.period_end,
        date.fromisoformat(str(nominal.get("start", inv.period_start))),
        date.fromisoformat(str(nominal.get("end", inv.period_end))),
        inv.kind,
    )
    con = Lake(settings).connect(read_only=True, snapshot=snapshot or None)
    try:
        with state.opened(settings) as scon:
            positions = load_positions(
                con,
                scon,
                book=book,
                subscriptions=load_subscriptions(scon, inv.workspace_id),
                as_of=inv.period_start,
                workspace_ids={inv.workspace_id},
                extra={inv.workspace_id: [period]},
            )
    finally:
        con.close()
    pos = positions.period(inv.workspace_id, period)
    assert pos is not None
    fresh = [SegmentState(s.span, s.usage, Billed(plan=s.billed.plan)) for s in pos.segments]
    try:
        rated = rate_discounted(settings, book, inv.workspace_id, period, fresh)
    except BillingError as exc:
        return {"error": str(exc)}
    own = [(x.description, x.amount) for x in inv.lines if not x.kind.startswith("late_")]
    again = [(x.description, x.amount) for x in rated.lines]
    return {
        "snapshot": positions.lake_snapshot_id,
        "agrees": own == again,
        "subtotal": sum((x.amount for x in rated.lines), Decimal(0)),
        "lines": [{"description": d, "amount": a} for d, a in again],
    }


__all__ = ["explain_invoice"]
