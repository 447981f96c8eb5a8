"""Invoices: rating usage into lines, and the lifecycle draft → open → paid / void / overdue.

Rating (``create_invoice`` / ``create_invoices``) turns a workspace's usage for a period
into lines, with the price book and the plans in force each day:

* one line per metric with usage, per plan span (a mid-period plan change splits a
  metric's line at the change date; each line names the plan that priced it);
* the plan's recurring base fee, prorated ``fee × days in force / nominal period days``;
* a minimum-commitment top-up when the usage of a plan span is below its (prorated)
  minimum;
* *late usage*: events that arrived after an earlier period's invoice was finalized
  become separate "Late usage for <period>" lines on the next invoice, priced as the
  difference between rating the earlier period's new total and what was billed;
* subtotal, tax on the subtotal (rounded once, HALF_UP), total.

Lifecycle: a draft can be refreshed any number of times (same id; never a second live
invoice for one workspace and period). ``finalize`` re-rates the draft, assigns the next
gap-free number of the issue year (``INV-2024-000001``), freezes lines and amounts,
records what it billed (the base for late usage) and emits ``billing.invoice.finalized``;
the JSON and PDF are then written once to ``invoices/<number>.json|pdf``. Allowed moves:
``open → paid | void | overdue`` and ``overdue → paid | void``; anything else is a
:class:`~billing_batch.errors.StateError`.

Each invoice records the price-book version (and digest) and the lake snapshot that
priced it; :func:`explain_invoice` recomputes it from that snapshot and from today's lake.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import duckdb

from . import store
from .config import MetricDef, Settings
from .errors import BillingError, InputError, NotFoundError, PriceBookError, StateError
from .ids import new_id
from .jsonutil import dumps, loads
from .lake import Lake, run_query
from .money import format_quantity, quantize, to_minor
from .outbox import record_event
from .pricing import Account, Plan, PriceBook, load_price_book
from .pricing import tax as compute_tax
from .subscriptions import (
    Period,
    PlanSpan,
    Subscription,
    billing_periods,
    load_subscriptions,
    plan_spans,
)

STATUSES = ("draft", "open", "paid", "void", "overdue")
TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"open"}),
    "open": frozenset({"paid", "void", "overdue"}),
    "overdue": frozenset({"paid", "void"}),
    "paid": frozenset(),
    "void": frozenset(),
}
FINALIZED = ("open", "paid", "overdue")


# --- the model -------------------------------------------------------------------------
@dataclass(frozen=True)
class Line:
    kind: str  # usage | base_fee | minimum | late_usage
    description: str
    amount: Decimal
    period_start: date
    period_end: date
    metric: str | None = None
    plan: str | None = None
    quantity: Decimal | None = None
    unit: str | None = None
    unit_price: Decimal | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "description": self.description,
            "amount": self.amount,
            "kind": self.kind,
            "metric": self.metric,
            "plan": self.plan,
            "quantity": self.quantity,
            "unit": self.unit,
            "unitPrice": self.unit_price,
            "periodStart": self.period_start,
            "periodEnd": self.period_end,
        }
        for key, value in self.detail.items():
            out.setdefault(key, value)  # detail never overrides the line's own fields
        return out


@dataclass(frozen=True)
class BilledUsage:
    """What a finalized invoice billed for one (source period, metric, plan span)."""

    period_start: date
    period_end: date
    metric: str
    plan: str
    segment_start: date
    segment_end: date
    quantity: Decimal
    amount: Decimal


@dataclass(frozen=True)
class Rated:
    """The result of rating one workspace and period (not yet stored)."""

    workspace_id: str
    period: Period
    account: Account
    currency: str
    lines: tuple[Line, ...]
    subtotal: Decimal
    tax: Decimal
    total: Decimal
    billed: tuple[BilledUsage, ...]
    price_book_version: str
    price_book_digest: str
    lake_snapshot_id: int


@dataclass(frozen=True)
class Invoice:
    id: str
    workspace_id: str
    period_start: date
    period_end: date
    kind: str
    status: str
    number: str | None
    currency: str
    subtotal: Decimal
    tax_rate: Decimal
    tax: Decimal
    total: Decimal
    lines: tuple[Line, ...]
    price_book_version: str
    lake_snapshot_id: int | None
    created_at: datetime
    updated_at: datetime
    issued_at: datetime | None
    due_date: date | None
    finalized_at: datetime | None
    paid_at: datetime | None
    voided_at: datetime | None
    overdue_at: datetime | None
    payment_intent_id: str | None
    json_path: str | None
    pdf_path: str | None
    extra: Mapping[str, Any]  # billTo, issuer, digest, nominal period (from the document)

    @property
    def total_minor(self) -> int:
        return to_minor(self.total, self.currency)

    def to_json(self) -> dict[str, Any]:
        """The seed's invoice shape, plus period, currency, number, dates and detail."""
        payment: dict[str, Any] | None = None
        if self.paid_at is not None or self.payment_intent_id is not None:
            payment = {
                "status": "succeeded" if self.paid_at else "pending",
                "paidAt": self.paid_at,
                "paymentIntentId": self.payment_intent_id,
            }
        return {
            "id": self.id,
            "object": "invoice",
            "workspaceId": self.workspace_id,
            "status": self.status,
            "number": self.number,
            "kind": self.kind,
            "currency": self.currency,
            "period": {"start": self.period_start, "end": self.period_end},
            "issuedAt": self.issued_at,
            "dueDate": self.due_date,
            "subtotal": self.subtotal,
            "taxRate": self.tax_rate,
            "tax": self.tax,
            "total": self.total,
            "lineItems": [line.to_json() for line in self.lines],
            "billTo": self.extra.get("billTo"),
            "issuer": self.extra.get("issuer"),
            "priceBookVersion": self.price_book_version,
            "priceBookDigest": self.extra.get("priceBookDigest"),
            "lakeSnapshotId": self.lake_snapshot_id,
            "payment": payment,
            "createdAt": self.created_at,
            "finalizedAt": self.finalized_at,
            "paidAt": self.paid_at,
            "voidedAt": self.voided_at,
            "overdueAt": self.overdue_at,
        }


