"""Three-way reconciliation: lake usage ↔ invoices ↔ Stripe (docs/payments.md,
"Reconciliation"). ``billing-batch reconcile [--period YYYY-MM]``; the nightly runs it
when Stripe is configured.

* **usage ↔ invoices**: the audit (``now`` mode); every unexplained difference is a
  ``usage_vs_invoices`` mismatch.
* **invoices ↔ Stripe** (when ``STRIPE_API_KEY`` is set), per finalized invoice of the
  period: a paid invoice with something due has one succeeded PaymentIntent, the one it
  records, for exactly its amount due (``paid_without_payment``, ``payment_not_found``,
  ``payment_not_succeeded``, ``payment_amount``, ``duplicate_payment``); an unpaid or
  void invoice has no succeeded PaymentIntent (``unrecorded_payment``); each refund of
  ours is at Stripe, succeeded when ours is, for its credit note's total
  (``refund_not_found``, ``refund_status``, ``refund_amount``); and Stripe has no refund
  of the invoice's payment that no credit note explains (``refund_without_credit_note``).

Every run is recorded (``reconcile_runs``, ``reconcile_findings``, mirrored into the lake
for analysts).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from .._core import clock
from .._core.errors import InputError, PaymentRefusedError
from .._core.ids import new_id
from .._core.money import to_minor
from ..config.settings import Settings
from ..storage import state


@dataclass(frozen=True)
class Mismatch:
    kind: str
    message: str
    invoice_id: str | None = None
    reference: str | None = None
    expected: str | None = None
    found: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "invoiceId": self.invoice_id,
            "reference": self.reference,
            "expected": self.expected,
            "found": self.found,
            "message": self.message,
        }


@dataclass
class ReconcileReport:
    reconcile_id: str
    period: tuple[date, date] | None
    stripe_checked: bool
    invoices_checked: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        kinds: dict[str, int] = {}
        for m in self.mismatches:
            kinds[m.kind] = kinds.get(m.kind, 0) + 1
        return {
            "reconcileId": self.reconcile_id,
            "period": {"start": self.period[0], "end": self.period[1]} if self.period else None,
            "stripeChecked": self.stripe_checked,
            "invoicesChecked": self.invoices_checked,
            "mismatchCount": len(self.mismatches),
            "byKind": kinds,
            "mismatches": [m.to_json() for m in self.mismatches],
        }


def parse_period(text: str) -> tuple[date, date]:
    """``YYYY-MM`` as (first day, last day)."""
    try:
        year, month = (int(x) for x in text.split("-"))
        start = date(year, month, 1)
    except ValueError:
        raise InputError(f"--period {text!r}: expected YYYY-MM") from None
    return start, date(year, month, calendar.monthrange(year, month)[1])


def _usage(settings: Settings, period: tuple[date, date] | None) -> Iterable[Mismatch]:
    from .audit import audit, describe

    report = audit(settings)
    for finding in report.unexplained:
        if period and not period[0] <= finding.period_start <= period[1]:
            continue
        (text,) = describe([finding])
        yield Mismatch("usage_vs_invoices", text, reference=finding.workspace_id)


def _minor(row: Any) -> int:
    due = row["amount_due"] if row["amount_due"] is not None else row["total"]
    return to_minor(Decimal(due), row["currency"])


def _payments(gw: Any, row: Any) -> Iterable[Mismatch]:
    from ..payments.stripe_gateway import stripe_amount

    inv, name = row["id"], row["number"]
    intents = gw.payment_intents_of_invoice(inv)
    succeeded = [pi for pi in intents if pi.get("status") == "succeeded"]
    due = stripe_amount(_minor(row), row["currency"])
    if row["status"] != "paid":
        for pi in succeeded:
            yield Mismatch(
                "unrecorded_payment",
                f"invoice {name} is {row['status']} but PaymentIntent {pi['id']} succeeded",
                inv,
                pi["id"],
                row["status"],
                "succeeded",
            )
        return
    if due > 0 and not row["payment_intent_id"]:
        yield Mismatch(
            "paid_without_payment",
            f"invoice {name} is paid without a PaymentIntent",
            inv,
            None,
            str(due),
            None,
        )
    if len(succeeded) > 1:
        ids = ", ".join(sorted(pi["id"] for pi in succeeded))
        yield Mismatch(
            "duplicate_payment",
            f"invoice {name} has {len(succeeded)} succeeded PaymentIntents: {ids}",
            inv,
            ids,
            "1",
            str(len(succeeded)),
        )
    pid = row["payment_intent_id"]
    if pid and (due != 0 or succeeded):
        yield from _recorded_intent(gw, row, pid, due)


def _recorded_intent(gw: Any, row: Any, pid: str, due: int) -> Iterable[Mismatch]:
    """The PaymentIntent a paid invoice records: at Stripe, succeeded, for its amount due."""
    inv, name = row["id"], row["number"]
    try:
        pi = gw.retrieve_payment_intent(pid)
    except PaymentRefusedError:
        yield Mismatch(
            "payment_not_found", f"invoice {name}: Stripe has no PaymentIntent {pid}", inv, pid
        )
        return
    if pi.get("status") != "succeeded":
        yield Mismatch(
            "payment_not_succeeded",
            f"invoice {name} is paid but PaymentIntent {pid} is {pi.get('status')}",
            inv,
            pid,
            "succeeded",
            str(pi.get("status")),
        )
    received = int(pi.get("amount_received") or 0)
    if received != due:
        yield Mismatch(
            "payment_amount",
            f"invoice {name}: PaymentIntent {pid} received {received}, the amount due is {due}",
            inv,
            pid,
            str(due),
            str(received),
        )


def _refunds(gw: Any, row: Any, ours: list[dict[str, Any]]) -> Iterable[Mismatch]:
    pid, name = row["payment_intent_id"], row["number"]
    theirs = {r["id"]: r for r in gw.list_refunds(pid)} if pid else {}
    explained: set[str] = set()
    for r in ours:
        at_stripe = _stripe_refund_of(theirs, r)
        if at_stripe is None:
            if r["status"] != "failed":
                yield Mismatch(
                    "refund_not_found",
                    f"invoice {name}: refund {r['id']} of credit "
                    f"note {r['creditNoteNumber']} is not at Stripe",
                    row["id"],
                    r["id"],
                    r["status"],
                    None,
                )
            continue
        explained.add(at_stripe["id"])
        yield from _refund_agrees(row, r, at_stripe)
    for rid, t in theirs.items():
        if rid not in explained:
            yield Mismatch(
                "refund_without_credit_note",
                f"invoice {name}: Stripe refund {rid} ({t.get('amount')}) matches no credit note",
                row["id"],
                rid,
                None,
                str(t.get("amount")),
            )


def _stripe_refund_of(theirs: dict[str, Any], r: dict[str, Any]) -> Any:
    """Stripe's refund for our refund ``r``: by its id, else by its credit note's id in
    the refund's metadata (a refund whose id we never recorded)."""
    ref = r["stripeRefundId"]
    if ref and ref in theirs:
        return theirs[ref]
    return next(
        (
            t
            for t in theirs.values()
            if (t.get("metadata") or {}).get("credit_note_id") == r["creditNoteId"]
        ),
        None,
    )


