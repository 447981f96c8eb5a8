"""The Stripe boundary: the project's only ``import stripe``.

Here, and nowhere else: the Stripe client is built (:func:`stripe_client`, lazily by
:class:`StripeGateway`), the requests are
shaped (a PaymentIntent created and confirmed off-session: :meth:`StripeGateway.
create_payment_intent`), Stripe's errors become the project's own
(:func:`map_stripe_error`, applied by the one call wrapper every Stripe call goes
through), and nothing secret-shaped leaves through logging, errors or records
(:func:`.redaction.redact`; idempotency keys are :mod:`.keys`'). Answers leave as
plain dicts; what they mean for an attempt is :mod:`.outcomes`'. Design: ``docs/payments.md``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar
from urllib.parse import urlsplit

import stripe
from stripe.params import CustomerCreateParams, PaymentIntentCreateParams, RefundCreateParams

from .._core.errors import (
    BillingError,
    ConfigError,
    PaymentActionRequiredError,
    PaymentDeclinedError,
    PaymentError,
    PaymentRefusedError,
    PaymentTransientError,
    StripeNotConfiguredError,
    WebhookVerificationError,
)
from ..config.settings import Settings
from .keys import cancel_idempotency_key, customer_idempotency_key
from .redaction import redact

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The HTTP client the Stripe SDK talks through (tests inject a fake one).
HTTPClient: TypeAlias = stripe.HTTPClient

#: ``error_code`` of a failure without an answer: the connection failed or the response
#: was lost (after the SDK's retries), so Stripe may have executed the request.
API_CONNECTION_ERROR = "api_connection_error"
#: ``error_code`` of a Stripe 5xx (after the SDK's retries): Stripe may have failed mid-way.
API_ERROR = "api_error"
#: ``error_code`` of a failed attempt whose request may nevertheless have been executed
#: by Stripe: resolved before any new attempt.
AMBIGUOUS_ERRORS: frozenset[str] = frozenset({API_CONNECTION_ERROR, API_ERROR})
#: Our own bounded backoff on HTTP 429 (the SDK does not retry a plain 429): delays of
#: 1, 2, 4 ... seconds, at most this many tries more than settings.payments
#: .max_network_retries allows, capped at RATE_LIMIT_MAX_DELAY_SECONDS each.
RATE_LIMIT_DELAY_SECONDS = 1.0
RATE_LIMIT_MAX_DELAY_SECONDS = 16.0
#: Zero-decimal in ISO 4217 but sent to Stripe in the two-decimal representation (x100).
_STRIPE_TWO_DECIMAL_ZERO_DECIMAL = frozenset({"ISK", "UGX"})

NOT_CONFIGURED_MESSAGE = (
    "Stripe is not configured: set STRIPE_API_KEY in the environment to a Stripe secret key "
    "(sk_test_... in test mode), or to a restricted key (rk_...) allowed to write Customers "
    "and PaymentIntents. Optionally STRIPE_API_BASE points at stripe-mock or another "
    "Stripe-compatible endpoint. Nothing was charged or recorded."
)
REQUIRES_ACTION_MESSAGE = (
    "the customer must authenticate this payment (3-D Secure); it is not retried "
    "automatically: the customer completes authentication, or the invoice is paid again "
    "with another payment method (billing-batch invoice pay ID --payment-method pm_...)"
)

#: Sleeps between rate-limit retries (tests replace it).
_sleep: Callable[[float], None] = time.sleep


# --- secrets -------------------------------------------------------------------------------
# --- the client ----------------------------------------------------------------------------
def stripe_configured(settings: Settings) -> bool:
    """Whether ``STRIPE_API_KEY`` is set (paying needs it)."""
    return bool(settings.stripe_api_key)


def require_api_key(settings: Settings) -> str:
    """``STRIPE_API_KEY``, or :class:`StripeNotConfiguredError` saying how to set it."""
    key = settings.stripe_api_key
    if not key:
        raise StripeNotConfiguredError(NOT_CONFIGURED_MESSAGE)
    return key


def _api_base(settings: Settings) -> str | None:
    base = settings.stripe_api_base
    if not base:
        return None
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(
            "STRIPE_API_BASE must be an http(s) base URL such as https://api.stripe.com or "
            f"http://127.0.0.1:12111 (stripe-mock), got {redact(base)!r}"
        )
    return base.rstrip("/")


def default_http_client(settings: Settings) -> HTTPClient:
    """The HTTP client used when none is injected: ``requests`` with a connect timeout
    (at most 10 s) and a read timeout of ``settings.payments.timeout_seconds``."""
    timeout = settings.payments.timeout_seconds
    if not timeout > 0:
        raise ConfigError(f"payments.timeout_seconds must be positive, got {timeout}")
    return stripe.RequestsClient(timeout=(min(10.0, timeout), timeout))


def stripe_client(
    settings: Settings, *, http_client: HTTPClient | None = None
) -> stripe.StripeClient:
    """The one place a Stripe client is built.

    The API key comes from ``STRIPE_API_KEY`` only (:class:`StripeNotConfiguredError`
    when unset); ``STRIPE_API_BASE``, when set, replaces ``https://api.stripe.com``;
    ``max_network_retries`` is ``settings.payments.max_network_retries`` (the SDK then
    retries connection errors, 409 and 5xx with the same idempotency key); timeouts come
    from :func:`default_http_client` unless ``http_client`` is given (tests inject a fake;
    the caller then owns its lifetime, and should close a default one it did not pass)."""
    key = require_api_key(settings)
    base = _api_base(settings)
    retries = settings.payments.max_network_retries
    if retries < 0:
        raise ConfigError(f"payments.max_network_retries must be >= 0, got {retries}")
    return stripe.StripeClient(
        key,
        base_addresses={"api": base} if base else None,
        max_network_retries=retries,
        http_client=http_client if http_client is not None else default_http_client(settings),
    )


# --- amounts and events ------------------------------------------------------------------
def verify_stripe_event(
    payload: bytes, signature: str | None, secret: str, *, tolerance: int
) -> dict[str, Any]:
    """Stripe's webhook event, verified with the SDK's ``Webhook.construct_event`` (the
    ``Stripe-Signature`` header, ``secret`` the endpoint's ``whsec_...``, ``tolerance``
    seconds of clock skew / replay window). Anything that does not verify, or is not an
    event, is a :class:`WebhookVerificationError` (the secret never quoted)."""
    try:
        event = stripe.Webhook.construct_event(payload, signature or "", secret, tolerance)
    except stripe.SignatureVerificationError as exc:
        raise WebhookVerificationError(
            f"Stripe-Signature does not verify: {redact(str(exc.user_message or exc), secret)}"
        ) from exc
    except ValueError as exc:
        raise WebhookVerificationError(f"not a Stripe event: {exc}") from exc
    return _as_dict(event)


def stripe_amount(amount_minor: int, currency: str) -> int:
    """The ``amount`` Stripe expects for ``amount_minor`` (ISO 4217 minor units): the
    same integer (cents; whole yen for JPY), except ISK and UGX, which Stripe takes in a
    two-decimal representation (x100)."""
    return (
        amount_minor * 100 if currency.upper() in _STRIPE_TWO_DECIMAL_ZERO_DECIMAL else amount_minor
    )


def _quote(value: str) -> str:
    """A value in Stripe's search query language: single-quoted, quotes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# --- the error boundary --------------------------------------------------------------------
