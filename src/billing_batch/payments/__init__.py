"""Payments through Stripe: charge invoices, record every attempt, never charge twice,
retry on a dunning schedule. Design and the crash-safety argument: ``docs/payments.md``.

Modules, from the Stripe boundary up:

* :mod:`.stripe_gateway`: the only ``import stripe``: the client, idempotency keys,
  the request shapes, the one error mapping, secret redaction.
* :mod:`.outcomes` (pure): what Stripe's answer means for an attempt.
* :mod:`.attempts`: the attempt record (``payment_attempts``) and the result of a ``pay``.
* :mod:`.retry_schedule` (pure): when a failed payment is tried again.
* :mod:`.customers`: a workspace's Stripe customer.
* :mod:`.recording`: an attempt's outcome and its consequence, in one transaction.
* :mod:`.charging`: paying one invoice (the state machine), or a batch.
* :mod:`.dunning`: what is due, and the dunning run.
"""

from __future__ import annotations

from .attempts import ATTEMPT_STATUSES, PAYABLE, PaymentAttempt, PaymentResult, list_attempts
from .charging import pay_invoice, pay_invoices
from .dunning import due_payments, retry_due_payments
from .keys import idempotency_key
from .stripe_gateway import (
    AMBIGUOUS_ERRORS,
    NOT_CONFIGURED_MESSAGE,
    StripeFailure,
    default_http_client,
    describe_stripe_error,
    map_stripe_error,
    stripe_amount,
    stripe_client,
    stripe_configured,
)

__all__ = [
    "AMBIGUOUS_ERRORS",
    "ATTEMPT_STATUSES",
    "NOT_CONFIGURED_MESSAGE",
    "PAYABLE",
    "PaymentAttempt",
    "PaymentResult",
    "StripeFailure",
    "default_http_client",
    "describe_stripe_error",
    "due_payments",
    "idempotency_key",
    "list_attempts",
    "map_stripe_error",
    "pay_invoice",
    "pay_invoices",
    "retry_due_payments",
    "stripe_amount",
    "stripe_client",
    "stripe_configured",
]