# --- reading the store -------------------------------------------------------------------
def _dt(v: str | None) -> datetime | None:
    return store.parse_ts(v) if v else None


def _d(v: str | None) -> date | None:
    return date.fromisoformat(v) if v else None


def _dec(v: Any) -> Decimal | None:
    return None if v is None else Decimal(str(v))


def _line_from_row(r: sqlite3.Row) -> Line:
    return Line(
        kind=r["kind"],
        description=r["description"],
        amount=Decimal(r["amount"]),
        period_start=date.fromisoformat(r["period_start"]),
        period_end=date.fromisoformat(r["period_end"]),
        metric=r["metric"],
        plan=r["plan"],
        quantity=_dec(r["quantity"]),
        unit=r["unit"],
        unit_price=_dec(r["unit_price"]),
        detail=loads(r["detail"]),
    )


def _invoice_from_row(con: sqlite3.Connection, r: sqlite3.Row) -> Invoice:
    lines = tuple(
        _line_from_row(x)
        for x in con.execute(
            "SELECT * FROM invoice_lines WHERE invoice_id = ? ORDER BY line_no", (r["id"],)
        )
    )
    return _as_stored(
        Invoice(
            id=r["id"],
            workspace_id=r["workspace_id"],
            period_start=date.fromisoformat(r["period_start"]),
            period_end=date.fromisoformat(r["period_end"]),
            kind=r["kind"],
            status=r["status"],
            number=r["number"],
            currency=r["currency"],
            subtotal=Decimal(r["subtotal"]),
            tax_rate=Decimal(r["tax_rate"]),
            tax=Decimal(r["tax"]),
            total=Decimal(r["total"]),
            lines=lines,
            price_book_version=r["price_book_version"],
            lake_snapshot_id=r["lake_snapshot_id"],
            created_at=store.parse_ts(r["created_at"]),
            updated_at=store.parse_ts(r["updated_at"]),
            issued_at=_dt(r["issued_at"]),
            due_date=_d(r["due_date"]),
            finalized_at=_dt(r["finalized_at"]),
            paid_at=_dt(r["paid_at"]),
            voided_at=_dt(r["voided_at"]),
            overdue_at=_dt(r["overdue_at"]),
            payment_intent_id=r["payment_intent_id"],
            json_path=r["json_path"],
            pdf_path=r["pdf_path"],
            extra={},
        ),
        loads(r["document"]),
    )