@dataclass(frozen=True)
class StripeFailure:
    """What a Stripe error said, read from the SDK's exception."""

    #: declined | requires_action | transient | auth | idempotency | invalid | other
    kind: str
    #: Stripe's error code (card_declined, expired_card, resource_missing, ...) or ours
    #: (rate_limit, api_connection_error, api_error, authentication_error, ...).
    error_code: str
    decline_code: str | None
    message: str
    #: The PaymentIntent in the error body (card errors on a PaymentIntent), if any.
    payment_intent: Mapping[str, Any] | None
    http_status: int | None
    #: The request parameter Stripe's error names (``payment_method``), if any.
    param: str | None = None


def describe_stripe_error(exc: stripe.StripeError, *, api_key: str | None = None) -> StripeFailure:
    body = exc.json_body if isinstance(exc.json_body, dict) else {}
    err = body.get("error") if isinstance(body.get("error"), dict) else {}
    assert isinstance(err, dict)
    raw = err.get("message") or exc.user_message or type(exc).__name__
    message = redact(str(raw), api_key)
    code = err.get("code") or exc.code
    decline = err.get("decline_code")
    pi = err.get("payment_intent")
    intent = pi if isinstance(pi, dict) else None
    status = exc.http_status
    raw_param = err.get("param") or getattr(exc, "param", None)
    param = str(raw_param) if raw_param else None

    def failure(kind: str, error_code: str, text: str = message) -> StripeFailure:
        return StripeFailure(kind, error_code, decline, text, intent, status, param)

    if isinstance(exc, stripe.CardError):
        if "authentication_required" in (code, decline):
            return failure("requires_action", str(code or "authentication_required"))
        return StripeFailure(
            "declined",
            str(code or "card_declined"),
            decline or code,
            message,
            intent,
            status,
            param,
        )
    if isinstance(exc, stripe.RateLimitError):
        return failure("transient", str(code or "rate_limit"))
    if isinstance(exc, stripe.APIConnectionError):
        text = str(exc.user_message or "")
        detail = text[text.find("(Network error:") :] if "(Network error:" in text else text
        return failure(
            "transient", API_CONNECTION_ERROR, redact(f"no answer from Stripe {detail}", api_key)
        )
    if isinstance(exc, stripe.APIError):
        return failure("transient", API_ERROR)
    if isinstance(exc, stripe.AuthenticationError):
        return failure("auth", "authentication_error", "Stripe rejected the API key")
    if isinstance(exc, stripe.PermissionError):
        return failure("auth", "permission_error", "the API key is not allowed to do this")
    if isinstance(exc, stripe.IdempotencyError):
        return failure("idempotency", "idempotency_error")
    if isinstance(exc, stripe.InvalidRequestError):
        return failure("invalid", str(code or "invalid_request_error"))
    return failure("other", str(code or "stripe_error"))


