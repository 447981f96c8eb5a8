"""The project's one exception tree.

Every error billing-batch raises on purpose derives from :class:`BillingError`.
Third-party errors (DuckDB, Stripe, HTTP) are mapped into this tree at the one
boundary that talks to them (``lake``, ``payments``, ``webhooks``), so callers
(the CLI, the flows, the HTTP API) only ever catch ``BillingError``.

::

    BillingError
    ├── ConfigError                 bad or missing configuration
    ├── InputError                  bad input from a user or a file
    │   ├── IngestError             a file that cannot be read at all (missing, corrupt gzip)
    │   ├── UsageQueryError         bad dates, unknown metric, end before start
    │   ├── PriceBookError          an invalid price book
    │   ├── SubscriptionError       unknown plan, overlapping periods, change before start
    │   └── NoPaymentMethodError    nothing to charge an invoice with (none given, none set)
    ├── NotFoundError               no such invoice / subscription / endpoint
    ├── StateError                  an illegal transition (pay a void invoice, void a paid one)
    ├── LakeError                   the lake (DuckDB/DuckLake) failed
    ├── LockedError                 another run or ingest holds the lock
    ├── RenderError                 a PDF or JSON document could not be produced
    ├── PaymentError                the payment boundary
    │   ├── StripeNotConfiguredError    no STRIPE_API_KEY
    │   ├── PaymentDeclinedError        card declined (code, decline_code)
    │   ├── PaymentActionRequiredError  3-D Secure: the customer must act
    │   ├── PaymentRefusedError         Stripe refused the request (HTTP 400: e.g. an unknown
    │   │                               payment method, resource_missing): Stripe's code kept
    │   └── PaymentTransientError       rate limit / network, after retries
    └── WebhookError
        └── WebhookVerificationError    bad signature, stale timestamp, missing header
"""

from __future__ import annotations


class BillingError(Exception):
    """Base class of every error billing-batch raises on purpose."""

    #: A stable, machine-readable code (used by the CLI exit message and the HTTP API).
    code: str = "billing_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(BillingError):
    code = "config_error"


class InputError(BillingError):
    code = "invalid_input"


class IngestError(InputError):
    """A source file that cannot be ingested at all (as opposed to a rejected line)."""

    code = "ingest_error"

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        where = path if path is not None else ""
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}" if where else message)
        self.path = path
        self.line = line


class UsageQueryError(InputError):
    code = "invalid_usage_query"


class PriceBookError(InputError):
    code = "invalid_price_book"


class SubscriptionError(InputError):
    code = "invalid_subscription"


class NoPaymentMethodError(InputError):
    """An invoice to charge, but no payment method: none was given and its workspace has
    no ``default_payment_method`` (nor an earlier attempt's)."""

    code = "no_payment_method"

    def __init__(
        self,
        message: str,
        *,
        invoice_id: str | None = None,
        invoice_number: str | None = None,
        workspace_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.invoice_id = invoice_id
        self.invoice_number = invoice_number
        self.workspace_id = workspace_id


class NotFoundError(BillingError):
    code = "not_found"


class StateError(BillingError):
    """An operation that the current state does not allow (an illegal transition)."""

    code = "invalid_state"


class LakeError(BillingError):
    code = "lake_error"


class StorageError(BillingError):
    """Object storage (or a files area) could not be read or written."""

    code = "storage_error"


class LockedError(BillingError):
    code = "locked"


class StaleUsageError(LockedError):
    """The daily rollup is behind the committed ingests and cannot be brought up to date
    now (another writer holds the lake): a reader refuses rather than price stale usage."""

    code = "usage_stale"


class RenderError(BillingError):
    code = "render_error"


class PaymentError(BillingError):
    code = "payment_error"


class StripeNotConfiguredError(PaymentError):
    code = "stripe_not_configured"


class PaymentDeclinedError(PaymentError):
    code = "payment_declined"

    def __init__(
        self, message: str, *, decline_code: str | None = None, stripe_code: str | None = None
    ) -> None:
        super().__init__(message)
        self.decline_code = decline_code
        self.stripe_code = stripe_code


class PaymentActionRequiredError(PaymentError):
    code = "payment_requires_action"


class PaymentRefusedError(PaymentError):
    """Stripe refused the request as invalid (HTTP 400/404): the caller's mistake (an
    unknown payment method, ``resource_missing``) or a charge Stripe does not allow
    (``amount_too_small``). ``stripe_code`` is Stripe's code, ``param`` the parameter it
    named."""

    code = "payment_refused"

    def __init__(
        self, message: str, *, stripe_code: str | None = None, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.stripe_code = stripe_code
        self.param = param


class PaymentTransientError(PaymentError):
    code = "payment_unavailable"


class WebhookError(BillingError):
    code = "webhook_error"


class WebhookVerificationError(WebhookError):
    code = "webhook_verification_failed"


__all__ = [
    "BillingError",
    "ConfigError",
    "IngestError",
    "InputError",
    "LakeError",
    "LockedError",
    "NoPaymentMethodError",
    "NotFoundError",
    "PaymentActionRequiredError",
    "PaymentDeclinedError",
    "PaymentError",
    "PaymentRefusedError",
    "PaymentTransientError",
    "PriceBookError",
    "RenderError",
    "StorageError",
    "StaleUsageError",
    "StateError",
    "StripeNotConfiguredError",
    "SubscriptionError",
    "UsageQueryError",
    "WebhookError",
    "WebhookVerificationError",
]
