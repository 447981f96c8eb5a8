"""Request and response shapes of the HTTP API (the seed's field names, camelCase).

Request bodies are validated by these models (a mismatch is a 422 ``invalid_request``);
usage events are the exception: they are validated by ingest's own rules
(:mod:`billing_batch.recording`), and :class:`UsageEvent` only documents them.

Responses are written by :func:`billing_batch._core.jsonutil.dumps` from the library's own
JSON (exact decimals: ``550``, ``12.34``); the response models here document that JSON
in the OpenAPI schema, where every amount and quantity is a JSON ``number``.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema

from .._core.ids import WORKSPACE_ID_PATTERN, WORKSPACE_ID_RULE

#: Dates the API accepts (anything else is a 422): a bound that keeps period
#: arithmetic far from ``date.min``/``date.max``.
MIN_DATE = date(1970, 1, 1)
MAX_DATE = date(2999, 12, 31)
#: Longest period an invoice or a usage query may span.
MAX_RANGE_DAYS = 366

#: The workspace id rule lives in ``ids.py`` (one home for the CLI, the API and the library).
WORKSPACE_PATTERN = WORKSPACE_ID_PATTERN
PLAN_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"
PAYMENT_METHOD_PATTERN = r"^[A-Za-z0-9_]{1,255}$"


def strict_date(value: object) -> date:
    """``YYYY-MM-DD`` only, between MIN_DATE and MAX_DATE."""
    if isinstance(value, date):
        d = value
    elif isinstance(value, str) and len(value) == 10:
        try:
            d = date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"expected a date as YYYY-MM-DD, got {value!r}") from None
    else:
        raise ValueError(f"expected a date as YYYY-MM-DD, got {value!r}")
    if not MIN_DATE <= d <= MAX_DATE:
        raise ValueError(f"date {d} is out of range ({MIN_DATE} to {MAX_DATE})")
    return d


ApiDate = Annotated[
    date,
    PlainValidator(strict_date),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date",
            "pattern": r"^(19[7-9]\d|2\d{3})-\d{2}-\d{2}$",
            "description": "YYYY-MM-DD, 1970-01-01 to 2999-12-31",
            "examples": ["2024-01-01"],
        }
    ),
]
#: An exact decimal, written as a JSON number.
Number = Annotated[Decimal, WithJsonSchema({"type": "number"})]
WorkspaceId = Annotated[
    str,
    Field(
        pattern=WORKSPACE_PATTERN,
        examples=["ws_123"],
        description=f"Workspace id: {WORKSPACE_ID_RULE}",
    ),
]
#: The invoice statuses (``invoices.STATUSES``).
Status = Literal["draft", "open", "paid", "void", "overdue"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- usage ------------------------------------------------------------------------------
class UsageEvent(BaseModel):
    """One usage event, as in a landing-zone log line (documentation only: the API
    validates events with ingest's rules and messages)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "workspaceId": "ws_123",
                    "metric": "api_calls",
                    "quantity": 1000,
                    "timestamp": "2024-01-15T10:00:00Z",
                }
            ]
        }
    )

    id: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        description="Event id (de-duplication key). Optional: without it the API "
        "derives one from the Idempotency-Key header and the event's index, or makes a "
        "new one.",
        examples=["evt_20240115_0001"],
    )
    workspaceId: str = Field(pattern=WORKSPACE_PATTERN, examples=["ws_123"])
    metric: str = Field(description="A metric of the catalogue", examples=["api_calls"])
    quantity: Number = Field(
        ge=0,
        description="Non-negative, at most 9 decimal places; whole for count metrics",
        examples=[1000],
    )
    timestamp: str = Field(
        description="ISO 8601 date-time with a zone (Z or an offset)",
        examples=["2024-01-15T10:00:00Z"],
        json_schema_extra={"format": "date-time"},
    )
    properties: dict[str, Any] | None = Field(None, description="Free-form attributes")


class UsageBatch(BaseModel):
    """Several events, recorded all or none."""

    events: list[UsageEvent] = Field(min_length=1, max_length=1000)


class UsageAccepted(_Response):
    accepted: int = Field(examples=[1])
    ids: list[str] = Field(examples=[["usg_5f3kq2m7a1b2c3d4e5f6g7h8"]])


class UsageDay(_Response):
    date: ApiDate
    quantity: Number