def load_invoice(con: sqlite3.Connection, invoice_id: str) -> Invoice:
    row = con.execute("SELECT * FROM invoices WHERE id = ?", (invoice_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no invoice {invoice_id!r}")
    return _invoice_from_row(con, row)


def get_invoice(settings: Settings, invoice_id: str) -> Invoice:
    """The invoice with this id (or number), as it is now."""
    with store.opened(settings) as con:
        row = con.execute(
            "SELECT * FROM invoices WHERE id = ? OR number = ?", (invoice_id, invoice_id)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no invoice {invoice_id!r}")
        return _invoice_from_row(con, row)


def list_invoices(
    settings: Settings,
    *,
    workspace_id: str | None = None,
    status: str | None = None,
    limit: int = 1000,
) -> list[Invoice]:
    if status is not None and status not in STATUSES:
        raise InputError(f"unknown status {status!r} (one of {', '.join(STATUSES)})")
    sql = "SELECT * FROM invoices WHERE 1 = 1"
    params: list[Any] = []
    if workspace_id is not None:
        sql += " AND workspace_id = ?"
        params.append(workspace_id)
    if status is not None:
        sql += " AND status = ?"
        params.append(status)
    sql += " ORDER BY period_start, workspace_id, created_at LIMIT ?"
    params.append(limit)
    with store.opened(settings) as con:
        return [_invoice_from_row(con, r) for r in con.execute(sql, params).fetchall()]


# --- rating ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Item:
    workspace_id: str
    period: Period


class _Quantities:
    """Usage quantities read from the lake, batched by distinct (span, nominal period):
    one query per distinct key, for every workspace (or for the only one that needs it),
    indexed by workspace."""

    Key = tuple[date, date, date, date]

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self._cache: dict[
            tuple[date, date, date, date, str | None], dict[str, dict[str, Decimal]]
        ] = {}

    def prefetch(self, keys: Iterable[Key], single: Mapping[Key, str]) -> None:
        from .usage import period_quantities

        for key in set(keys):
            ws = single.get(key)
            cache_key = (*key, ws)
            if cache_key in self._cache:
                continue
            rows = period_quantities(
                self.con, key[0], key[1], period_start=key[2], period_end=key[3], workspace_id=ws
            )
            by_ws: dict[str, dict[str, Decimal]] = {}
            for (workspace, metric), qty in rows.items():
                by_ws.setdefault(workspace, {})[metric] = qty
            self._cache[cache_key] = by_ws

    def get(self, key: Key, workspace_id: str) -> dict[str, Decimal]:
        data = self._cache.get((*key, workspace_id)) or self._cache.get((*key, None))
        if data is None:
            self.prefetch([key], {key: workspace_id})
            data = self._cache[(*key, workspace_id)]
        return dict(data.get(workspace_id, {}))


def _span_key(span: PlanSpan, period: Period) -> tuple[date, date, date, date]:
    return (span.start, span.end, period.nominal_start, period.nominal_end)


def _span_label(span: PlanSpan, period: Period, plan: Plan, several: bool) -> str:
    if not several:
        return ""
    return f" ({plan.display_name}, {span.start:%b %-d}–{span.end:%b %-d})"


def _shown(mdef: MetricDef, quantity: Decimal) -> str:
    """How a line names its quantity: ``45,000`` or ``12.5 GB-months``."""
    text = format_quantity(quantity)
    return f"{text} {mdef.period_unit}" if mdef.period_unit else text


def _billed(
    period: Period, span: PlanSpan, metric: str, plan: str, quantity: Decimal, amount: Decimal
) -> BilledUsage:
    return BilledUsage(
        period_start=period.start,
        period_end=period.end,
        metric=metric,
        plan=plan,
        segment_start=span.start,
        segment_end=span.end,
        quantity=quantity,
        amount=amount,
    )


def _included(included: Decimal, span: PlanSpan, period: Period) -> Decimal:
    """A plan's free units per period, prorated by the span's share of the nominal period
    when the plan is in force for part of it only (an upgrade mid-month)."""
    if not included or span.days == period.nominal_days:
        return included
    return included * span.days / period.nominal_days


def _rate_spans(
    settings: Settings,
    book: PriceBook,
    account: Account,
    period: Period,
    spans: Sequence[PlanSpan],
    quantities: Mapping[tuple[date, date, date, date], Mapping[str, Decimal]],
    *,
    kind_prefix: str = "",
    late_of: tuple[date, date] | None = None,
) -> tuple[list[Line], list[BilledUsage]]:
    """Lines for one period's plan spans (usage, base fee, minimum)."""
    lines: list[Line] = []
    billed: list[BilledUsage] = []
    currency = account.currency
    nominal_days = period.nominal_days
    several = len(spans) > 1
    for span in spans:
        plan = book.plan(span.plan)
        if plan.currency != currency:
            raise PriceBookError(
                f"plan {plan.name!r} is priced in {plan.currency} but workspace "
                f"{account.workspace_id} is billed in {currency}"
            )
        label = _span_label(span, period, plan, several)
        usage_total = Decimal(0)
        q = quantities[_span_key(span, period)]
        for metric in sorted(q):
            qty = q[metric]
            if qty == 0:
                continue
            mdef = settings.metric(metric)
            price = plan.prices.get(metric)
            if price is None:
                raise PriceBookError(f"plan {plan.name!r} has no price for metric {metric!r}")
            charge = price.rate(qty, currency, included=_included(price.included, span, period))
            unit = mdef.period_unit or mdef.unit
            shown = _shown(mdef, qty)
            lines.append(
                Line(
                    kind="usage",
                    description=f"{mdef.display_name} ({shown}){label}",
                    amount=charge.amount,
                    period_start=span.start,
                    period_end=span.end,
                    metric=metric,
                    plan=plan.name,
                    quantity=qty,
                    unit=unit,
                    unit_price=charge.unit_price,
                    detail=charge.to_detail(),
                )
            )
            usage_total += charge.amount
            billed.append(_billed(period, span, metric, plan.name, qty, charge.amount))
        fee_days = span.fee_days()
        if plan.base_fee and fee_days:
            exact = plan.base_fee * fee_days / nominal_days
            prorated = fee_days != nominal_days
            desc = f"{plan.display_name} plan fee"
            if prorated:
                desc += f" (prorated {fee_days}/{nominal_days} days)"
            lines.append(
                Line(
                    kind="base_fee",
                    description=desc,
                    amount=quantize(exact, currency),
                    period_start=span.start,
                    period_end=span.end,
                    plan=plan.name,
                    quantity=Decimal(fee_days),
                    unit="days",
                    detail={
                        "baseFee": plan.base_fee,
                        "daysInForce": fee_days,
                        "nominalDays": nominal_days,
                        "exactAmount": exact,
                    },
                )
            )
        min_days = span.days if span.subscription_id is None else fee_days
        if plan.minimum and min_days:
            floor_exact = plan.minimum * min_days / nominal_days
            floor = quantize(floor_exact, currency)
            if usage_total < floor:
                lines.append(
                    Line(
                        kind="minimum",
                        description=f"Minimum commitment top-up ({plan.display_name})",
                        amount=floor - usage_total,
                        period_start=span.start,
                        period_end=span.end,
                        plan=plan.name,
                        detail={
                            "minimum": plan.minimum,
                            "proratedMinimum": floor,
                            "usageAmount": usage_total,
                            "days": min_days,
                            "nominalDays": nominal_days,
                        },
                    )
                )
    return lines, billed


def _late_lines(
    settings: Settings,
    book: PriceBook,
    account: Account,
    prior: Sequence[tuple[Period, list[PlanSpan], list[BilledUsage]]],
    quantities: Mapping[tuple[date, date, date, date], Mapping[str, Decimal]],
) -> tuple[list[Line], list[BilledUsage]]:
    """Late usage of earlier finalized periods: new total rated minus what was billed."""
    lines: list[Line] = []
    billed: list[BilledUsage] = []
    currency = account.currency
    for period, spans, already in prior:
        for span in spans:
            plan = book.plan(span.plan)
            q = quantities[_span_key(span, period)]
            for metric in sorted(set(q) | {b.metric for b in already if b.plan == plan.name}):
                prev = [
                    b
                    for b in already
                    if b.metric == metric and b.plan == plan.name and b.segment_start == span.start
                ]
                billed_qty = sum((b.quantity for b in prev), Decimal(0))
                billed_amt = sum((b.amount for b in prev), Decimal(0))
                qty = q.get(metric, Decimal(0))
                delta = qty - billed_qty
                if delta == 0:
                    continue
                price = plan.prices.get(metric)
                if price is None:
                    raise PriceBookError(f"plan {plan.name!r} has no price for metric {metric!r}")
                free = _included(price.included, span, period)
                charge = price.rate(qty, currency, included=free)
                # what the period should have cost with everything known now, minus
                # what was billed for it; the detail shows the incremental arithmetic
                amount = charge.amount - billed_amt
                increment = price.rate_additional(billed_qty, delta, currency, included=free)
                mdef = settings.metric(metric)
                shown = _shown(mdef, delta)
                label = _period_label(period)
                lines.append(
                    Line(
                        kind="late_usage",
                        description=f"Late usage for {label}: {mdef.display_name} ({shown})",
                        amount=amount,
                        period_start=span.start,
                        period_end=span.end,
                        metric=metric,
                        plan=plan.name,
                        quantity=delta,
                        unit=mdef.period_unit or mdef.unit,
                        unit_price=charge.unit_price,
                        detail={
                            "latePeriod": {"start": period.start, "end": period.end},
                            "billedQuantity": billed_qty,
                            "newTotalQuantity": qty,
                            "billedAmount": billed_amt,
                            "newTotalAmount": charge.amount,
                            **increment.to_detail(),
                        },
                    )
                )
                billed.append(_billed(period, span, metric, plan.name, delta, amount))
    return lines, billed


def _period_label(period: Period) -> str:
    """``2024-01`` for a calendar month, else ``2024-01-15–2024-02-14``."""
    month_end = (period.start.replace(day=28) + timedelta(days=4)).replace(day=1)
    if period.start.day == 1 and period.end == month_end - timedelta(days=1):
        return f"{period.start:%Y-%m}"
    return f"{period.start}–{period.end}"


def _prior_finalized(
    con: sqlite3.Connection, workspace_id: str, before: date
) -> list[tuple[Period, int | None, list[BilledUsage]]]:
    """Earlier periods of a workspace that have a live finalized invoice, with everything
    billed for them so far (their own lines and late lines on later invoices) and the
    newest lake snapshot any of that billing was rated at."""
    rows = con.execute(
        "SELECT b.*, carrier.lake_snapshot_id AS snap, own.document AS own_document "
        "FROM billed_usage AS b "
        "JOIN invoices AS carrier ON carrier.id = b.invoice_id "
        "  AND carrier.status IN ('open', 'paid', 'overdue') "
        "JOIN invoices AS own ON own.workspace_id = b.workspace_id "
        "  AND own.period_start = b.period_start AND own.period_end = b.period_end "
        "  AND own.status IN ('open', 'paid', 'overdue') "
        "WHERE b.workspace_id = ? AND b.period_end < ? ORDER BY b.period_start",
        (workspace_id, before.isoformat()),
    ).fetchall()
    out: dict[tuple[str, str], tuple[Period, int | None, list[BilledUsage]]] = {}
    for r in rows:
        key = (r["period_start"], r["period_end"])
        if key not in out:
            nominal = loads(r["own_document"]).get("nominalPeriod") or {}
            period = Period(
                date.fromisoformat(r["period_start"]),
                date.fromisoformat(r["period_end"]),
                date.fromisoformat(str(nominal.get("start", r["period_start"]))),
                date.fromisoformat(str(nominal.get("end", r["period_end"]))),
            )
            out[key] = (period, r["snap"], [])
        period, snap, billed = out[key]
        if r["snap"] is not None and (snap is None or r["snap"] > snap):
            out[key] = (period, r["snap"], billed)
        billed.append(
            BilledUsage(
                period_start=date.fromisoformat(r["period_start"]),
                period_end=date.fromisoformat(r["period_end"]),
                metric=r["metric"],
                plan=r["plan"],
                segment_start=date.fromisoformat(r["segment_start"]),
                segment_end=date.fromisoformat(r["segment_end"]),
                quantity=Decimal(r["quantity"]),
                amount=Decimal(r["amount"]),
            )
        )
    return list(out.values())


class _IngestIndex:
    """The days each committed ingest touched, by snapshot: answers "did anything arrive
    for these days after snapshot n?" without a lake query per invoice."""

    def __init__(self, lake_con: duckdb.DuckDBPyConnection) -> None:
        rows = run_query(lake_con, "SELECT snapshot_id, days FROM ingest_manifest").fetchall()
        self._rows = [(int(snap), frozenset(days or [])) for snap, days in rows]

    def changed_since(self, snapshot: int | None, start: date, end: date) -> bool:
        floor = -1 if snapshot is None else snapshot
        return any(
            snap > floor and any(start <= d <= end for d in days) for snap, days in self._rows
        )


def _rate_items(
    settings: Settings,
    items: Sequence[_Item],
    lake_con: duckdb.DuckDBPyConnection,
    state_con: sqlite3.Connection,
    book: PriceBook,
    subs: Mapping[str, list[Subscription]],
) -> dict[_Item, Rated | BillingError]:
    """Rate many (workspace, period) items with batched lake reads."""
    snapshot = Lake.current_snapshot(lake_con)
    ingests = _IngestIndex(lake_con)
    plans: dict[_Item, tuple[Account, list[PlanSpan]]] = {}
    prior: dict[_Item, list[tuple[Period, list[PlanSpan], list[BilledUsage]]]] = {}
    keys: dict[tuple[date, date, date, date], set[str]] = {}
    for item in items:
        account = book.account(item.workspace_id)
        ws_subs = subs.get(item.workspace_id, [])
        spans = plan_spans(ws_subs, item.period.start, item.period.end, account.plan)
        plans[item] = (account, spans)
        for span in spans:
            keys.setdefault(_span_key(span, item.period), set()).add(item.workspace_id)
        late: list[tuple[Period, list[PlanSpan], list[BilledUsage]]] = []
        for period, snap, billed in _prior_finalized(
            state_con, item.workspace_id, item.period.start
        ):
            if not ingests.changed_since(snap, period.start, period.end):
                continue
            pspans = plan_spans(ws_subs, period.start, period.end, account.plan)
            late.append((period, pspans, billed))
            for span in pspans:
                keys.setdefault(_span_key(span, period), set()).add(item.workspace_id)
        prior[item] = late
    quantities = _Quantities(lake_con)
    quantities.prefetch(keys, {k: next(iter(v)) for k, v in keys.items() if len(v) == 1})
    out: dict[_Item, Rated | BillingError] = {}
    for item in items:
        account, spans = plans[item]
        try:
            q = {
                k: quantities.get(k, item.workspace_id)
                for k in keys
                if item.workspace_id in keys[k]
            }
            lines, billed = _rate_spans(settings, book, account, item.period, spans, q)
            late_lines, late_billed = _late_lines(settings, book, account, prior[item], q)
            lines += late_lines
            billed += late_billed
            subtotal = sum((x.amount for x in lines), Decimal(0))
            tax = compute_tax(subtotal, account.tax_rate, account.currency)
            out[item] = Rated(
                workspace_id=item.workspace_id,
                period=item.period,
                account=account,
                currency=account.currency,
                lines=tuple(lines),
                subtotal=subtotal,
                tax=tax,
                total=subtotal + tax,
                billed=tuple(billed),
                price_book_version=book.version,
                price_book_digest=book.digest,
                lake_snapshot_id=snapshot,
            )
        except BillingError as exc:
            out[item] = exc
    return out


# --- storing -----------------------------------------------------------------------------
def _document(settings: Settings, inv: Invoice, rated: Rated | None) -> dict[str, Any]:
    doc = inv.to_json()
    if rated is not None:
        a = rated.account
        doc["billTo"] = {
            "workspaceId": a.workspace_id,
            "name": a.legal_name or a.workspace_id,
            "address": a.address,
            "email": a.email,
        }
        doc["priceBookDigest"] = rated.price_book_digest
    doc["issuer"] = {
        "name": settings.invoices.issuer_name,
        "address": settings.invoices.issuer_address,
        "email": settings.invoices.issuer_email,
    }
    return doc


def _write_invoice(
    con: sqlite3.Connection, inv: Invoice, document: Mapping[str, Any], *, insert: bool
) -> None:
    cols = {
        "id": inv.id,
        "workspace_id": inv.workspace_id,
        "period_start": inv.period_start.isoformat(),
        "period_end": inv.period_end.isoformat(),
        "kind": inv.kind,
        "status": inv.status,
        "number": inv.number,
        "currency": inv.currency,
        "subtotal": str(inv.subtotal),
        "tax_rate": str(inv.tax_rate),
        "tax": str(inv.tax),
        "total": str(inv.total),
        "total_minor": inv.total_minor,
        "price_book_version": inv.price_book_version,
        "lake_snapshot_id": inv.lake_snapshot_id,
        "document": dumps(document),
        "created_at": store.ts(inv.created_at),
        "updated_at": store.ts(inv.updated_at),
        "issued_at": store.ts(inv.issued_at) if inv.issued_at else None,
        "due_date": inv.due_date.isoformat() if inv.due_date else None,
        "finalized_at": store.ts(inv.finalized_at) if inv.finalized_at else None,
    }
    if insert:
        names = ", ".join(cols)
        marks = ", ".join("?" for _ in cols)
        con.execute(f"INSERT INTO invoices ({names}) VALUES ({marks})", list(cols.values()))
    else:
        sets = ", ".join(f"{k} = ?" for k in cols if k != "id")
        con.execute(
            f"UPDATE invoices SET {sets} WHERE id = ?",
            [v for k, v in cols.items() if k != "id"] + [inv.id],
        )
    con.execute("DELETE FROM invoice_lines WHERE invoice_id = ?", (inv.id,))
    con.executemany(
        "INSERT INTO invoice_lines (invoice_id, line_no, kind, description, metric, plan, "
        "quantity, unit, unit_price, amount, period_start, period_end, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                inv.id,
                n,
                x.kind,
                x.description,
                x.metric,
                x.plan,
                None if x.quantity is None else str(x.quantity),
                x.unit,
                None if x.unit_price is None else str(x.unit_price),
                str(x.amount),
                x.period_start.isoformat(),
                x.period_end.isoformat(),
                dumps(dict(x.detail)),
            )
            for n, x in enumerate(inv.lines, start=1)
        ],
    )


def _history(
    con: sqlite3.Connection, invoice_id: str, frm: str | None, to: str, at: datetime, reason: str
) -> None:
    con.execute(
        "INSERT INTO invoice_status_history (invoice_id, from_status, to_status, at, reason) "
        "VALUES (?, ?, ?, ?, ?)",
        (invoice_id, frm, to, store.ts(at), reason),
    )


def _live(con: sqlite3.Connection, workspace_id: str, start: date, end: date) -> Invoice | None:
    row = con.execute(
        "SELECT * FROM invoices WHERE workspace_id = ? AND period_start = ? AND period_end = ? "
        "AND status <> 'void'",
        (workspace_id, start.isoformat(), end.isoformat()),
    ).fetchone()
    return _invoice_from_row(con, row) if row else None


def _overlapping(
    con: sqlite3.Connection, workspace_id: str, start: date, end: date
) -> Invoice | None:
    row = con.execute(
        "SELECT * FROM invoices WHERE workspace_id = ? AND status <> 'void' "
        "AND period_start <= ? AND period_end >= ? AND NOT (period_start = ? AND period_end = ?)",
        (workspace_id, end.isoformat(), start.isoformat(), start.isoformat(), end.isoformat()),
    ).fetchone()
    return _invoice_from_row(con, row) if row else None


def _store_draft(
    settings: Settings, con: sqlite3.Connection, rated: Rated, now: datetime
) -> Invoice:
    """Insert or refresh the draft of (workspace, period), inside the caller's transaction."""
    p = rated.period
    existing = _live(con, rated.workspace_id, p.start, p.end)
    if existing is not None and existing.status != "draft":
        raise StateError(
            f"workspace {rated.workspace_id} already has invoice "
            f"{existing.number or existing.id} ({existing.status}) for {p.start}..{p.end}; "
            "void it to invoice that period again"
        )
    clash = _overlapping(con, rated.workspace_id, p.start, p.end)
    if clash is not None:
        raise StateError(
            f"period {p.start}..{p.end} overlaps invoice {clash.number or clash.id} "
            f"({clash.period_start}..{clash.period_end}) of workspace {rated.workspace_id}"
        )
    inv = Invoice(
        id=existing.id if existing else new_id("inv"),
        workspace_id=rated.workspace_id,
        period_start=p.start,
        period_end=p.end,
        kind=p.kind,
        status="draft",
        number=None,
        currency=rated.currency,
        subtotal=rated.subtotal,
        tax_rate=rated.account.tax_rate,
        tax=rated.tax,
        total=rated.total,
        lines=rated.lines,
        price_book_version=rated.price_book_version,
        lake_snapshot_id=rated.lake_snapshot_id,
        created_at=existing.created_at if existing else now,
        updated_at=now,
        issued_at=None,
        due_date=None,
        finalized_at=None,
        paid_at=None,
        voided_at=None,
        overdue_at=None,
        payment_intent_id=None,
        json_path=None,
        pdf_path=None,
        extra={},
    )
    doc = _document(settings, inv, rated)
    doc["nominalPeriod"] = {"start": p.nominal_start, "end": p.nominal_end}
    _write_invoice(con, inv, doc, insert=existing is None)
    stored = _as_stored(inv, doc)
    if existing is None:
        _history(con, inv.id, None, "draft", now, "created")
        _emit(con, "billing.invoice.created", stored, now)
    return stored


def _as_stored(inv: Invoice, doc: Mapping[str, Any]) -> Invoice:
    """The invoice as :func:`load_invoice` would read it back (without the round trip)."""
    return replace(
        inv,
        extra={
            "billTo": doc.get("billTo"),
            "issuer": doc.get("issuer"),
            "priceBookDigest": doc.get("priceBookDigest"),
            "nominalPeriod": doc.get("nominalPeriod"),
        },
    )


def _emit(con: sqlite3.Connection, type_: str, inv: Invoice, at: datetime) -> None:
    """The invoice's event, in the caller's transaction: the payload is the invoice JSON
    as of the change, timestamped with the change's (business) time ``at``."""
    record_event(
        con,
        type_,
        subject_id=inv.id,
        workspace_id=inv.workspace_id,
        data=inv.to_json(),
        at=at,
        recorded_at=store.utcnow(),
    )


# --- periods -----------------------------------------------------------------------------
def period_for(subs: list[Subscription], start: date, end: date) -> Period:
    """The Period for an explicit [start, end]: the billing period with exactly these
    bounds when there is one (so its nominal days are right), else [start, end] itself."""
    if end < start:
        raise InputError(f"period end {end} is before its start {start}")
    for p in billing_periods(subs, start, end):
        if p.start == start and p.end == end:
            return p
    return Period(start, end, start, end)


# --- public operations -------------------------------------------------------------------
def _now(now: datetime | None) -> datetime:
    value = now or store.utcnow()
    if value.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return value.astimezone(UTC)


def create_invoice(
    settings: Settings,
    workspace_id: str,
    start: date,
    end: date,
    *,
    now: datetime | None = None,
) -> Invoice:
    """Create (or refresh) the draft invoice of ``workspace_id`` for [start, end]."""
    result = create_invoices(settings, [(workspace_id, start, end)], now=now)[0]
    if isinstance(result, BillingError):
        raise result
    assert result is not None
    return result


def create_invoices(
    settings: Settings,
    requests: Sequence[tuple[str, date, date] | tuple[str, Period]],
    *,
    now: datetime | None = None,
    finalize: bool = False,
    skip_empty: bool = False,
) -> list[Invoice | BillingError | None]:
    """Create or refresh many drafts (and optionally finalize them) with batched reads
    and one state transaction; a failure of one workspace is returned in its place.
    With ``skip_empty`` a period with no line at all (no usage, fee, minimum or late
    usage) creates nothing and yields None."""
    now = _now(now)
    book = load_price_book(settings)
    lake = Lake(settings)
    lake_con = lake.connect(read_only=True)
    try:
        with store.opened(settings) as con:
            subs = load_subscriptions(con)
            items: list[_Item | BillingError] = []
            for req in requests:
                try:
                    ws = req[0]
                    if len(req) == 2:
                        period = req[1]
                        assert isinstance(period, Period)
                    else:
                        s, e = req[1], req[2]
                        assert isinstance(s, date) and isinstance(e, date)
                        period = period_for(subs.get(ws, []), s, e)
                    items.append(_Item(ws, period))
                except BillingError as exc:
                    items.append(exc)
            valid = [i for i in items if isinstance(i, _Item)]
            with store.transaction(con):
                rated = _rate_items(settings, valid, lake_con, con, book, subs)
                results: list[Invoice | BillingError | None] = []
                for item in items:
                    if isinstance(item, BillingError):
                        results.append(item)
                        continue
                    r = rated[item]
                    if isinstance(r, BillingError):
                        results.append(r)
                        continue
                    if skip_empty and not r.lines:
                        results.append(None)
                        continue
                    con.execute("SAVEPOINT one")
                    try:
                        inv = _store_draft(settings, con, r, now)
                        if finalize:
                            inv = _finalize_in_tx(settings, con, inv, r, now)
                        con.execute("RELEASE one")
                        results.append(inv)
                    except BillingError as exc:
                        con.execute("ROLLBACK TO one")
                        con.execute("RELEASE one")
                        results.append(exc)
    finally:
        lake_con.close()
    return results


def _next_number(settings: Settings, con: sqlite3.Connection, year: int) -> str:
    row = con.execute(
        "INSERT INTO invoice_numbers (year, last) VALUES (?, 1) "
        "ON CONFLICT (year) DO UPDATE SET last = last + 1 RETURNING last",
        (year,),
    ).fetchone()
    return f"{settings.invoices.number_prefix}-{year}-{int(row[0]):06d}"


def _finalize_in_tx(
    settings: Settings, con: sqlite3.Connection, draft: Invoice, rated: Rated, now: datetime
) -> Invoice:
    if draft.status != "draft":
        raise StateError(f"invoice {draft.number or draft.id} is {draft.status}, not a draft")
    number = _next_number(settings, con, now.year)
    due = now.date() + timedelta(days=rated.account.net_terms_days)
    inv = replace(
        draft,
        status="open",
        number=number,
        issued_at=now,
        due_date=due,
        finalized_at=now,
        updated_at=now,
    )
    doc = _document(settings, inv, rated)
    doc["nominalPeriod"] = {"start": rated.period.nominal_start, "end": rated.period.nominal_end}
    _write_invoice(con, inv, doc, insert=False)
    con.executemany(
        "INSERT INTO billed_usage (invoice_id, workspace_id, period_start, period_end, metric, "
        "plan, segment_start, segment_end, quantity, amount) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                inv.id,
                inv.workspace_id,
                b.period_start.isoformat(),
                b.period_end.isoformat(),
                b.metric,
                b.plan,
                b.segment_start.isoformat(),
                b.segment_end.isoformat(),
                str(b.quantity),
                str(b.amount),
            )
            for b in rated.billed
        ],
    )
    _history(con, inv.id, "draft", "open", now, f"finalized as {number}")
    final = _as_stored(inv, doc)
    _emit(con, "billing.invoice.finalized", final, now)
    return final


