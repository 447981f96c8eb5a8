"""``/v1/billing/invoices``: create (draft), get, list, pay, PDF; finalize and void (admin)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, Body, Query
from fastapi import Path as PathParam
from starlette.responses import Response

from .._core.errors import InputError, RenderError
from ..config.settings import Settings
from ..invoicing import service as invoices
from .auth import Principal
from .deps import PrincipalDep, SettingsDep
from .errors import COMMON_RESPONSES, billing_error_response
from .json import JSONResponse
from .models import (
    MAX_RANGE_DAYS,
    CreateInvoice,
    Invoice,
    InvoiceList,
    PayInvoice,
    Payment,
    Status,
    VoidInvoice,
    WorkspaceId,
)

if TYPE_CHECKING:
    from ..payments.attempts import PaymentResult

log = logging.getLogger("billing_batch.api")

router = APIRouter(prefix="/v1/billing/invoices", tags=["invoices"], responses=COMMON_RESPONSES)

InvoiceId = Annotated[
    str,
    PathParam(
        min_length=1,
        max_length=128,
        description="Invoice id (`inv_...`) or number (`INV-2024-000001`)",
        examples=["inv_abc"],
    ),
]


def visible_invoice(settings: Settings, principal: Principal, invoice_id: str) -> invoices.Invoice:
    """The invoice, when this key may see it; another workspace's is NotFoundError, with
    the very message of a missing one."""
    inv = invoices.get_invoice(settings, invoice_id)
    principal.check_read(inv.workspace_id, f"no invoice {invoice_id!r}")
    return inv


@router.post(
    "",
    response_model=Invoice,
    status_code=201,
    summary="Create (or refresh) the draft invoice of a workspace and period",
    description=(
        "The seed's createInvoice: rates the workspace's usage for the period (inclusive "
        "dates, at most "
        f"{MAX_RANGE_DAYS} days) into a draft. 201 when the draft is new; 200 when an "
        "existing draft of the same period was refreshed (same id). 409 when the period "
        "already has a finalized invoice or overlaps one."
    ),
    responses={200: {"model": Invoice, "description": "An existing draft, refreshed"}},
)
def create_invoice(
    body: CreateInvoice,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> Response:
    principal.check_write(body.workspaceId)
    start, end = body.period.start, body.period.end
    if end >= start and (end - start).days + 1 > MAX_RANGE_DAYS:
        raise InputError(f"an invoice period spans at most {MAX_RANGE_DAYS} days")
    now = datetime.now(UTC)
    inv = invoices.create_invoice(settings, body.workspaceId, start, end, now=now)
    return JSONResponse(inv.to_json(), status_code=201 if inv.created_at == now else 200)


@router.get(
    "",
    response_model=InvoiceList,
    summary="List invoices",
    description=(
        "Invoices by period, optionally of one workspace and status. A workspace key lists "
        "its own workspace (404 for another one)."
    ),
)
def list_invoices(
    settings: SettingsDep,
    principal: PrincipalDep,
    workspace_id: Annotated[WorkspaceId | None, Query(alias="workspaceId")] = None,
    status: Annotated[Status | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    if workspace_id is None:
        workspace_id = principal.workspace
    else:
        principal.check_read(workspace_id, f"no workspace {workspace_id!r}")
    found = invoices.list_invoices(
        settings, workspace_id=workspace_id, status=status, limit=limit + 1
    )
    return JSONResponse(
        {"data": [i.to_json() for i in found[:limit]], "hasMore": len(found) > limit}
    )


@router.get("/{invoice_id}", response_model=Invoice, summary="Get an invoice")
def get_invoice(invoice_id: InvoiceId, settings: SettingsDep, principal: PrincipalDep) -> Response:
    return JSONResponse(visible_invoice(settings, principal, invoice_id).to_json())


@router.get(
    "/{invoice_id}/pdf",
    response_class=Response,
    summary="Download an invoice as PDF (current status, or the archived original)",
    description=(
        "`copy=current` (default): the invoice rendered now, stating its status now "
        '("Paid" once paid), the same PDF as `billing-batch invoice get ID --pdf`. '
        "`copy=original`: the archival copy written once when the invoice was finalized, "
        'unchanged since (it states the status it had then, usually "Open"); a draft '
        "has none (409). Headers say which one it is: `X-Invoice-Copy` (`current` or "
        "`original`) and `X-Invoice-Status` (the status the document states)."
    ),
    responses={
        200: {
            "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
            "description": "The invoice PDF",
            "headers": {
                "X-Invoice-Copy": {
                    "description": "`current` or `original`",
                    "schema": {"type": "string", "enum": ["current", "original"]},
                },
                "X-Invoice-Status": {
                    "description": "The invoice status the document states",
                    "schema": {"type": "string"},
                },
            },
        }
    },
)
def get_invoice_pdf(
    invoice_id: InvoiceId,
    settings: SettingsDep,
    principal: PrincipalDep,
    copy: Annotated[
        Literal["current", "original"],
        Query(description="`current` (default): status now; `original`: archived at finalize"),
    ] = "current",
) -> Response:
    from ..documents.copies import invoice_pdf

    inv = visible_invoice(settings, principal, invoice_id)
    pdf = invoice_pdf(settings, inv, copy)
    if not pdf.data.startswith(b"%PDF-"):
        raise RenderError(f"invoice {inv.id}: the {pdf.copy} copy is not a PDF")
    return Response(
        pdf.data,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{pdf.filename}"',
            "X-Invoice-Copy": pdf.copy,
            "X-Invoice-Status": pdf.status,
            "Cache-Control": "no-store" if pdf.copy == "current" else "private, max-age=86400",
        },
    )


@router.post(
    "/{invoice_id}/pay",
    response_model=Payment,
    summary="Pay an invoice (Stripe); a draft is finalized first",
    description=(
        "The seed's payInvoice: charges the invoice through Stripe with `paymentMethod` "
        "(default: the workspace's). As on Stripe, paying a `draft` finalizes it first "
        "(numbered, frozen, `open`), then charges it (`finalized: true` in the answer); a "
        "workspace key pays its own workspace's invoices (another's is 404). 400 when Stripe "
        "refuses the request, with Stripe's code (an unknown payment method is "
        "`resource_missing`, `param: paymentMethod`) or when there is no payment method "
        "(`no_payment_method`); 402 when the card is declined or needs the customer "
        "(3-D Secure); 409 for a paid or void invoice; 503 when Stripe is not configured; "
        "502 when Stripe cannot be reached."
    ),
    responses={
        202: {"model": Payment, "description": "Stripe's answer is not known yet"},
        400: COMMON_RESPONSES[400]
        | {"description": "Stripe refused the request (its code), or no payment method"},
        402: COMMON_RESPONSES[400] | {"description": "Declined, or the customer must act"},
        502: COMMON_RESPONSES[500] | {"description": "Stripe failed or could not be reached"},
        503: COMMON_RESPONSES[500] | {"description": "Payments are not configured"},
    },
)
def pay_invoice(
    invoice_id: InvoiceId,
    settings: SettingsDep,
    principal: PrincipalDep,
    body: Annotated[PayInvoice | None, Body()] = None,
) -> Response:
    from ..payments.charging import pay_invoice as pay

    inv = visible_invoice(settings, principal, invoice_id)
    result = pay(settings, inv.id, payment_method=body.paymentMethod if body else None)
    return payment_response(result)


def payment_response(result: PaymentResult) -> Response:
    """200 paid; 202 not known yet (resolved later); otherwise the error answer of the
    outcome (``PaymentResult.error``: 402 declined or the customer must act, 400 when
    Stripe refused the request, with Stripe's code; 502 when Stripe was unavailable),
    carrying the recorded attempt as ``payment``."""
    payment = result.to_json()
    if result.succeeded:
        return JSONResponse(payment)
    error = result.error()
    if error is None:  # pending: Stripe's answer is not known yet
        return JSONResponse(payment, status_code=202)
    return billing_error_response(error, errorCode=result.error_code, payment=payment)


@router.post(
    "/{invoice_id}/finalize",
    response_model=Invoice,
    summary="Finalize a draft (admin)",
    description="Numbers and freezes a draft (status `open`) and writes its JSON and PDF.",
)
def finalize_invoice(
    invoice_id: InvoiceId,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> Response:
    principal.require_admin("finalizing an invoice")
    inv = invoices.finalize_invoice(settings, invoice_id)
    return JSONResponse(inv.to_json())


@router.post(
    "/{invoice_id}/void",
    response_model=Invoice,
    summary="Void an open or overdue invoice (admin)",
)
def void_invoice(
    invoice_id: InvoiceId,
    settings: SettingsDep,
    principal: PrincipalDep,
    body: Annotated[VoidInvoice | None, Body()] = None,
) -> Response:
    principal.require_admin("voiding an invoice")
    inv = invoices.void_invoice(settings, invoice_id, reason=body.reason if body else "")
    return JSONResponse(inv.to_json())
