"""``/v1/billing/credit_notes`` (admin): issue, get and list credit notes
(docs/credit-notes.md). The body is read with exact decimals (``jsonutil.loads``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from .._core.errors import InputError
from .._core.jsonutil import loads
from .._core.money import parse_decimal
from ..invoicing import credit_notes
from ..invoicing.credit_note_model import CreditLine
from .deps import PrincipalDep, SettingsDep
from .errors import COMMON_RESPONSES
from .json import JSONResponse

router = APIRouter(
    prefix="/v1/billing/credit_notes", tags=["credit notes"], responses=COMMON_RESPONSES
)

NoteId = Annotated[str, PathParam(min_length=1, max_length=128)]


def _lines(raw: Any) -> list[CreditLine] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise InputError("lines: expected a list of {line, quantity | amount}")
    out = []
    for i, item in enumerate(raw):
        line = item.get("line") if isinstance(item, Mapping) else None
        if not isinstance(line, int) or isinstance(line, bool):
            raise InputError(f"lines[{i}]: expected {{line: N, quantity | amount}}")
        q, a = item.get("quantity"), item.get("amount")
        out.append(
            CreditLine(
                line,
                quantity=None if q is None else parse_decimal(q, what=f"lines[{i}].quantity"),
                amount=None if a is None else parse_decimal(a, what=f"lines[{i}].amount"),
            )
        )
    return out


def _issue(settings: Any, body: Mapping[str, Any]) -> dict[str, Any]:
    amount = body.get("amount")
    note = credit_notes.issue_credit_note(
        settings,
        str(body.get("invoiceId") or ""),
        reason=str(body.get("reason") or ""),
        lines=_lines(body.get("lines")),
        amount=None if amount is None else parse_decimal(amount, what="amount"),
        refund=bool(body.get("refund")),
        memo=str(body.get("memo") or ""),
    )
    return note.to_json()


@router.post(
    "",
    status_code=201,
    summary="Issue a credit note (admin)",
    description="Body: `invoiceId`, `reason` (duplicate | product_unsatisfactory | "
    "order_change | other), and `lines` ([{line, quantity | amount}]) or `amount` (a lump "
    "before tax) or neither (all that is left); `refund: true` refunds a paid invoice "
    "through Stripe (else its credit goes to the customer balance); `memo`.",
)
async def create_credit_note(
    request: Request, settings: SettingsDep, principal: PrincipalDep
) -> Response:
    principal.require_admin("issuing a credit note")
    try:
        body = loads(await request.body() or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"the body is not JSON: {exc}") from None
    if not isinstance(body, Mapping):
        raise InputError("the body must be a JSON object")
    note = await run_in_threadpool(_issue, settings, body)
    return JSONResponse(note, status_code=201)


@router.get("/{note_id}", summary="Get a credit note (admin)")
def get_credit_note(note_id: NoteId, settings: SettingsDep, principal: PrincipalDep) -> Response:
    principal.require_admin("reading credit notes")
    return JSONResponse(credit_notes.get_credit_note(settings, note_id).to_json())


@router.get("", summary="List credit notes (admin)")
def list_credit_notes(
    settings: SettingsDep,
    principal: PrincipalDep,
    workspace_id: Annotated[str | None, Query(alias="workspaceId", max_length=128)] = None,
    invoice_id: Annotated[str | None, Query(alias="invoiceId", max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    principal.require_admin("reading credit notes")
    notes = credit_notes.list_credit_notes(
        settings, workspace_id=workspace_id, invoice_id=invoice_id, limit=limit
    )
    return JSONResponse({"data": [n.to_json() for n in notes]})


__all__ = ["router"]
