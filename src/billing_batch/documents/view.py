"""The view model of an invoice document: every value the template shows, as a display
string (amounts in the currency's minor unit, dates ISO, notes for tiers, included
units and partial periods). A document that cannot be shown (a missing field, a float
amount, an unknown status or currency) is a :class:`~billing_batch.errors.RenderError`.

Every value reaches the template as text and Jinja2 escapes it (autoescape on), so a
workspace named ``<img src="file:///etc/passwd">`` prints as those characters."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from .._core import money
from .._core.errors import InputError, RenderError

_STATUS_LABELS = {
    "draft": "Draft",
    "open": "Open",
    "paid": "Paid",
    "void": "Void",
    "overdue": "Overdue",
}
_MARKS = {"draft": "DRAFT", "void": "VOID"}


def _field(doc: Mapping[str, Any], key: str, what: str = "invoice") -> Any:
    try:
        return doc[key]
    except KeyError:
        raise RenderError(f"{what}: missing {key!r}") from None


def _dec(value: Any, what: str) -> Decimal:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise RenderError(f"{what}: not a finite number: {value}")
        return value
    if isinstance(value, bool) or isinstance(value, float):
        raise RenderError(f"{what}: expected an exact number (Decimal/int), got {value!r}")
    if isinstance(value, (int, str)):
        try:
            return _dec(Decimal(value), what)
        except InvalidOperation:
            raise RenderError(f"{what}: not a number: {value!r}") from None
    raise RenderError(f"{what}: expected a number, got {type(value).__name__}")


def _opt_dec(value: Any, what: str) -> Decimal | None:
    return None if value is None else _dec(value, what)


def _datetime(value: Any, what: str) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day, tzinfo=UTC)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise RenderError(f"{what}: not an ISO date or time: {value!r}") from None
    else:
        raise RenderError(f"{what}: expected a date, got {type(value).__name__}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _date_text(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    return _datetime(value, what).date().isoformat()


def _w3c(value: Any, what: str) -> str | None:
    """A PDF metadata date (W3C profile, UTC, whole seconds) from the document."""
    if value is None:
        return None
    return _datetime(value, what).strftime("%Y-%m-%dT%H:%M:%SZ")


def display_text(value: Any) -> str:
    """A document value as display text (None: empty)."""
    return "" if value is None else str(value)


def _percent(rate: Decimal) -> str:
    pct = (rate * 100).normalize()
    return f"{pct:f}%"


def _tier_note(tier: Mapping[str, Any], currency: str, what: str) -> str | None:
    qty = _opt_dec(tier.get("quantity"), f"{what}.quantity")
    price = _opt_dec(tier.get("unitPrice"), f"{what}.unitPrice")
    if qty is None or price is None or not qty:
        return None
    flat = _opt_dec(tier.get("flatFee"), f"{what}.flatFee") or Decimal(0)
    amount = _opt_dec(tier.get("amount"), f"{what}.amount")
    if amount is None:
        amount = qty * price + flat
    low = _opt_dec(tier.get("from"), f"{what}.from")
    high = _opt_dec(tier.get("upTo"), f"{what}.upTo")
    label = f"Tier {tier['tier']}" if tier.get("tier") is not None else "Tier"
    if low is not None:
        upper = f"{money.format_quantity(high)}]" if high is not None else "∞)"
        label += f" ({money.format_quantity(low)}–{upper}"
    text = f"{label}: {money.format_quantity(qty)} × {money.format_price(price, currency)}"
    if flat:
        text += f" + {money.format_price(flat, currency)} flat"
    return f"{text} = {money.format_price(amount, currency)}"


def _line_view(
    line: Mapping[str, Any], i: int, currency: str, period: tuple[str | None, str | None]
) -> dict[str, Any]:
    what = f"lineItems[{i}]"
    amount = _dec(_field(line, "amount", what), f"{what}.amount")
    quantity = _opt_dec(line.get("quantity"), f"{what}.quantity")
    unit_price = _opt_dec(line.get("unitPrice"), f"{what}.unitPrice")
    tiers = line.get("tiers") or []
    notes: list[str] = []
    start = _date_text(line.get("periodStart"), f"{what}.periodStart")
    end = _date_text(line.get("periodEnd"), f"{what}.periodEnd")
    if (start or end) and (start, end) != period:
        notes.append(f"{start or '…'} – {end or '…'}")
    included = _opt_dec(line.get("included"), f"{what}.included")
    if included:
        notes.append(f"Includes {money.format_quantity(included)} free")
    for j, tier in enumerate(tiers):
        if not isinstance(tier, Mapping):
            raise RenderError(f"{what}.tiers[{j}]: expected an object")
        note = _tier_note(tier, currency, f"{what}.tiers[{j}]")
        if note:
            notes.append(note)
    kind = display_text(line.get("kind")) or "usage"
    if unit_price is not None:
        price_text = money.format_price(unit_price, currency)
    else:
        price_text = "tiered" if tiers else ""
    return {
        "description": display_text(_field(line, "description", what)),
        "kind": kind if re.fullmatch(r"[a-z_]{1,32}", kind) else "other",
        "quantity": money.format_quantity(quantity) if quantity is not None else "",
        # a plain count needs no unit word ("45,000", not "45,000 count")
        "unit": display_text(line.get("unit"))
        if quantity is not None and line.get("unit") != "count"
        else "",
        "unit_price": price_text,
        "amount": money.format_amount(amount, currency),
        "notes": notes,
    }


def _payment_view(doc: Mapping[str, Any], status: str, due: str | None) -> dict[str, Any]:
    payment = doc.get("payment") or {}
    if not isinstance(payment, Mapping):
        raise RenderError("payment: expected an object or null")
    paid_on = _date_text(payment.get("paidAt"), "payment.paidAt")
    labels = {
        "draft": "not issued yet (draft)",
        "open": f"awaiting payment, due {due}" if due else "awaiting payment",
        "overdue": f"overdue since {due}" if due else "overdue",
        "paid": f"paid on {paid_on}" if paid_on else "paid",
        "void": "void, nothing to pay",
    }
    notes: list[str] = []
    attempt = display_text(payment.get("status"))
    if attempt and status not in ("paid", "void"):
        notes.append(f"Last payment attempt: {attempt.replace('_', ' ')}")
    if payment.get("paymentIntentId"):
        notes.append(f"Payment reference: {payment['paymentIntentId']}")
    return {"status": status, "label": labels[status], "notes": notes}


def _status_and_currency(doc: Mapping[str, Any]) -> tuple[str, str]:
    status = display_text(_field(doc, "status"))
    if status not in _STATUS_LABELS:
        raise RenderError(f"invoice: unknown status {status!r}")
    currency = display_text(_field(doc, "currency")).upper()
    try:
        money.minor_units(currency)
    except InputError as exc:
        raise RenderError(f"invoice: {exc.message}") from None
    return status, currency


def _parties(issuer: Any, bill_to: Any, workspace: str) -> dict[str, dict[str, str]]:
    return {
        "issuer": {
            "name": display_text(issuer.get("name")),
            "address": display_text(issuer.get("address")),
            "email": display_text(issuer.get("email")),
        },
        "bill_to": {
            "name": display_text(bill_to.get("name")) or workspace,
            "address": display_text(bill_to.get("address")),
            "email": display_text(bill_to.get("email")),
            "workspace_id": workspace,
        },
    }


def _amount_due(doc: Mapping[str, Any], currency: str) -> dict[str, str]:
    """The rows "Credits applied" and "Amount due", when the amount due is not the total
    (the customer balance applied at finalization; docs/credit-notes.md)."""
    if doc.get("amountDue") is None:
        return {}
    total = _dec(_field(doc, "total"), "total")
    due = _dec(doc["amountDue"], "amountDue")
    if due == total:
        return {}
    return {
        "credits_applied": money.format_money(due - total, currency),
        "amount_due": money.format_money(due, currency),
    }


def build_view(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The template's view of an invoice document: every value a display string."""
    status, currency = _status_and_currency(doc)
    invoice_id = display_text(_field(doc, "id"))
    number = doc.get("number")
    period = _field(doc, "period")
    if not isinstance(period, Mapping):
        raise RenderError("invoice: period must be an object with start and end")
    start = _date_text(_field(period, "start", "period"), "period.start")
    end = _date_text(_field(period, "end", "period"), "period.end")
    issued = _date_text(doc.get("issuedAt"), "issuedAt")
    due = _date_text(doc.get("dueDate"), "dueDate")
    tax_rate = _dec(doc.get("taxRate", 0), "taxRate")
    bill_to = doc.get("billTo") or {}
    issuer = doc.get("issuer") or {}
    lines = _field(doc, "lineItems")
    if not isinstance(lines, Sequence) or isinstance(lines, (str, bytes)):
        raise RenderError("invoice: lineItems must be a list")
    workspace = display_text(bill_to.get("workspaceId") or doc.get("workspaceId"))
    reference = display_text(number) if number else f"Draft {invoice_id}"
    payment = doc.get("payment") or {}
    paid_at = payment.get("paidAt") if isinstance(payment, Mapping) else None
    return {
        "id": invoice_id,
        "status": status,
        "mark": _MARKS.get(status),
        "title": f"Invoice {number}" if number else f"Draft invoice {invoice_id}",
        "reference": reference,
        "currency": currency,
        "created": _w3c(doc.get("issuedAt"), "issuedAt"),
        "modified": _w3c(paid_at or doc.get("issuedAt"), "payment.paidAt"),
        **_parties(issuer, bill_to, workspace),
        "facts": [
            ("Invoice number", display_text(number) if number else "not yet numbered"),
            ("Issue date", issued or "—"),
            ("Due date", due or "—"),
            ("Billing period", f"{start} – {end}"),
            ("Currency", currency),
            ("Status", _STATUS_LABELS[status]),
        ],
        "lines": [_line_view(line, i, currency, (start, end)) for i, line in enumerate(lines)],
        "subtotal": money.format_money(_dec(_field(doc, "subtotal"), "subtotal"), currency),
        "tax_rate": _percent(tax_rate),
        "tax": money.format_money(_dec(_field(doc, "tax"), "tax"), currency),
        "total": money.format_money(_dec(_field(doc, "total"), "total"), currency),
        **_amount_due(doc, currency),
        "payment": _payment_view(doc, status, due),
        "price_book_version": display_text(doc.get("priceBookVersion")),
        "snapshot": display_text(doc.get("lakeSnapshotId")),
    }


__all__ = ["build_view", "display_text"]