def finalize_invoice(
    settings: Settings, invoice_id: str, *, now: datetime | None = None, render: bool = True
) -> Invoice:
    """Re-rate the draft, number it, freeze it (status ``open``), and write its JSON and
    PDF once."""
    now = _now(now)
    current = get_invoice(settings, invoice_id)
    if current.status != "draft":
        raise StateError(
            f"invoice {current.number or current.id} is {current.status}; only a draft can be "
            "finalized"
        )
    result = create_invoices(
        settings,
        [(current.workspace_id, current.period_start, current.period_end)],
        now=now,
        finalize=True,
    )[0]
    if isinstance(result, BillingError):
        raise result
    assert result is not None
    if render:
        publish_invoice_files(settings, [result.id])
        result = get_invoice(settings, result.id)
    return result


def transition(
    con: sqlite3.Connection,
    invoice_id: str,
    to_status: str,
    *,
    at: datetime,
    reason: str = "",
    payment_intent_id: str | None = None,
) -> Invoice:
    """Move an invoice to ``to_status`` inside the caller's transaction (with its event)."""
    inv = load_invoice(con, invoice_id)
    if to_status not in TRANSITIONS[inv.status]:
        allowed = ", ".join(sorted(TRANSITIONS[inv.status])) or "nothing"
        raise StateError(
            f"invoice {inv.number or inv.id} is {inv.status}: it cannot become {to_status} "
            f"(allowed: {allowed})"
        )
    column = {"paid": "paid_at", "void": "voided_at", "overdue": "overdue_at"}.get(to_status)
    sets = "status = ?, updated_at = ?"
    params: list[Any] = [to_status, store.ts(at)]
    if column:
        sets += f", {column} = ?"
        params.append(store.ts(at))
    if payment_intent_id is not None:
        sets += ", payment_intent_id = ?"
        params.append(payment_intent_id)
    con.execute(f"UPDATE invoices SET {sets} WHERE id = ?", [*params, invoice_id])
    _history(con, invoice_id, inv.status, to_status, at, reason)
    updated = load_invoice(con, invoice_id)
    event = {
        "paid": "billing.invoice.paid",
        "void": "billing.invoice.voided",
        "overdue": "billing.invoice.overdue",
    }.get(to_status)
    if event:
        _emit(con, event, updated, at)
    return updated