def map_stripe_error(exc: stripe.StripeError, *, api_key: str | None = None) -> PaymentError:
    """A Stripe SDK error as the project's own (the one mapping; never quotes the key)."""
    f = describe_stripe_error(exc, api_key=api_key)
    status = f" (HTTP {f.http_status})" if f.http_status else ""
    if f.kind == "declined":
        return PaymentDeclinedError(
            f"card declined: {f.message} [{f.decline_code or f.error_code}]",
            decline_code=f.decline_code,
            stripe_code=f.error_code,
        )
    if f.kind == "requires_action":
        return PaymentActionRequiredError(f"{REQUIRES_ACTION_MESSAGE} (Stripe: {f.message})")
    if f.kind == "transient":
        return PaymentTransientError(f"Stripe is unavailable{status}: {f.message} [{f.error_code}]")
    if f.kind == "auth":
        return StripeNotConfiguredError(
            f"{f.message}{status}: check STRIPE_API_KEY (a secret key sk_..., or a restricted "
            "key rk_... allowed to write Customers and PaymentIntents) and that it belongs to "
            "the Stripe account and mode (test/live) you mean"
        )
    if f.kind == "idempotency":
        return PaymentError(f"Stripe idempotency conflict{status}: {f.message}")
    if f.kind == "invalid":
        # HTTP 400/404 from Stripe: the request itself is wrong (an unknown payment
        # method: resource_missing), not Stripe being unavailable.
        return PaymentRefusedError(
            f"Stripe refused the request{status}: {f.message} [{f.error_code}]",
            stripe_code=f.error_code,
            param=f.param,
        )
    return PaymentError(f"Stripe refused the request{status}: {f.message} [{f.error_code}]")


