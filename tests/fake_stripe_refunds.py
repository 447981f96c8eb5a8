"""The fake Stripe's refunds and events (mixed into :class:`tests.fake_stripe.FakeStripe`).

Speaks::

    POST /v1/refunds    GET /v1/refunds?payment_intent=pi_...    GET /v1/refunds/{id}

like Stripe: a refund needs a succeeded PaymentIntent, at most what is left of its
charge (else 400 ``charge_already_refunded`` / ``amount_too_large``), and is stored
with its metadata; ``refund_outcome`` ("succeeded", "pending" or "failed") is the status
new refunds get. Every refund that moved money is in :attr:`refund_ledger`.

:meth:`RefundsMixin.event` builds a Stripe event (``evt_...``, ``type``,
``data.object``) for webhook tests; :func:`sign` signs a payload the way Stripe does,
with the official SDK's own signature helper.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import stripe


@dataclass(frozen=True)
class RefundRecord:
    id: str
    payment_intent: str
    amount: int
    currency: str
    metadata: dict[str, str]


class _Invalid(Exception):
    def __init__(self, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.error = {"type": "invalid_request_error", "message": message, "code": code}
        if param:
            self.error["param"] = param


class RefundsMixin:
    payment_intents: dict[str, dict[str, Any]]
    refunds: dict[str, dict[str, Any]]
    refund_ledger: list[RefundRecord]
    refund_outcome: str

    def _new_id(self, prefix: str) -> str:  # pragma: no cover - FakeStripe's
        raise NotImplementedError

    def _now(self) -> int:  # pragma: no cover - FakeStripe's
        raise NotImplementedError

    def _refund_route(self, method: str, route: list[str], params: dict[str, Any]) -> Any:
        """The answer to a /v1/refunds request, or None when it is not one."""
        if route == ["refunds"] and method == "POST":
            return self._create_refund(params)
        if route == ["refunds"] and method == "GET":
            items = sorted(self.refunds.values(), key=lambda r: r["id"], reverse=True)
            if params.get("payment_intent"):
                items = [r for r in items if r["payment_intent"] == params["payment_intent"]]
            limit = int(params.get("limit", 10))
            return {
                "object": "list",
                "data": items[:limit],
                "has_more": len(items) > limit,
                "url": "/v1/refunds",
            }
        if len(route) == 2 and route[0] == "refunds" and method == "GET":
            if route[1] not in self.refunds:
                raise _Invalid(f"No such refund: '{route[1]}'", "resource_missing", "id")
            return self.refunds[route[1]]
        return None

    def _create_refund(self, params: dict[str, Any]) -> dict[str, Any]:
        pi = self.payment_intents.get(str(params.get("payment_intent", "")))
        if pi is None:
            raise _Invalid(
                f"No such payment_intent: '{params.get('payment_intent')}'",
                "resource_missing",
                "payment_intent",
            )
        if pi["status"] != "succeeded":
            raise _Invalid(
                "This PaymentIntent does not have a successful charge to refund.",
                "charge_not_refundable",
            )
        done = sum(
            r["amount"]
            for r in self.refunds.values()
            if r["payment_intent"] == pi["id"] and r["status"] != "failed"
        )
        left = int(pi["amount_received"]) - done
        amount = int(params.get("amount", left))
        if left <= 0:
            raise _Invalid(
                f"Charge {pi['latest_charge']} has already been refunded.",
                "charge_already_refunded",
            )
        if amount > left:
            raise _Invalid(
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
                "amount_too_large",
                "amount",
            )
        refund = {
            "id": self._new_id("re"),
            "object": "refund",
            "amount": amount,
            "currency": pi["currency"],
            "payment_intent": pi["id"],
            "charge": pi["latest_charge"],
            "status": self.refund_outcome,
            "failure_reason": "expired_or_canceled_card"
            if self.refund_outcome == "failed"
            else None,
            "metadata": dict(params.get("metadata") or {}),
            "created": self._now(),
        }
        self.refunds[refund["id"]] = refund
        if self.refund_outcome != "failed":
            self.refund_ledger.append(
                RefundRecord(refund["id"], pi["id"], amount, pi["currency"], refund["metadata"])
            )
        return refund

    def event(self, type_: str, obj: dict[str, Any]) -> dict[str, Any]:
        """A Stripe event (``evt_...``) of ``type_`` about ``obj``."""
        return {
            "id": self._new_id("evt"),
            "object": "event",
            "api_version": "2024-06-20",
            "created": self._now(),
            "livemode": False,
            "type": type_,
            "data": {"object": json.loads(json.dumps(obj))},
        }


def sign(payload: bytes, secret: str, *, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header for ``payload``, made with the official SDK's
    signature helper (``WebhookSignature._compute_signature``, what Stripe computes)."""
    t = int(time.time()) if timestamp is None else timestamp
    signed = f"{t}.{payload.decode('utf-8')}"
    v1 = stripe.WebhookSignature._compute_signature(signed, secret)
    return f"t={t},v1={v1}"


__all__ = ["RefundRecord", "RefundsMixin", "sign"]