def void_invoice(
    settings: Settings, invoice_id: str, *, reason: str = "", now: datetime | None = None
) -> Invoice:
    """Cancel an open or overdue invoice (its period can then be invoiced again)."""
    now = _now(now)
    inv = get_invoice(settings, invoice_id)
    with store.opened(settings) as con, store.transaction(con):
        return transition(con, inv.id, "void", at=now, reason=reason or "voided")


def mark_overdue(settings: Settings, *, as_of: date, now: datetime | None = None) -> list[Invoice]:
    """Every ``open`` invoice whose due date is before ``as_of`` becomes ``overdue`` (once)."""
    now = _now(now)
    with store.opened(settings) as con, store.transaction(con):
        ids = [
            r[0]
            for r in con.execute(
                "SELECT id FROM invoices WHERE status = 'open' AND due_date < ? ORDER BY due_date",
                (as_of.isoformat(),),
            )
        ]
        return [
            transition(con, i, "overdue", at=now, reason=f"unpaid after due date (as of {as_of})")
            for i in ids
        ]


# --- files -------------------------------------------------------------------------------
def invoice_basename(inv: Invoice) -> str:
    return inv.number or inv.id


def publish_invoice_files(
    settings: Settings, invoice_ids: Sequence[str] | None = None, *, processes: int | None = None
) -> list[tuple[str, str | None]]:
    """Write ``invoices/<number>.json`` and ``.pdf`` for finalized invoices that have none
    yet (all of them when ``invoice_ids`` is None): the frozen document as finalized,
    rendered in parallel. Returns (invoice id, error or None) per invoice attempted."""
    from .progress import progress
    from .render import render_many

    with store.opened(settings) as con:
        sql = (
            "SELECT id, number, document FROM invoices WHERE number IS NOT NULL "
            "AND (json_path IS NULL OR pdf_path IS NULL)"
        )
        rows = con.execute(sql).fetchall()
    wanted = set(invoice_ids) if invoice_ids is not None else None
    todo = [r for r in rows if wanted is None or r["id"] in wanted]
    if not todo:
        return []
    out_dir = settings.invoices_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    n = processes if processes is not None else settings.invoices.render_processes
    with progress(f"rendering {len(todo)} invoice(s)", total=len(todo)) as advance:
        results = render_many(
            [(loads(r["document"]), out_dir, r["number"]) for r in todo],
            processes=n,
            progress=advance,
        )
    report: list[tuple[str, str | None]] = []
    with store.opened(settings) as con, store.transaction(con):
        for r, res in zip(todo, results, strict=True):
            if res.error is None:
                con.execute(
                    "UPDATE invoices SET json_path = ?, pdf_path = ? WHERE id = ?",
                    (str(res.json_path), str(res.pdf_path), r["id"]),
                )
            report.append((r["id"], res.error))
    return report


