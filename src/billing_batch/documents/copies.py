"""An invoice's PDF as the CLI and the HTTP API hand it out, in one of two copies:

* ``current``: rendered now from the invoice as it is (its status now: "Paid" once
  paid, the payment reference);
* ``original``: the archival copy written once at finalization
  (``invoices/<number>.pdf``), which keeps stating the status it had then ("Open"); if
  the file is missing it is rendered again from the document frozen at finalization,
  byte for byte the same.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._core.errors import InputError, RenderError, StateError, StorageError
from ..config.settings import Settings
from ..invoicing.model import Invoice, invoice_basename
from ..invoicing.store import frozen_document
from ..storage import state
from ..storage.files import area
from .pdf import render_pdf
from .view import display_text

log = logging.getLogger(__name__)

#: The copies :func:`invoice_pdf` serves.
PDF_COPIES: tuple[str, ...] = ("current", "original")


@dataclass(frozen=True)
class InvoicePdf:
    """One copy of an invoice's PDF."""

    data: bytes
    #: ``current`` (rendered now, the invoice's status now) or ``original`` (the archival
    #: copy written at finalization, its status then).
    copy: str
    #: The status the document states (``paid``; an original usually says ``open``).
    status: str
    #: A download name: ``INV-2024-000001.pdf``, ``INV-2024-000001-original.pdf``.
    filename: str


def _archived_pdf(settings: Settings, inv: Invoice) -> bytes | None:
    """The PDF written at finalization, found under this home's invoices folder (the
    stored absolute path is a fallback: a moved or copied home keeps working)."""
    invoices = area(settings, "invoices")
    if invoices.remote:  # object storage: the home's own key, nothing else
        try:
            data = invoices.read_bytes(f"{invoice_basename(inv)}.pdf")
        except FileNotFoundError:
            return None
        except StorageError as exc:
            log.warning("invoice %s: %s", inv.id, exc)
            return None
        return data if data.startswith(b"%PDF-") else None
    candidates = [settings.invoices_dir / f"{invoice_basename(inv)}.pdf"]
    if inv.pdf_path and Path(inv.pdf_path) != candidates[0]:
        candidates.append(Path(inv.pdf_path))
    for path in candidates:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("invoice %s: cannot read %s (%s)", inv.id, path, exc)
            continue
        if data.startswith(b"%PDF-"):
            return data
        log.warning("invoice %s: %s is not a PDF; rendering the original again", inv.id, path)
    return None


def _frozen_document(settings: Settings, inv: Invoice) -> dict[str, Any]:
    """The invoice document as frozen at finalization (what the original was rendered
    from)."""
    with state.opened(settings) as con:
        doc = frozen_document(con, inv.id)
    if doc is None:
        raise RenderError(f"invoice {inv.number or inv.id}: no frozen document to render")
    return doc


def invoice_pdf(settings: Settings, inv: Invoice, copy: str = "current") -> InvoicePdf:
    """An invoice's PDF: ``current`` (default) is rendered now from the invoice as it is
    (status, payment), exactly like ``billing-batch invoice get ID --pdf``; ``original``
    is the archival copy written once at finalization (re-rendered from the frozen
    document, byte for byte the same, if the file is missing). A draft has no original
    (StateError)."""
    if copy not in PDF_COPIES:
        raise InputError(f"copy must be one of {', '.join(PDF_COPIES)}, got {copy!r}")
    name = invoice_basename(inv)
    if copy == "current":
        return InvoicePdf(render_pdf(inv.to_json()), "current", inv.status, f"{name}.pdf")
    if inv.number is None or inv.status == "draft":
        raise StateError(
            f"invoice {inv.id} is a draft: it has no original yet (one is archived when it "
            "is finalized); the current copy is the draft"
        )
    data = _archived_pdf(settings, inv)
    doc = _frozen_document(settings, inv)
    if data is None:
        log.warning("invoice %s: archived PDF missing; rendering the original again", name)
        data = render_pdf(doc)
    return InvoicePdf(data, "original", display_text(doc.get("status")), f"{name}-original.pdf")


__all__ = ["PDF_COPIES", "InvoicePdf", "invoice_pdf"]