class Usage(_Response):
    """The seed's ``getUsage`` answer for one metric."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "metric": "api_calls",
                    "total": 45000,
                    "breakdown": [
                        {"date": "2024-01-15", "quantity": 1500},
                        {"date": "2024-01-16", "quantity": 2000},
                    ],
                }
            ]
        },
    )

    metric: str
    total: Number
    breakdown: list[UsageDay]


class UsageAll(_Response):
    """``getUsage`` without a metric: every metric of the catalogue, in catalogue order."""

    metrics: list[Usage]


# --- invoices ---------------------------------------------------------------------------
class Period(_Request):
    start: ApiDate
    end: ApiDate = Field(description="Last day, inclusive")


class CreateInvoice(_Request):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"workspaceId": "ws_123", "period": {"start": "2024-01-01", "end": "2024-01-31"}}
            ]
        },
    )

    workspaceId: WorkspaceId
    period: Period


class PayInvoice(_Request):
    paymentMethod: str | None = Field(
        None,
        pattern=PAYMENT_METHOD_PATTERN,
        description="Stripe payment method (default: the workspace's default method)",
        examples=["pm_card_visa"],
    )


class VoidInvoice(_Request):
    reason: str = Field("", max_length=500, examples=["issued in error"])


class LineItem(_Response):
    description: str = Field(examples=["API Calls (45,000)"])
    amount: Number = Field(examples=[450])
    kind: str | None = None
    metric: str | None = None
    plan: str | None = None
    quantity: Number | None = None
    unit: str | None = None
    unitPrice: Number | None = None
    periodStart: ApiDate | None = None
    periodEnd: ApiDate | None = None


class InvoicePeriod(_Response):
    start: ApiDate
    end: ApiDate


class Invoice(_Response):
    """The seed's invoice, plus number, period, currency, dates and line detail."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "id": "inv_abc",
                    "workspaceId": "ws_123",
                    "status": "draft",
                    "currency": "USD",
                    "period": {"start": "2024-01-01", "end": "2024-01-31"},
                    "subtotal": 500,
                    "tax": 50,
                    "total": 550,
                    "lineItems": [
                        {"description": "API Calls (45,000)", "amount": 450},
                        {"description": "Contracts (100)", "amount": 50},
                    ],
                }
            ]
        },
    )

    id: str
    workspaceId: str
    status: Status
    subtotal: Number
    tax: Number
    total: Number
    lineItems: list[LineItem]
    number: str | None = None
    currency: str | None = None
    period: InvoicePeriod | None = None
    taxRate: Number | None = None
    dueDate: ApiDate | None = None


class InvoiceList(_Response):
    data: list[Invoice]
    hasMore: bool


class Payment(_Response):
    """The outcome of one payment attempt, and the invoice after it."""

    invoiceId: str
    attempt: int
    status: Literal["succeeded", "declined", "requires_action", "failed", "pending"]
    succeeded: bool
    amount: Number = Field(examples=[550])
    currency: str = Field(examples=["USD"])
    invoiceNumber: str | None = None
    paymentIntentId: str | None = None
    paymentMethod: str | None = None
    declineCode: str | None = None
    errorCode: str | None = None
    message: str | None = None
    finalized: bool = Field(
        False, description="True when this call finalized the invoice (a draft) before paying it"
    )
    invoice: Invoice | None = None


# --- subscriptions ----------------------------------------------------------------------
class CreateSubscription(_Request):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [{"workspaceId": "ws_123", "plan": "growth", "start": "2024-01-01"}]
        },
    )

    workspaceId: WorkspaceId
    plan: str = Field(pattern=PLAN_PATTERN, examples=["growth"])
    start: ApiDate
    anchorDay: int = Field(1, ge=1, le=28, description="Billing anchor day, 1-28")
    trialDays: int = Field(0, ge=0, le=3650, description="Days without the base fee")


class ChangeSubscription(_Request):
    plan: str = Field(pattern=PLAN_PATTERN, examples=["growth"])
    effective: ApiDate = Field(description="First day of the new plan")


class CancelSubscription(_Request):
    effective: ApiDate = Field(description="First day without the subscription")


class PlanInForce(_Response):
    plan: str
    effective: ApiDate


class Subscription(_Response):
    id: str
    workspaceId: str
    status: str
    plan: str
    start: ApiDate
    anchorDay: int
    trialEnd: ApiDate | None = None
    canceledFrom: ApiDate | None = None
    plans: list[PlanInForce]


class SubscriptionView(_Response):
    workspaceId: str
    current: Subscription
    history: list[Subscription]


# --- errors -----------------------------------------------------------------------------
class ErrorDetail(_Response):
    code: str = Field(examples=["not_found"])
    message: str = Field(examples=["no invoice 'inv_abc'"])


class ErrorBody(_Response):
    """Every error: ``{"error": {"code", "message", ...}}`` (``errors`` lists the invalid
    events of a usage request, or the fields of a 422)."""

    error: ErrorDetail