def issue_time(run_date: date) -> datetime:
    """The business time of a nightly run for ``run_date`` (00:00 UTC that day)."""
    return datetime.combine(run_date, time(0, 0), tzinfo=UTC)


# --- explain -----------------------------------------------------------------------------
def explain_invoice(settings: Settings, invoice_id: str) -> dict[str, Any]:
    """Per line: the daily quantities, the tier arithmetic and the lake snapshot; and
    whether re-rating at that snapshot, and today, gives the same amounts."""
    from .usage import daily_quantities

    inv = get_invoice(settings, invoice_id)
    book = load_price_book(settings)
    lake = Lake(settings)
    explained: list[dict[str, Any]] = []
    con = (
        lake.connect(read_only=True, snapshot=inv.lake_snapshot_id)
        if inv.lake_snapshot_id
        else lake.connect(read_only=True)
    )
    try:
        for n, line in enumerate(inv.lines, start=1):
            entry: dict[str, Any] = {
                "line": n,
                "description": line.description,
                "amount": line.amount,
                "kind": line.kind,
            }
            if line.metric:
                daily = daily_quantities(con, inv.workspace_id, line.period_start, line.period_end)
                entry["daily"] = [
                    {"date": d, "quantity": q} for m, d, q in daily if m == line.metric
                ]
                if line.plan and line.quantity is not None and line.kind == "usage":
                    price = book.plan(line.plan).prices.get(line.metric)
                    if price is not None:
                        entry["arithmetic"] = price.rate(line.quantity, inv.currency).explain()
            elif line.detail:
                entry["detail"] = dict(line.detail)
            explained.append(entry)
    finally:
        con.close()
    recomputed_then = _rerate(settings, inv, snapshot=inv.lake_snapshot_id)
    recomputed_now = _rerate(settings, inv, snapshot=None)
    return {
        "invoice": inv.to_json(),
        "lakeSnapshotId": inv.lake_snapshot_id,
        "priceBookVersion": inv.price_book_version,
        "priceBookVersionNow": book.version,
        "priceBookChanged": inv.extra.get("priceBookDigest") not in (None, book.digest),
        "lines": explained,
        "recomputedAtSnapshot": recomputed_then,
        "recomputedToday": recomputed_now,
    }


