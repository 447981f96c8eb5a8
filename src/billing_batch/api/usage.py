"""``POST /v1/billing/usage`` (recordUsage) and ``GET /v1/billing/usage`` (getUsage)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from .._core.errors import UsageQueryError
from ..usage import queries as usage
from ..usage.recording import MAX_BODY_BYTES, MAX_EVENTS, append_usage, prepare_usage
from .deps import PrincipalDep, SettingsDep
from .errors import COMMON_RESPONSES, ApiError
from .json import JSONResponse
from .models import (
    MAX_RANGE_DAYS,
    WORKSPACE_PATTERN,
    ApiDate,
    Usage,
    UsageAccepted,
    UsageAll,
)

router = APIRouter(prefix="/v1/billing/usage", tags=["usage"], responses=COMMON_RESPONSES)

_RECORD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/UsageEvent"},
                        {"$ref": "#/components/schemas/UsageBatch"},
                    ]
                },
                "examples": {
                    "one": {
                        "summary": "One event (the seed's recordUsage)",
                        "value": {
                            "workspaceId": "ws_123",
                            "metric": "api_calls",
                            "quantity": 1000,
                            "timestamp": "2024-01-15T10:00:00Z",
                        },
                    },
                    "batch": {
                        "summary": "A batch, recorded all or none",
                        "value": {
                            "events": [
                                {
                                    "id": "evt_1",
                                    "workspaceId": "ws_123",
                                    "metric": "api_calls",
                                    "quantity": 1500,
                                    "timestamp": "2024-01-15T10:00:00Z",
                                },
                                {
                                    "id": "evt_2",
                                    "workspaceId": "ws_123",
                                    "metric": "storage",
                                    "quantity": 12.5,
                                    "timestamp": "2024-01-15T10:00:00+01:00",
                                },
                            ]
                        },
                    },
                },
            }
        },
    }
}


async def _read_body(request: Request) -> bytes:
    too_large = ApiError(
        413, "payload_too_large", f"the request body is larger than {MAX_BODY_BYTES} bytes"
    )
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "",
    status_code=202,
    response_model=UsageAccepted,
    summary="Record usage (one event or a batch)",
    description=(
        "Validates each event exactly like ingest (same rules, same messages) and, when "
        "every event is valid, appends them durably to the landing zone before answering "
        "202. A request with any invalid event records nothing (400 `invalid_usage`, "
        "with each invalid event's `index` and `reason`). At most "
        f"{MAX_EVENTS} events and {MAX_BODY_BYTES} bytes per request (413 beyond).\n\n"
        "Idempotency: an event's `id` is its de-duplication key. Events without an `id` "
        "get one derived from the `Idempotency-Key` header, the workspace and the event's "
        "index, so a retried request is recorded once; without the header each event gets "
        "a new id.\n\n"
        "Recorded usage shows in `GET /v1/billing/usage` after the next ingest "
        "(`billing-batch ingest` or the nightly run).\n\n"
        "A workspace key may record usage for its own workspace only (403 otherwise)."
    ),
    openapi_extra=_RECORD_BODY,
    responses={413: COMMON_RESPONSES[400] | {"description": "The request body is too large"}},
)
async def record_usage(
    request: Request,
    settings: SettingsDep,
    principal: PrincipalDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Retry key (1-255 printable ASCII characters): events without an "
            "`id` get ids derived from it",
            json_schema_extra={"pattern": r"^[!-~][ -~]{0,253}[!-~]?$"},
        ),
    ] = None,
) -> Response:
    body = await _read_body(request)
    prepared = await run_in_threadpool(
        prepare_usage, settings, body, idempotency_key=idempotency_key
    )
    for workspace_id in dict.fromkeys(prepared.workspaces):
        principal.check_write(workspace_id)
    recorded = await run_in_threadpool(append_usage, settings, prepared)
    return JSONResponse({"accepted": recorded.accepted, "ids": list(recorded.ids)}, status_code=202)


@router.get(
    "",
    response_model=Usage | UsageAll,
    summary="Usage of a workspace over a date range",
    description=(
        "The seed's getUsage: the period total of a metric and its daily breakdown, from "
        "the lake (usage recorded through the API shows after the next ingest). Without "
        '`metric`, every metric (`{"metrics": [...]}`). At most '
        f"{MAX_RANGE_DAYS} days. A workspace key reads its own workspace only (404 "
        "otherwise)."
    ),
)
def get_usage(
    settings: SettingsDep,
    principal: PrincipalDep,
    workspace_id: Annotated[str, Query(alias="workspaceId", pattern=WORKSPACE_PATTERN)],
    start_date: Annotated[ApiDate, Query(alias="startDate")],
    end_date: Annotated[ApiDate, Query(alias="endDate", description="Last day, inclusive")],
    metric: Annotated[str | None, Query(examples=["api_calls"])] = None,
) -> Response:
    principal.check_read(workspace_id, f"no workspace {workspace_id!r}")
    if end_date >= start_date and (end_date - start_date).days + 1 > MAX_RANGE_DAYS:
        raise UsageQueryError(
            f"a usage query spans at most {MAX_RANGE_DAYS} days "
            f"({start_date} to {end_date} is {(end_date - start_date).days + 1})"
        )
    if metric is not None:
        return JSONResponse(usage.get_usage(settings, workspace_id, start_date, end_date, metric))
    return JSONResponse(
        {"metrics": usage.get_usage(settings, workspace_id, start_date, end_date, None)}
    )
