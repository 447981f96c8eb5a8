"""PURE: what Stripe's answer means for an attempt.

An :class:`Outcome` is what gets recorded for an attempt (:mod:`.recording`): read from
a PaymentIntent's state (:func:`outcome_from_intent`) or from the error a request met
(:func:`outcome_from_failure`). The table in ``docs/payments.md`` ("Outcomes") is this
module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._core.errors import BillingError
from .stripe_gateway import REQUIRES_ACTION_MESSAGE, StripeFailure


@dataclass(frozen=True)
class Outcome:
    status: str  # succeeded | declined | requires_action | failed | pending
    payment_intent_id: str | None = None
    decline_code: str | None = None
    error_code: str | None = None
    message: str | None = None
    #: Emit billing.invoice.payment_failed (not for our own configuration errors).
    notify: bool = True
    #: Raised once the outcome is recorded (configuration errors).
    error: BillingError | None = None
    #: False when Stripe gave no verdict on the charge (429, network, 5xx, key
    #: rejected): fine to record for a first try, never to close an unknown attempt.
    definitive: bool = True
    #: For ``failed``: ``refused`` (Stripe refused the request: HTTP 400), ``unavailable``
    #: (no verdict) or None (see PaymentResult.failure).
    failure: str | None = None
    #: The parameter a refusal names.
    param: str | None = None


def _requires_action(pid: str | None, error_code: str, stripe_says: str | None) -> Outcome:
    """3-D Secure: the customer must authenticate (never retried automatically)."""
    message = REQUIRES_ACTION_MESSAGE
    if stripe_says is not None:
        message = f"{REQUIRES_ACTION_MESSAGE} (Stripe: {stripe_says})"
    return Outcome("requires_action", pid, "authentication_required", error_code, message)


def _from_last_payment_error(pid: str | None, last: Mapping[str, Any]) -> Outcome:
    """A PaymentIntent back in ``requires_payment_method``: its last error says why."""
    code = last.get("code")
    decline = last.get("decline_code")
    text = str(last.get("message") or "the payment failed")
    if "authentication_required" in (code, decline):
        return _requires_action(pid, str(code or "authentication_required"), text)
    if last.get("type") == "card_error":
        return Outcome("declined", pid, decline or code, code or "card_declined", text)
    return Outcome("failed", pid, None, str(code or "payment_failed"), text)


def outcome_from_intent(pi: Mapping[str, Any]) -> Outcome:
    """The outcome a PaymentIntent's current state stands for."""
    pid = pi.get("id")
    status = pi.get("status")
    if status == "succeeded":
        return Outcome("succeeded", pid, message=f"paid (PaymentIntent {pid})")
    if status in ("requires_action", "requires_source_action"):
        return _requires_action(pid, "authentication_required", None)
    if status == "processing":
        return Outcome("pending", pid, message="Stripe is still processing this payment")
    last = pi.get("last_payment_error")
    if status == "requires_payment_method" and isinstance(last, Mapping):
        return _from_last_payment_error(pid, last)
    if status == "canceled":
        reason = pi.get("cancellation_reason") or "no reason given"
        text = f"the PaymentIntent was canceled ({reason})"
        return Outcome("failed", pid, None, "canceled", text)
    return Outcome(
        "failed", pid, None, "unexpected_status", f"the PaymentIntent is {status}, not succeeded"
    )


def outcome_from_failure(f: StripeFailure, err: BillingError) -> Outcome:
    """The outcome of a request that met ``err`` (Stripe said ``f``). Not for an
    idempotency conflict, whose outcome is what the first request did (charging looks
    it up)."""
    pid = f.payment_intent.get("id") if f.payment_intent else None
    if f.kind == "declined":
        return Outcome("declined", pid, f.decline_code, f.error_code, f.message)
    if f.kind == "requires_action":
        return Outcome(
            "requires_action",
            pid,
            f.decline_code or "authentication_required",
            f.error_code,
            f"{REQUIRES_ACTION_MESSAGE} (Stripe: {f.message})",
        )
    if f.kind == "auth":
        # Our configuration, not the customer's payment: no event, and raised once
        # recorded; no verdict on the charge either.
        return Outcome(
            "failed",
            None,
            None,
            f.error_code,
            err.message,
            notify=False,
            error=err,
            definitive=False,
        )
    return Outcome(
        "failed",
        pid,
        None,
        f.error_code,
        f.message,
        definitive=f.kind != "transient",
        failure={"invalid": "refused", "transient": "unavailable"}.get(f.kind),
        param=f.param if f.kind == "invalid" else None,
    )


__all__ = ["Outcome", "outcome_from_failure", "outcome_from_intent"]
