"""Stripe idempotency keys: one per request we may repeat (a retried attempt, a crashed
run resumed), so Stripe executes it once. Derived from our ids, never random."""

from __future__ import annotations


def idempotency_key(invoice_id: str, attempt_no: int) -> str:
    """The Stripe idempotency key of one attempt: ``invoice-<id>-attempt-<n>``."""
    return f"invoice-{invoice_id}-attempt-{attempt_no}"


def customer_idempotency_key(workspace_id: str) -> str:
    """The key of the request creating a workspace's Stripe customer."""
    return f"customer-{workspace_id}"


def cancel_idempotency_key(attempt_key: str) -> str:
    """The key of the request canceling an attempt's PaymentIntent."""
    return f"{attempt_key}-cancel"


def refund_idempotency_key(credit_note_id: str) -> str:
    """The key of the request refunding a credit note: ``refund-<credit note id>``."""
    return f"refund-{credit_note_id}"


__all__ = [
    "cancel_idempotency_key",
    "customer_idempotency_key",
    "idempotency_key",
    "refund_idempotency_key",
]