def _refund_agrees(row: Any, r: dict[str, Any], at_stripe: Any) -> Iterable[Mismatch]:
    """Our refund ``r`` and Stripe's: the same amount, the same status."""
    from ..payments.stripe_gateway import stripe_amount

    name = row["number"]
    expected = stripe_amount(int(r["creditNoteTotalMinor"]), r["currency"])
    if int(at_stripe.get("amount") or 0) != expected:
        yield Mismatch(
            "refund_amount",
            f"invoice {name}: Stripe refund {at_stripe['id']} is "
            f"{at_stripe.get('amount')}, credit note {r['creditNoteNumber']} "
            f"{expected}",
            row["id"],
            at_stripe["id"],
            str(expected),
            str(at_stripe.get("amount")),
        )
    status = {"succeeded": "succeeded", "failed": "failed", "canceled": "failed"}.get(
        str(at_stripe.get("status")), "pending"
    )
    if status != r["status"]:
        yield Mismatch(
            "refund_status",
            f"invoice {name}: refund {r['id']} is {r['status']} "
            f"here, {at_stripe.get('status')} at Stripe",
            row["id"],
            at_stripe["id"],
            r["status"],
            str(at_stripe.get("status")),
        )


def _save(settings: Settings, report: ReconcileReport, now: datetime) -> None:
    with state.opened(settings) as con, state.transaction(con):
        state.query(
            con,
            "reconcile/insert_reconcile_run",
            {
                "reconcile_id": report.reconcile_id,
                "at": clock.ts(now),
                "period_start": report.period[0].isoformat() if report.period else None,
                "period_end": report.period[1].isoformat() if report.period else None,
                "findings": len(report.mismatches),
            },
        )
        state.query_many(
            con,
            "reconcile/insert_reconcile_finding",
            [
                {
                    "reconcile_id": report.reconcile_id,
                    "kind": m.kind,
                    "invoice_id": m.invoice_id,
                    "reference": m.reference,
                    "expected": m.expected,
                    "found": m.found,
                    "message": m.message,
                }
                for m in report.mismatches
            ],
        )


def reconcile(
    settings: Settings,
    *,
    period: tuple[date, date] | None = None,
    http_client: Any = None,
    now: datetime | None = None,
) -> ReconcileReport:
    """Reconcile the invoices of ``period`` (by period start; None: all) with the lake
    and, when Stripe is configured, with Stripe; record and return every mismatch."""
    from ..payments.refunds import list_refunds
    from ..payments.stripe_gateway import StripeGateway, stripe_configured

    now = clock.aware(now)
    report = ReconcileReport(new_id("rec"), period, stripe_configured(settings))
    report.mismatches.extend(_usage(settings, period))
    bounds = {
        "start": period[0].isoformat() if period else None,
        "end": period[1].isoformat() if period else None,
    }
    with state.opened(settings) as con:
        rows = state.query(con, "reconcile/invoices_to_reconcile", bounds).fetchall()
    report.invoices_checked = len(rows)
    if report.stripe_checked:
        refunds_by_invoice: dict[str, list[dict[str, Any]]] = {}
        for r in list_refunds(settings):
            refunds_by_invoice.setdefault(r["invoiceId"], []).append(r)
        with StripeGateway(settings, http_client) as gw:
            for row in rows:
                report.mismatches.extend(_payments(gw, row))
                ours = refunds_by_invoice.get(row["id"], [])
                if row["status"] == "paid" and (ours or row["payment_intent_id"]):
                    report.mismatches.extend(_refunds(gw, row, ours))
    _save(settings, report, now)
    return report


__all__ = ["Mismatch", "ReconcileReport", "parse_period", "reconcile"]