def _rerate(settings: Settings, inv: Invoice, *, snapshot: int | None) -> dict[str, Any]:
    book = load_price_book(settings)
    lake = Lake(settings)
    con = (
        lake.connect(read_only=True, snapshot=snapshot)
        if snapshot
        else lake.connect(read_only=True)
    )
    try:
        with store.opened(settings) as scon:
            subs = load_subscriptions(scon)
            period = Period(
                inv.period_start,
                inv.period_end,
                date.fromisoformat(
                    str((inv.extra.get("nominalPeriod") or {}).get("start", inv.period_start))
                ),
                date.fromisoformat(
                    str((inv.extra.get("nominalPeriod") or {}).get("end", inv.period_end))
                ),
                inv.kind,
            )
            item = _Item(inv.workspace_id, period)
            # late lines are the billing of other periods: compare the period's own lines
            rated = _rate_items(settings, [item], con, scon, book, subs)[item]
    finally:
        con.close()
    if isinstance(rated, BillingError):
        return {"error": str(rated)}
    own = [x for x in inv.lines if x.kind != "late_usage"]
    again = [x for x in rated.lines if x.kind != "late_usage"]
    agrees = [(x.description, x.amount) for x in own] == [(x.description, x.amount) for x in again]
    return {
        "snapshot": rated.lake_snapshot_id,
        "agrees": agrees,
        "subtotal": sum((x.amount for x in again), Decimal(0)),
        "lines": [{"description": x.description, "amount": x.amount} for x in again],
    }
