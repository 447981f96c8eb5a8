"""``POST /v1/billing/stripe/webhook``: Stripe → us (docs/payments.md, "Stripe's webhooks").

No API key: Stripe authenticates with the ``Stripe-Signature`` header, verified by the
official SDK against ``STRIPE_WEBHOOK_SECRET``. 200 once recorded (a replay too:
``duplicate: true``, nothing changes); 400 ``invalid_signature`` when it does not
verify; 503 when the secret is not configured."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from .._core.errors import StripeNotConfiguredError, WebhookVerificationError
from ..payments.stripe_events import receive_stripe_event
from .deps import SettingsDep
from .errors import COMMON_RESPONSES, error_response
from .json import JSONResponse

router = APIRouter(prefix="/v1/billing/stripe", tags=["stripe"])

#: Stripe's events are small; anything larger is refused before it is read further.
MAX_BODY_BYTES = 1 << 20


@router.post(
    "/webhook",
    summary="Stripe's events (payment_intent.*, charge.refunded, charge.dispute.created)",
    description="Verified with `Stripe-Signature` (the official SDK, STRIPE_WEBHOOK_SECRET, "
    "300 s tolerance); recorded once per Stripe event id. 400 `invalid_signature`; "
    "503 when STRIPE_WEBHOOK_SECRET is not set.",
    responses={
        400: COMMON_RESPONSES[400] | {"description": "The signature does not verify"},
        413: COMMON_RESPONSES[400] | {"description": "Larger than 1 MiB"},
        503: COMMON_RESPONSES[500] | {"description": "STRIPE_WEBHOOK_SECRET is not set"},
    },
)
async def stripe_webhook(
    request: Request,
    settings: SettingsDep,
    stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None,
) -> Response:
    payload = await request.body()
    if len(payload) > MAX_BODY_BYTES:
        return error_response(413, "payload_too_large", "a Stripe event is at most 1 MiB")
    try:
        result = await run_in_threadpool(receive_stripe_event, settings, payload, stripe_signature)
    except WebhookVerificationError as exc:
        return error_response(400, "invalid_signature", exc.message)
    except StripeNotConfiguredError as exc:
        return error_response(503, exc.code, exc.message)
    return JSONResponse(result.to_json())


__all__ = ["router"]
