"""The credit note's files: its view model (every value a display string, as
:mod:`.view` does for invoices), its PDF (the same base layout and partials, template
``credit_note.html.j2``, deterministic, fetching nothing outside the templates) and its
JSON, both written atomically (``invoices/<number>.json|pdf``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2

from .._core import jsonutil, money
from .._core.errors import InputError, RenderError
from .._core.files import atomic_write_files
from ..config.settings import TEMPLATES_DIR
from .pdf import _BETWEEN_TAGS, _jinja, html_to_pdf, pdf_identifier
from .view import _dec, _field, _parties, _percent, display_text

CREDIT_NOTE_TEMPLATE = "credit_note.html.j2"

_REASONS = {
    "duplicate": "Duplicate charge",
    "product_unsatisfactory": "Product unsatisfactory",
    "order_change": "Order change",
    "other": "Other",
}
_SETTLEMENTS = {
    "amount_due": "Deducted from the invoice's amount due",
    "refund": "Refunded to the original payment method",
    "balance": "Credited to the customer balance (applied to the next invoice)",
}


def _line(line: Mapping[str, Any], i: int, currency: str) -> dict[str, Any]:
    what = f"lineItems[{i}]"
    quantity = line.get("quantity")
    ref = line.get("invoiceLineNo")
    return {
        "description": display_text(_field(line, "description", what)),
        "kind": "credit",
        "quantity": money.format_quantity(_dec(quantity, what)) if quantity is not None else "",
        "unit": "",
        "unit_price": "",
        "amount": money.format_amount(_dec(_field(line, "amount", what), what), currency),
        "notes": [f"Invoice line {ref}"] if ref is not None else [],
    }


def build_credit_note_view(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The template's view of a credit note document."""
    currency = display_text(_field(doc, "currency", "credit note")).upper()
    try:
        money.minor_units(currency)
    except InputError as exc:
        raise RenderError(f"credit note: {exc.message}") from None
    number = display_text(_field(doc, "number", "credit note"))
    lines = _field(doc, "lineItems", "credit note")
    if not isinstance(lines, Sequence) or isinstance(lines, (str, bytes)):
        raise RenderError("credit note: lineItems must be a list")
    issued = display_text(_field(doc, "issuedAt", "credit note"))[:10]
    subtotal = _dec(_field(doc, "subtotal", "credit note"), "subtotal")
    tax = _dec(_field(doc, "tax", "credit note"), "tax")
    rate = _dec(doc.get("taxRate", 0), "taxRate")
    workspace = display_text(doc.get("workspaceId"))
    reason = display_text(doc.get("reason"))
    memo = display_text(doc.get("memo"))
    return {
        "id": display_text(_field(doc, "id", "credit note")),
        "status": "credit-note",
        "mark": None,
        "title": f"Credit note {number}",
        "reference": number,
        "currency": currency,
        **_parties(doc.get("issuer") or {}, doc.get("billTo") or {}, workspace),
        "facts": [
            ("Credit note number", number),
            ("Issue date", issued),
            ("Invoice", display_text(doc.get("invoiceNumber"))),
            ("Reason", _REASONS.get(reason, reason)),
            ("Currency", currency),
        ],
        "memo": memo,
        "settlement": _SETTLEMENTS.get(display_text(doc.get("settlement")), ""),
        "lines": [_line(x, i, currency) for i, x in enumerate(lines)],
        "subtotal": money.format_money(subtotal, currency),
        "tax_rate": _percent(rate),
        "tax": money.format_money(tax, currency),
        "total": money.format_money(_dec(_field(doc, "total", "credit note"), "total"), currency),
    }


def render_credit_note_html(doc: Mapping[str, Any], templates_dir: Path = TEMPLATES_DIR) -> str:
    view = build_credit_note_view(doc)
    try:
        template = _jinja(templates_dir).get_template(CREDIT_NOTE_TEMPLATE)
        return template.render(v=view, stylesheet_href="")
    except jinja2.TemplateError as exc:
        raise RenderError(f"credit note {view['id']}: template error: {exc}") from exc


def render_credit_note_pdf(doc: Mapping[str, Any]) -> bytes:
    """The credit note as PDF bytes (deterministic)."""
    html = _BETWEEN_TAGS.sub("><", render_credit_note_html(doc))
    return html_to_pdf(
        html, identifier=pdf_identifier(doc), what=f"credit note {display_text(doc.get('id'))}"
    )


def write_credit_note_files(doc: Mapping[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write ``<number>.json`` and ``<number>.pdf`` into ``out_dir``, each atomically,
    both produced in memory first. Returns (json_path, pdf_path)."""
    number = display_text(doc.get("number"))
    if not number.startswith("CN-") or "/" in number:
        raise RenderError(f"not a credit note number: {number!r}")
    pdf = render_credit_note_pdf(doc)
    text = jsonutil.dumps(doc, indent=2) + "\n"
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, pdf_path = out_dir / f"{number}.json", out_dir / f"{number}.pdf"
    atomic_write_files([(json_path, text.encode("utf-8")), (pdf_path, pdf)])
    return json_path, pdf_path


__all__ = [
    "CREDIT_NOTE_TEMPLATE",
    "build_credit_note_view",
    "render_credit_note_html",
    "render_credit_note_pdf",
    "write_credit_note_files",
]