def failure_of(err: BillingError, *, api_key: str | None = None) -> StripeFailure:
    """What Stripe said, for an error raised by a gateway call (its ``__cause__`` is the
    SDK's exception); any other error is of kind ``other``."""
    cause = err.__cause__
    if isinstance(cause, stripe.StripeError):
        return describe_stripe_error(cause, api_key=api_key)
    return StripeFailure("other", err.code, None, err.message, None, None)


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, stripe.StripeObject):
        return obj.to_dict()
    return dict(obj)


# --- the gateway -----------------------------------------------------------------------------
class StripeGateway:
    """The Stripe requests of one batch of payment work, through one client built on
    first use (so nothing needs a key until Stripe is really called). Every call goes
    through :meth:`_call`: the one place errors are mapped. Use as a context manager, or
    :meth:`close` it: it closes the HTTP client it made (an injected one belongs to the
    caller)."""

    def __init__(self, settings: Settings, http_client: HTTPClient | None = None) -> None:
        self.settings = settings
        self.api_key = settings.stripe_api_key
        self._http = http_client
        self._owned: HTTPClient | None = None
        self._client: stripe.StripeClient | None = None

    def __enter__(self) -> StripeGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        """Build the client now (:class:`StripeNotConfiguredError` without a key,
        :class:`ConfigError` for a bad base URL, timeout or retry count)."""
        self._connected()

    def _connected(self) -> stripe.StripeClient:
        if self._client is None:
            require_api_key(self.settings)
            http = self._http
            if http is None:
                http = self._owned = default_http_client(self.settings)
            self._client = stripe_client(self.settings, http_client=http)
        return self._client

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()  # type: ignore[no-untyped-call]
            self._owned = None

    def failure(self, err: BillingError) -> StripeFailure:
        """What Stripe said, for an error a call of this gateway raised."""
        return failure_of(err, api_key=self.api_key)

    def _call(self, fn: Callable[[stripe.StripeClient], T]) -> T:
        """THE boundary: every Stripe call goes through here. Rate limits get a bounded
        exponential backoff on top of the SDK's own network retries; any Stripe error
        leaves as the project's own (:func:`map_stripe_error`), chained to the original."""
        client = self._connected()
        tries = max(0, self.settings.payments.max_network_retries)
        n = 0
        while True:
            try:
                return fn(client)
            except stripe.RateLimitError as exc:
                if n < tries:
                    delay = min(RATE_LIMIT_DELAY_SECONDS * 2**n, RATE_LIMIT_MAX_DELAY_SECONDS)
                    n += 1
                    log.info("Stripe rate limit (HTTP 429): retry %d in %.1f s", n, delay)
                    _sleep(delay)
                    continue
                raise map_stripe_error(exc, api_key=self.api_key) from exc
            except stripe.StripeError as exc:
                raise map_stripe_error(exc, api_key=self.api_key) from exc

    # -- customers ------------------------------------------------------------------------
    def find_customer(self, workspace_id: str) -> str | None:
        """The Stripe customer whose ``metadata.workspace_id`` is this workspace, if any."""
        query = f"metadata['workspace_id']:{_quote(workspace_id)}"
        found = self._call(lambda c: c.v1.customers.search({"query": query, "limit": 1}))
        return str(found.data[0].id) if found.data else None

    def create_customer(self, workspace_id: str, *, name: str, email: str | None) -> str:
        """Create the workspace's Stripe customer (idempotently: its own key)."""
        params: CustomerCreateParams = {"name": name, "metadata": {"workspace_id": workspace_id}}
        if email:
            params["email"] = email
        key = customer_idempotency_key(workspace_id)
        created = self._call(lambda c: c.v1.customers.create(params, {"idempotency_key": key}))
        return str(created.id)

    # -- payment intents ------------------------------------------------------------------
    def create_payment_intent(
        self,
        *,
        amount_minor: int,
        currency: str,
        customer: str,
        payment_method: str,
        description: str,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> dict[str, Any]:
        """Create and confirm a PaymentIntent off-session (the customer is not present):
        a pure function of its arguments, so a resend under the same key is
        byte-identical."""
        params: PaymentIntentCreateParams = {
            "amount": stripe_amount(amount_minor, currency),
            "currency": currency.lower(),
            "customer": customer,
            "payment_method": payment_method,
            "confirm": True,
            "off_session": True,
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            "description": description,
            "metadata": dict(metadata),
        }
        options: stripe.RequestOptions = {"idempotency_key": idempotency_key}
        return _as_dict(self._call(lambda c: c.v1.payment_intents.create(params, options)))

    def retrieve_payment_intent(self, payment_intent_id: str) -> dict[str, Any]:
        return _as_dict(self._call(lambda c: c.v1.payment_intents.retrieve(payment_intent_id)))

    def cancel_payment_intent(self, payment_intent_id: str, *, attempt_key: str) -> None:
        """Cancel an attempt's PaymentIntent (``abandoned``; key :func:`cancel_idempotency_key`)."""
        options: stripe.RequestOptions = {"idempotency_key": cancel_idempotency_key(attempt_key)}
        self._call(
            lambda c: c.v1.payment_intents.cancel(
                payment_intent_id, {"cancellation_reason": "abandoned"}, options
            )
        )

    # -- refunds --------------------------------------------------------------------------
    def create_refund(
        self,
        *,
        payment_intent_id: str,
        amount_minor: int,
        currency: str,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> dict[str, Any]:
        """Refund part or all of a PaymentIntent's charge (a pure function of its
        arguments: a resend under the same key is byte-identical)."""
        params: RefundCreateParams = {
            "payment_intent": payment_intent_id,
            "amount": stripe_amount(amount_minor, currency),
            "metadata": dict(metadata),
        }
        options: stripe.RequestOptions = {"idempotency_key": idempotency_key}
        return _as_dict(self._call(lambda c: c.v1.refunds.create(params, options)))

    def list_refunds(self, payment_intent_id: str) -> list[dict[str, Any]]:
        """The refunds of a PaymentIntent (newest first; up to 100)."""
        found = self._call(
            lambda c: c.v1.refunds.list({"payment_intent": payment_intent_id, "limit": 100})
        )
        return [_as_dict(r) for r in found.data]

    def payment_intents_of_invoice(self, invoice_id: str) -> list[dict[str, Any]]:
        """Every PaymentIntent whose metadata names this invoice (search: lags by up to
        about a minute)."""
        query = f"metadata['invoice_id']:{_quote(invoice_id)}"
        found = self._call(lambda c: c.v1.payment_intents.search({"query": query, "limit": 100}))
        return [_as_dict(pi) for pi in found.data]

    def search_payment_intents(self, invoice_id: str, attempt_no: int) -> list[dict[str, Any]]:
        """The PaymentIntents whose metadata names this invoice and attempt. (Stripe's
        search lags by up to about a minute.)"""
        query = (
            f"metadata['invoice_id']:{_quote(invoice_id)} AND "
            f"metadata['attempt']:{_quote(str(attempt_no))}"
        )
        found = self._call(lambda c: c.v1.payment_intents.search({"query": query, "limit": 10}))
        return [_as_dict(pi) for pi in found.data]


__all__ = [
    "AMBIGUOUS_ERRORS",
    "API_CONNECTION_ERROR",
    "API_ERROR",
    "NOT_CONFIGURED_MESSAGE",
    "RATE_LIMIT_DELAY_SECONDS",
    "RATE_LIMIT_MAX_DELAY_SECONDS",
    "REQUIRES_ACTION_MESSAGE",
    "HTTPClient",
    "StripeFailure",
    "StripeGateway",
    "default_http_client",
    "describe_stripe_error",
    "failure_of",
    "map_stripe_error",
    "require_api_key",
    "stripe_amount",
    "stripe_client",
    "stripe_configured",
    "verify_stripe_event",
]
