"""Payments through Stripe: charge an invoice, record every attempt, never charge twice.

This module is the Stripe boundary: the one place that builds the Stripe client
(:func:`stripe_client`), chooses idempotency keys (:func:`idempotency_key`) and maps
Stripe's errors into the project's exception tree (:func:`map_stripe_error`, used by one
call wrapper). Design and the crash-safety argument: ``docs/payments.md``.

* :func:`pay_invoice` charges one ``open`` or ``overdue`` invoice (a ``draft`` is finalized
  first, as on Stripe): a PaymentIntent created and confirmed off-session for the
  workspace's Stripe customer, for the invoice total in the currency's minor units, with
  the invoice id, number and workspace in its metadata.
* Every attempt is a row of ``payment_attempts``, committed as ``pending`` BEFORE the
  Stripe call (key ``invoice-<id>-attempt-<n>``) and completed after it, in the same
  transaction as the invoice's move to ``paid`` or the ``billing.invoice.payment_failed``
  event. An attempt whose fate Stripe has not told us (left ``pending`` by a crash, or
  ``failed`` on a network error or a 5xx, when the request may have been executed) is
  *resolved* before anything else: looked up by metadata search, else sent again with
  its own key (Stripe replays the stored result, or performs it if it never arrived).
  Attempt n+1 never starts while attempt n may still turn into a charge.
* :func:`retry_due_payments` is dunning: failed and declined payments are retried on
  ``settings.payments.dunning_schedule_days`` (days after the first try), each retry a
  new attempt number, up to ``1 + len(schedule)`` attempts.
* :func:`pay_invoices` charges a batch (the nightly run); one failure never stops the
  others.

Outcomes: ``succeeded`` (invoice paid), ``declined`` (card declined: decline code and
message kept, retried on the schedule), ``requires_action`` (3-D Secure: the customer must
authenticate; never retried automatically), ``failed`` (rate limit, network, Stripe
error or refused request, after the SDK's network retries and a bounded backoff on
rate limits; retried on the schedule), ``pending`` (not known yet).
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit

import stripe
from stripe.params import PaymentIntentCreateParams

from .._core import clock
from .._core.errors import (
    BillingError,
    ConfigError,
    InputError,
    NoPaymentMethodError,
    PaymentActionRequiredError,
    PaymentDeclinedError,
    PaymentError,
    PaymentRefusedError,
    PaymentTransientError,
    StateError,
    StripeNotConfiguredError,
)
from .._core.ids import stable_id
from .._core.money import from_minor
from ..config.price_book import load_price_book
from ..config.settings import Settings
from ..invoicing import service as invoices
from ..invoicing.service import Invoice
from ..rating.plans import PriceBook
from ..storage import state as store
from ..webhooks.outbox import record_event

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Invoice statuses that can be charged.
PAYABLE: tuple[str, ...] = ("open", "overdue")
ATTEMPT_STATUSES: tuple[str, ...] = (
    "pending",
    "succeeded",
    "declined",
    "requires_action",
    "failed",
)
#: ``error_code`` of a failed attempt whose request may nevertheless have been executed
#: by Stripe (the answer was lost, or Stripe failed mid-way): resolved before any new
#: attempt.
AMBIGUOUS_ERRORS: frozenset[str] = frozenset({"api_connection_error", "api_error"})
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

#: API keys (also Stripe's masked form, sk_test_****1234) and PaymentIntent client
#: secrets (pi_..._secret_..., in the SDK's debug log of response bodies).
_SECRET = re.compile(r"\b(?:sk|rk)_(?:test|live)_[A-Za-z0-9*]+|\b[a-z]+_\w+_secret_\w+")


class _RedactSecrets(logging.Filter):
    """On the ``stripe`` logger: the SDK logs Stripe's error messages (a 401's quotes
    the masked API key) and, at debug level, response bodies (a PaymentIntent's client
    secret). Nothing secret-shaped leaves through logging."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if _SECRET.search(text):
            record.msg = _SECRET.sub("[redacted]", text)
            record.args = None
        return True


_stripe_logger = logging.getLogger("stripe")
if not any(isinstance(f, _RedactSecrets) for f in _stripe_logger.filters):
    _stripe_logger.addFilter(_RedactSecrets())


# --- the client ----------------------------------------------------------------------------
def stripe_configured(settings: Settings) -> bool:
    """Whether ``STRIPE_API_KEY`` is set (paying needs it)."""
    return bool(settings.stripe_api_key)


def _api_key(settings: Settings) -> str:
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
            f"http://127.0.0.1:12111 (stripe-mock), got {_scrub(base)!r}"
        )
    return base.rstrip("/")


def default_http_client(settings: Settings) -> stripe.HTTPClient:
    """The HTTP client used when none is injected: ``requests`` with a connect timeout
    (at most 10 s) and a read timeout of ``settings.payments.timeout_seconds``."""
    timeout = settings.payments.timeout_seconds
    if not timeout > 0:
        raise ConfigError(f"payments.timeout_seconds must be positive, got {timeout}")
    return stripe.RequestsClient(timeout=(min(10.0, timeout), timeout))


def stripe_client(
    settings: Settings, *, http_client: stripe.HTTPClient | None = None
) -> stripe.StripeClient:
    """The one place a Stripe client is built.

    The API key comes from ``STRIPE_API_KEY`` only (:class:`StripeNotConfiguredError`
    when unset); ``STRIPE_API_BASE``, when set, replaces ``https://api.stripe.com``;
    ``max_network_retries`` is ``settings.payments.max_network_retries`` (the SDK then
    retries connection errors, 409 and 5xx with the same idempotency key); timeouts come
    from :func:`default_http_client` unless ``http_client`` is given (tests inject a fake;
    the caller then owns its lifetime, and should close a default one it did not pass)."""
    key = _api_key(settings)
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


def idempotency_key(invoice_id: str, attempt_no: int) -> str:
    """The Stripe idempotency key of one attempt: ``invoice-<id>-attempt-<n>``."""
    return f"invoice-{invoice_id}-attempt-{attempt_no}"


def customer_idempotency_key(workspace_id: str) -> str:
    return f"customer-{workspace_id}"


def stripe_amount(amount_minor: int, currency: str) -> int:
    """The ``amount`` Stripe expects for ``amount_minor`` (ISO 4217 minor units): the
    same integer (cents; whole yen for JPY), except ISK and UGX, which Stripe takes in a
    two-decimal representation (x100)."""
    return (
        amount_minor * 100 if currency.upper() in _STRIPE_TWO_DECIMAL_ZERO_DECIMAL else amount_minor
    )


def _scrub(text: str, key: str | None = None) -> str:
    """No API key in anything we log, store or raise (Stripe's own 401 message quotes a
    masked key: that goes too)."""
    if key:
        text = text.replace(key, "[redacted]")
    return _SECRET.sub("[redacted]", text)


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
    message = _scrub(str(raw), api_key)
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
            "transient", "api_connection_error", _scrub(f"no answer from Stripe {detail}", api_key)
        )
    if isinstance(exc, stripe.APIError):
        return failure("transient", "api_error")
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


def _failure_of(err: BillingError, api_key: str | None) -> StripeFailure:
    cause = err.__cause__
    if isinstance(cause, stripe.StripeError):
        return describe_stripe_error(cause, api_key=api_key)
    return StripeFailure("other", err.code, None, err.message, None, None)


# --- records ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class PaymentAttempt:
    """One row of ``payment_attempts``."""

    id: str
    invoice_id: str
    attempt_no: int
    idempotency_key: str
    status: str
    amount_minor: int
    currency: str
    payment_method: str | None
    payment_intent_id: str | None
    decline_code: str | None
    error_code: str | None
    message: str | None
    created_at: datetime
    completed_at: datetime | None
    next_retry_at: datetime | None

    @property
    def amount(self) -> Decimal:
        return from_minor(self.amount_minor, self.currency)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "payment_attempt",
            "invoiceId": self.invoice_id,
            "attempt": self.attempt_no,
            "idempotencyKey": self.idempotency_key,
            "status": self.status,
            "amount": self.amount,
            "amountMinor": self.amount_minor,
            "currency": self.currency,
            "paymentMethod": self.payment_method,
            "paymentIntentId": self.payment_intent_id,
            "declineCode": self.decline_code,
            "errorCode": self.error_code,
            "message": self.message,
            "createdAt": self.created_at,
            "completedAt": self.completed_at,
            "nextRetryAt": self.next_retry_at,
        }


@dataclass(frozen=True)
class PaymentResult:
    """What one ``pay`` did: the attempt's outcome and the invoice after it."""

    invoice_id: str
    attempt_no: int
    status: str
    payment_intent_id: str | None
    decline_code: str | None
    message: str | None
    amount_minor: int
    currency: str
    error_code: str | None = None
    payment_method: str | None = None
    attempted_at: datetime | None = None
    completed_at: datetime | None = None
    next_retry_at: datetime | None = None
    invoice: Invoice | None = None
    #: For a ``failed`` attempt, what kind of failure Stripe's answer was: ``refused``
    #: (Stripe refused the request as invalid, HTTP 400: the caller's mistake, e.g. an
    #: unknown payment method), ``unavailable`` (no verdict: rate limit, network, 5xx)
    #: or None (the payment itself failed).
    failure: str | None = None
    #: The request parameter a refusal names (``payment_method``), if any.
    param: str | None = None
    #: True when this call finalized the invoice (it was a draft) before charging it.
    finalized: bool = False

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def error(self) -> PaymentError | None:
        """The project's error this outcome stands for (None when paid or still pending):
        the one mapping from an attempt's outcome to an error, used by the CLI and the
        HTTP API alike (``docs/payments.md``, "Outcomes and answers")."""
        label = (self.invoice.number if self.invoice else None) or self.invoice_id
        text = self.message or f"payment {self.status}"
        if self.status in ("succeeded", "pending"):
            return None
        if self.status == "declined":
            return PaymentDeclinedError(
                text, decline_code=self.decline_code, stripe_code=self.error_code
            )
        if self.status == "requires_action":
            return PaymentActionRequiredError(text)
        if self.failure == "refused":
            return PaymentRefusedError(
                f"invoice {label}: Stripe refused the payment: {text} [{self.error_code}]",
                stripe_code=self.error_code,
                param=self.param,
            )
        if self.failure == "unavailable":
            return PaymentTransientError(f"invoice {label}: Stripe is unavailable: {text}")
        return PaymentError(f"invoice {label}: the payment failed: {text}")

    @property
    def amount(self) -> Decimal:
        return from_minor(self.amount_minor, self.currency)

    def to_json(self) -> dict[str, Any]:
        return {
            "object": "payment",
            "invoiceId": self.invoice_id,
            "invoiceNumber": self.invoice.number if self.invoice else None,
            "attempt": self.attempt_no,
            "status": self.status,
            "succeeded": self.succeeded,
            "paymentIntentId": self.payment_intent_id,
            "paymentMethod": self.payment_method,
            "amount": self.amount,
            "amountMinor": self.amount_minor,
            "currency": self.currency,
            "declineCode": self.decline_code,
            "errorCode": self.error_code,
            "message": self.message,
            "attemptedAt": self.attempted_at,
            "completedAt": self.completed_at,
            "nextRetryAt": self.next_retry_at,
            "finalized": self.finalized,
            "invoice": self.invoice.to_json() if self.invoice else None,
        }


def _dt(text: str | None) -> datetime | None:
    return clock.parse_ts(text) if text else None


def _attempt_from_row(r: sqlite3.Row) -> PaymentAttempt:
    return PaymentAttempt(
        id=r["id"],
        invoice_id=r["invoice_id"],
        attempt_no=int(r["attempt_no"]),
        idempotency_key=r["idempotency_key"],
        status=r["status"],
        amount_minor=int(r["amount_minor"]),
        currency=r["currency"],
        payment_method=r["payment_method"],
        payment_intent_id=r["payment_intent_id"],
        decline_code=r["decline_code"],
        error_code=r["error_code"],
        message=r["message"],
        created_at=clock.parse_ts(r["created_at"]),
        completed_at=_dt(r["completed_at"]),
        next_retry_at=_dt(r["next_retry_at"]),
    )


def _attempts(con: sqlite3.Connection, invoice_id: str) -> list[PaymentAttempt]:
    rows = con.execute(
        "SELECT * FROM payment_attempts WHERE invoice_id = ? ORDER BY attempt_no", (invoice_id,)
    ).fetchall()
    return [_attempt_from_row(r) for r in rows]


def _attempt(con: sqlite3.Connection, attempt_id: str) -> PaymentAttempt:
    row = con.execute("SELECT * FROM payment_attempts WHERE id = ?", (attempt_id,)).fetchone()
    return _attempt_from_row(row)


def list_attempts(settings: Settings, invoice_id: str) -> list[PaymentAttempt]:
    """Every payment attempt of an invoice (by id or number), oldest first."""
    inv = invoices.get_invoice(settings, invoice_id)
    with store.opened(settings) as con:
        return _attempts(con, inv.id)


def _result(
    attempt: PaymentAttempt,
    invoice: Invoice,
    message: str | None = None,
    *,
    failure: str | None = None,
    param: str | None = None,
) -> PaymentResult:
    return PaymentResult(
        invoice_id=attempt.invoice_id,
        attempt_no=attempt.attempt_no,
        status=attempt.status,
        payment_intent_id=attempt.payment_intent_id,
        decline_code=attempt.decline_code,
        message=message if message is not None else attempt.message,
        amount_minor=attempt.amount_minor,
        currency=attempt.currency,
        error_code=attempt.error_code,
        payment_method=attempt.payment_method,
        attempted_at=attempt.created_at,
        completed_at=attempt.completed_at,
        next_retry_at=attempt.next_retry_at,
        invoice=invoice,
        failure=failure if attempt.status == "failed" else None,
        param=param if attempt.status == "failed" else None,
    )


def _label(inv: Invoice) -> str:
    return inv.number or inv.id


# --- outcomes --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Outcome:
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


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, stripe.StripeObject):
        return obj.to_dict()
    return dict(obj)


def _outcome_from_intent(pi: Mapping[str, Any]) -> _Outcome:
    """The outcome a PaymentIntent's current state stands for."""
    pid = pi.get("id")
    status = pi.get("status")
    if status == "succeeded":
        return _Outcome("succeeded", pid, message=f"paid (PaymentIntent {pid})")
    if status in ("requires_action", "requires_source_action"):
        return _Outcome(
            "requires_action",
            pid,
            decline_code="authentication_required",
            error_code="authentication_required",
            message=REQUIRES_ACTION_MESSAGE,
        )
    if status == "processing":
        return _Outcome("pending", pid, message="Stripe is still processing this payment")
    last = pi.get("last_payment_error")
    if status == "requires_payment_method" and isinstance(last, Mapping):
        code = last.get("code")
        decline = last.get("decline_code")
        text = str(last.get("message") or "the payment failed")
        if "authentication_required" in (code, decline):
            return _Outcome(
                "requires_action",
                pid,
                decline_code="authentication_required",
                error_code=str(code or "authentication_required"),
                message=f"{REQUIRES_ACTION_MESSAGE} (Stripe: {text})",
            )
        if last.get("type") == "card_error":
            return _Outcome("declined", pid, decline or code, code or "card_declined", text)
        return _Outcome("failed", pid, None, str(code or "payment_failed"), text)
    if status == "canceled":
        reason = pi.get("cancellation_reason") or "no reason given"
        return _Outcome(
            "failed", pid, None, "canceled", f"the PaymentIntent was canceled ({reason})"
        )
    return _Outcome(
        "failed", pid, None, "unexpected_status", f"the PaymentIntent is {status}, not succeeded"
    )


# --- the charger ---------------------------------------------------------------------------
class _Charger:
    """One batch of payment work with one Stripe client, one price book and one ``now``."""

    def __init__(
        self, settings: Settings, now: datetime, http_client: stripe.HTTPClient | None
    ) -> None:
        self.settings = settings
        self.now = now
        self._http = http_client
        self._owned: stripe.HTTPClient | None = None
        self._client: stripe.StripeClient | None = None
        self._book: PriceBook | None = None
        self.api_key = settings.stripe_api_key

    # -- resources ------------------------------------------------------------------------
    @property
    def client(self) -> stripe.StripeClient:
        if self._client is None:
            _api_key(self.settings)
            http = self._http
            if http is None:
                http = self._owned = default_http_client(self.settings)
            self._client = stripe_client(self.settings, http_client=http)
        return self._client

    @property
    def book(self) -> PriceBook:
        if self._book is None:
            self._book = load_price_book(self.settings)
        return self._book

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()  # type: ignore[no-untyped-call]
            self._owned = None

    def _call(self, fn: Callable[[], T]) -> T:
        """THE boundary: every Stripe call goes through here. Rate limits get a bounded
        exponential backoff on top of the SDK's own network retries; any Stripe error
        leaves as the project's own (:func:`map_stripe_error`), chained to the original."""
        tries = max(0, self.settings.payments.max_network_retries)
        n = 0
        while True:
            try:
                return fn()
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

    # -- paying ---------------------------------------------------------------------------
    def pay(self, invoice_ref: str, payment_method: str | None) -> PaymentResult:
        inv = invoices.get_invoice(self.settings, invoice_ref)
        if inv.status != "draft":
            return self._pay(inv, payment_method)
        opened = self._finalize_draft(inv, payment_method)
        return replace(self._pay(opened, payment_method), finalized=True)

    def _finalize_draft(self, inv: Invoice, payment_method: str | None) -> Invoice:
        """Stripe's convention: paying a draft finalizes it first (numbered, frozen, its
        JSON and PDF written; ``invoices.finalize_invoice``), then charges it. What can be
        checked before is checked before, so a payment that cannot even be attempted
        (Stripe not configured, no payment method) leaves the draft a draft. Finalized
        meanwhile by another caller: that invoice is charged."""
        if inv.total_minor != 0:
            _api_key(self.settings)
            self._payment_method(inv, payment_method, None)
        try:
            opened = invoices.finalize_invoice(self.settings, inv.id, now=self.now)
        except StateError:
            opened = invoices.get_invoice(self.settings, inv.id)
            if opened.status == "draft":
                raise
            return opened
        log.info(
            "invoice %s: draft finalized as %s to be paid (total %s %s)",
            inv.id,
            opened.number,
            opened.total,
            opened.currency,
        )
        return opened

    def _pay(self, inv: Invoice, payment_method: str | None) -> PaymentResult:
        for _ in range(4):
            with store.opened(self.settings) as con:
                inv = invoices.load_invoice(con, inv.id)
                attempts = _attempts(con, inv.id)
            last = attempts[-1] if attempts else None
            if last is not None and last.status == "pending":
                return self._resolve(inv, last)
            _check_payable(inv, attempts)
            if inv.total_minor == 0:
                return self._settle_zero(inv)
            _api_key(self.settings)
            if last is not None and _ambiguous(last):
                return self._resolve(inv, last)
            if last is not None and last.status == "requires_action" and last.payment_intent_id:
                done = self._release(inv, last)
                if done is not None:
                    return done
            method = self._payment_method(inv, payment_method, last)
            customer = self._customer(inv.workspace_id)
            attempt = self._begin(inv, last, method)
            if attempt is None:
                continue  # another process moved first: look again
            log.info(
                "invoice %s: attempt %d, charging %s %s with %s (idempotency key %s)",
                _label(inv),
                attempt.attempt_no,
                attempt.amount,
                attempt.currency,
                method,
                attempt.idempotency_key,
            )
            return self._record(inv, attempt, self._send(inv, attempt, customer), "pending")
        raise PaymentTransientError(
            f"invoice {_label(inv)}: another payment of it is in progress; try again shortly"
        )

    def _settle_zero(self, inv: Invoice) -> PaymentResult:
        with store.opened(self.settings) as con, store.transaction(con):
            paid = invoices.transition(
                con, inv.id, "paid", at=self.now, reason="nothing to charge: the total is 0"
            )
        log.info("invoice %s: total 0, marked paid without a charge", _label(inv))
        return PaymentResult(
            invoice_id=inv.id,
            attempt_no=0,
            status="succeeded",
            payment_intent_id=None,
            decline_code=None,
            message="nothing to charge: the invoice total is 0",
            amount_minor=0,
            currency=inv.currency,
            completed_at=self.now,
            invoice=paid,
        )

    def _payment_method(
        self, inv: Invoice, explicit: str | None, last: PaymentAttempt | None
    ) -> str:
        if explicit is not None:
            pm = explicit.strip()
            if not pm or len(pm) > 255 or any(c.isspace() for c in pm):
                raise InputError(f"not a payment method id: {explicit!r} (expected pm_...)")
            return pm
        account = self.book.account(inv.workspace_id)
        if account.default_payment_method:
            return account.default_payment_method
        if last is not None and last.payment_method:
            return last.payment_method
        raise NoPaymentMethodError(
            f"invoice {_label(inv)}: no payment method: pass one (billing-batch invoice pay "
            f"{_label(inv)} --payment-method pm_...) or set default_payment_method for workspace "
            f"{inv.workspace_id} in the price book",
            invoice_id=inv.id,
            invoice_number=inv.number,
            workspace_id=inv.workspace_id,
        )

    def _customer(self, workspace_id: str) -> str:
        """The workspace's Stripe customer: the price book's, else the one recorded, else
        found by metadata or created (idempotently) and recorded."""
        account = self.book.account(workspace_id)
        if account.stripe_customer_id:
            return account.stripe_customer_id
        with store.opened(self.settings) as con:
            row = con.execute(
                "SELECT stripe_customer_id FROM customers WHERE workspace_id = ?", (workspace_id,)
            ).fetchone()
        if row is not None:
            return str(row[0])
        client = self.client
        found = self._call(
            lambda: client.v1.customers.search(
                {"query": f"metadata['workspace_id']:{_quote(workspace_id)}", "limit": 1}
            )
        )
        if found.data:
            customer_id = str(found.data[0].id)
        else:
            params: stripe.params.CustomerCreateParams = {
                "name": account.legal_name or workspace_id,
                "metadata": {"workspace_id": workspace_id},
            }
            if account.email:
                params["email"] = account.email
            created = self._call(
                lambda: client.v1.customers.create(
                    params, {"idempotency_key": customer_idempotency_key(workspace_id)}
                )
            )
            customer_id = str(created.id)
            log.info("workspace %s: created Stripe customer %s", workspace_id, customer_id)
        with store.opened(self.settings) as con, store.transaction(con):
            con.execute(
                "INSERT INTO customers (workspace_id, stripe_customer_id, created_at) "
                "VALUES (?, ?, ?) ON CONFLICT (workspace_id) DO NOTHING",
                (workspace_id, customer_id, clock.ts(self.now)),
            )
            row = con.execute(
                "SELECT stripe_customer_id FROM customers WHERE workspace_id = ?", (workspace_id,)
            ).fetchone()
        return str(row[0])

    def _begin(
        self, inv: Invoice, last: PaymentAttempt | None, payment_method: str
    ) -> PaymentAttempt | None:
        """Commit attempt n+1 as ``pending`` (before any charge), unless something moved."""
        with store.opened(self.settings) as con, store.transaction(con):
            current = invoices.load_invoice(con, inv.id)
            attempts = _attempts(con, inv.id)
            now_last = attempts[-1] if attempts else None
            if (now_last.attempt_no if now_last else 0) != (last.attempt_no if last else 0):
                return None
            if now_last is not None and (now_last.status == "pending" or _ambiguous(now_last)):
                return None
            _check_payable(current, attempts)
            n = (now_last.attempt_no if now_last else 0) + 1
            attempt = PaymentAttempt(
                id=stable_id("pay", inv.id, n),
                invoice_id=inv.id,
                attempt_no=n,
                idempotency_key=idempotency_key(inv.id, n),
                status="pending",
                amount_minor=current.total_minor,
                currency=current.currency,
                payment_method=payment_method,
                payment_intent_id=None,
                decline_code=None,
                error_code=None,
                message=None,
                created_at=self.now,
                completed_at=None,
                next_retry_at=None,
            )
            con.execute(
                "INSERT INTO payment_attempts (id, invoice_id, attempt_no, idempotency_key, "
                "status, amount_minor, currency, payment_method, created_at) "
                "VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?)",
                (
                    attempt.id,
                    attempt.invoice_id,
                    n,
                    attempt.idempotency_key,
                    attempt.amount_minor,
                    attempt.currency,
                    payment_method,
                    clock.ts(self.now),
                ),
            )
        return attempt

    def _intent_params(
        self, inv: Invoice, attempt: PaymentAttempt, customer: str
    ) -> PaymentIntentCreateParams:
        """The PaymentIntent request of an attempt: a pure function of the attempt row,
        the frozen invoice and the customer, so a resend is byte-identical."""
        assert attempt.payment_method is not None
        return {
            "amount": stripe_amount(attempt.amount_minor, attempt.currency),
            "currency": attempt.currency.lower(),
            "customer": customer,
            "payment_method": attempt.payment_method,
            "confirm": True,
            "off_session": True,
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            "description": f"Invoice {_label(inv)}",
            "metadata": {
                "invoice_id": inv.id,
                "invoice_number": inv.number or "",
                "workspace_id": inv.workspace_id,
                "attempt": str(attempt.attempt_no),
            },
        }

    def _send(self, inv: Invoice, attempt: PaymentAttempt, customer: str) -> _Outcome:
        """Create and confirm the attempt's PaymentIntent (with its own key)."""
        client = self.client
        params = self._intent_params(inv, attempt, customer)
        try:
            pi = self._call(
                lambda: client.v1.payment_intents.create(
                    params, {"idempotency_key": attempt.idempotency_key}
                )
            )
        except PaymentError as err:
            return self._outcome_from_error(inv, attempt, err)
        return _outcome_from_intent(_as_dict(pi))

    def _outcome_from_error(
        self, inv: Invoice, attempt: PaymentAttempt, err: PaymentError
    ) -> _Outcome:
        f = _failure_of(err, self.api_key)
        pid = f.payment_intent.get("id") if f.payment_intent else None
        if f.kind == "declined":
            return _Outcome("declined", pid, f.decline_code, f.error_code, f.message)
        if f.kind == "requires_action":
            return _Outcome(
                "requires_action",
                pid,
                f.decline_code or "authentication_required",
                f.error_code,
                f"{REQUIRES_ACTION_MESSAGE} (Stripe: {f.message})",
            )
        if f.kind == "idempotency":
            # Stripe has this key with other parameters (e.g. the customer changed since
            # the first try): find what the first request did.
            found = self._find_intent(inv, attempt)
            if found is not None:
                return _outcome_from_intent(found)
            log.error(
                "invoice %s attempt %d: %s; its PaymentIntent is not found yet: left pending",
                _label(inv),
                attempt.attempt_no,
                f.message,
            )
            return _Outcome(
                "pending",
                message="Stripe has a request under this idempotency key that search does not "
                "show yet; resolved on the next run",
            )
        if f.kind == "auth":
            return _Outcome(
                "failed",
                None,
                None,
                f.error_code,
                err.message,
                notify=False,
                error=err,
                definitive=False,
            )
        return _Outcome(
            "failed",
            pid,
            None,
            f.error_code,
            f.message,
            definitive=f.kind != "transient",
            failure={"invalid": "refused", "transient": "unavailable"}.get(f.kind),
            param=f.param if f.kind == "invalid" else None,
        )

    def _find_intent(self, inv: Invoice, attempt: PaymentAttempt) -> dict[str, Any] | None:
        """The PaymentIntent an attempt created, found by its metadata. (Stripe's search
        lags by up to about a minute: a miss is followed by a resend under the same key,
        which Stripe answers with the stored result of a request that young.)"""
        client = self.client
        query = (
            f"metadata['invoice_id']:{_quote(inv.id)} AND "
            f"metadata['attempt']:{_quote(str(attempt.attempt_no))}"
        )
        found = self._call(lambda: client.v1.payment_intents.search({"query": query, "limit": 10}))
        intents = [_as_dict(pi) for pi in found.data]
        if not intents:
            return None
        succeeded = [pi for pi in intents if pi.get("status") == "succeeded"]
        if len(succeeded) > 1:
            log.error(
                "invoice %s attempt %d: %d succeeded PaymentIntents (%s): refund the extra ones",
                _label(inv),
                attempt.attempt_no,
                len(succeeded),
                ", ".join(str(pi.get("id")) for pi in succeeded),
            )
        return succeeded[0] if succeeded else intents[0]

    def _resolve(self, inv: Invoice, attempt: PaymentAttempt) -> PaymentResult:
        """Find out what happened to an attempt whose outcome is unknown (``pending``
        after a crash, or ``failed`` without an answer) and record it.

        Search first (by metadata): it finds the PaymentIntent whatever the age of the
        key. Not found: send the same request again under the same key. If the first
        one reached Stripe less than a day ago, Stripe replays its result; if it never
        arrived (or search lagged because it is seconds old, when the key is certainly
        still stored), it is performed now. Never a second charge: a key older than a
        day is never resent without search having had time to find its PaymentIntent."""
        log.warning(
            "invoice %s: attempt %d is %s%s; asking Stripe what became of it",
            _label(inv),
            attempt.attempt_no,
            attempt.status,
            f" ({attempt.error_code})" if attempt.error_code else "",
        )
        client = self.client
        try:
            if attempt.payment_intent_id:
                pid = attempt.payment_intent_id
                found: dict[str, Any] | None = _as_dict(
                    self._call(lambda: client.v1.payment_intents.retrieve(pid))
                )
            else:
                found = self._find_intent(inv, attempt)
            if found is not None:
                outcome = _outcome_from_intent(found)
            elif inv.status not in PAYABLE:
                # Voided (or paid) meanwhile: look, but never send a charge for it now.
                outcome = _Outcome(
                    "failed",
                    None,
                    None,
                    "not_found",
                    f"no PaymentIntent found for this attempt, and the invoice is {inv.status}: "
                    "not sent again",
                    notify=False,
                )
            else:
                outcome = self._send(inv, attempt, self._customer(inv.workspace_id))
        except StripeNotConfiguredError:
            raise
        except PaymentError as err:
            return self._unresolved(inv, attempt, err.message)
        if outcome.error is not None:
            raise outcome.error
        if not outcome.definitive:
            return self._unresolved(inv, attempt, outcome.message or str(outcome.error_code))
        return self._record(inv, attempt, outcome, attempt.status)

    def _unresolved(self, inv: Invoice, attempt: PaymentAttempt, why: str) -> PaymentResult:
        """Stripe could not be asked (rate limit, network): the attempt stays as it was,
        unknown, so no new attempt can start beside it; the next run asks again."""
        message = _scrub(
            f"attempt {attempt.attempt_no} is still unresolved ({why}); nothing new was "
            "charged; it is looked up again on the next run",
            self.api_key,
        )
        log.warning("invoice %s: %s", _label(inv), message)
        with store.opened(self.settings) as con:
            current = _attempt(con, attempt.id)
            after = invoices.load_invoice(con, inv.id)
        return _result(current, after, message=message, failure="unavailable")

    def _release(self, inv: Invoice, last: PaymentAttempt) -> PaymentResult | None:
        """Before a new attempt after ``requires_action``: if the customer completed the
        authentication meanwhile, that attempt paid the invoice; otherwise cancel its
        PaymentIntent so that it can never succeed later, next to a new one."""
        assert last.payment_intent_id is not None
        pid = last.payment_intent_id
        client = self.client
        pi = _as_dict(self._call(lambda: client.v1.payment_intents.retrieve(pid)))
        status = pi.get("status")
        if status in ("succeeded", "processing"):
            return self._record(inv, last, _outcome_from_intent(pi), "requires_action")
        if status == "canceled":
            return None
        try:
            self._call(
                lambda: client.v1.payment_intents.cancel(
                    pid,
                    {"cancellation_reason": "abandoned"},
                    {"idempotency_key": f"{last.idempotency_key}-cancel"},
                )
            )
        except PaymentError as err:
            if _failure_of(err, self.api_key).kind != "invalid":
                raise
            # It moved on (e.g. succeeded) between the two calls: look again.
            pi = _as_dict(self._call(lambda: client.v1.payment_intents.retrieve(pid)))
            if pi.get("status") != "canceled":
                return self._record(inv, last, _outcome_from_intent(pi), "requires_action")
        log.info(
            "invoice %s: canceled PaymentIntent %s of attempt %d (never authenticated)",
            _label(inv),
            pid,
            last.attempt_no,
        )
        return None

    def poll(self, inv: Invoice, last: PaymentAttempt) -> PaymentResult | None:
        """A ``requires_action`` attempt whose PaymentIntent succeeded since (the customer
        authenticated): record it. Nothing otherwise (no automatic retry)."""
        assert last.payment_intent_id is not None
        pid = last.payment_intent_id
        client = self.client
        pi = _as_dict(self._call(lambda: client.v1.payment_intents.retrieve(pid)))
        if pi.get("status") != "succeeded":
            return None
        return self._record(inv, last, _outcome_from_intent(pi), "requires_action")

    # -- recording ------------------------------------------------------------------------
    def _next_retry(self, con: sqlite3.Connection, attempt: PaymentAttempt) -> datetime | None:
        """Attempt n failed: attempt n+1 is due at 00:00 UTC of the day ``schedule[n-1]``
        days after the first try's day, and never before the day after attempt n's (one
        attempt per business day at most: a catch-up run makes one retry, not all the
        overdue ones, and a rerun of the same day none); none after ``1 + len(schedule)``
        attempts."""
        schedule = self.settings.payments.dunning_schedule_days
        if attempt.attempt_no > len(schedule):
            return None
        first = con.execute(
            "SELECT created_at FROM payment_attempts WHERE invoice_id = ? "
            "ORDER BY attempt_no LIMIT 1",
            (attempt.invoice_id,),
        ).fetchone()
        day = clock.parse_ts(first[0]).date() + timedelta(days=schedule[attempt.attempt_no - 1])
        day = max(day, attempt.created_at.astimezone(UTC).date() + timedelta(days=1))
        return datetime.combine(day, clock_time(0, 0), tzinfo=UTC)

    def _record(
        self, inv: Invoice, attempt: PaymentAttempt, outcome: _Outcome, expected: str
    ) -> PaymentResult:
        """Write an attempt's outcome, with the invoice's move to ``paid`` or the
        ``payment_failed`` event, in one transaction; a no-op if another process
        recorded this attempt first."""
        message = _scrub(outcome.message, self.api_key) if outcome.message else None
        recorded = False
        with store.opened(self.settings) as con:
            with store.transaction(con):
                current = _attempt(con, attempt.id)
                if current.status == expected and current.error_code == attempt.error_code:
                    recorded = True
                    message = self._apply(con, inv, current, outcome, message)
                final = _attempt(con, attempt.id)
                after = invoices.load_invoice(con, inv.id)
        if recorded:
            log.info(
                "invoice %s: attempt %d %s%s",
                _label(inv),
                final.attempt_no,
                final.status,
                f": {final.message}" if final.message else "",
            )
            if outcome.error is not None:
                raise outcome.error
        if not recorded:
            return _result(final, after)
        return _result(final, after, failure=outcome.failure, param=outcome.param)

    def _apply(
        self,
        con: sqlite3.Connection,
        inv: Invoice,
        attempt: PaymentAttempt,
        outcome: _Outcome,
        message: str | None,
    ) -> str | None:
        status = outcome.status
        pid = outcome.payment_intent_id or attempt.payment_intent_id
        if status == "succeeded":
            current = invoices.load_invoice(con, inv.id)
            if current.status in PAYABLE:
                assert pid is not None
                invoices.transition(
                    con,
                    inv.id,
                    "paid",
                    at=self.now,
                    reason=f"paid by Stripe PaymentIntent {pid} (attempt {attempt.attempt_no})",
                    payment_intent_id=pid,
                )
            elif not (current.status == "paid" and current.payment_intent_id == pid):
                other = current.payment_intent_id
                message = (
                    f"charged by PaymentIntent {pid}, but the invoice is {current.status}"
                    f"{f' (paid by {other})' if other else ''}"
                    ": refund or reconcile this payment by hand"
                )
                log.error("invoice %s: %s", _label(inv), message)
        next_retry = self._next_retry(con, attempt) if status in ("declined", "failed") else None
        con.execute(
            "UPDATE payment_attempts SET status = ?, payment_intent_id = ?, decline_code = ?, "
            "error_code = ?, message = ?, completed_at = ?, next_retry_at = ? WHERE id = ?",
            (
                status,
                pid,
                outcome.decline_code,
                outcome.error_code,
                message,
                None if status == "pending" else clock.ts(self.now),
                clock.ts(next_retry) if next_retry else None,
                attempt.id,
            ),
        )
        if status in ("declined", "requires_action", "failed") and outcome.notify:
            record_event(
                con,
                "billing.invoice.payment_failed",
                subject_id=inv.id,
                discriminator=str(attempt.attempt_no),
                workspace_id=inv.workspace_id,
                data={
                    "invoiceId": inv.id,
                    "invoiceNumber": inv.number,
                    "workspaceId": inv.workspace_id,
                    "attempt": attempt.attempt_no,
                    "status": status,
                    "code": outcome.decline_code or outcome.error_code,
                    "declineCode": outcome.decline_code,
                    "errorCode": outcome.error_code,
                    "message": message,
                    "amount": attempt.amount,
                    "currency": attempt.currency,
                    "paymentIntentId": pid,
                    "nextRetryAt": next_retry,
                    "automaticRetry": next_retry is not None,
                },
                at=self.now,
                recorded_at=clock.utcnow(),
            )
        return message


def _ambiguous(attempt: PaymentAttempt) -> bool:
    """A failed attempt whose request may have been executed all the same."""
    return (
        attempt.status == "failed"
        and attempt.error_code in AMBIGUOUS_ERRORS
        and attempt.payment_intent_id is None
    )


def _quote(value: str) -> str:
    """A value in Stripe's search query language: single-quoted, quotes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _check_payable(inv: Invoice, attempts: Sequence[PaymentAttempt]) -> None:
    label = _label(inv)
    if inv.status == "draft":
        raise StateError(
            f"invoice {label} is a draft: finalize it before paying it "
            f"(billing-batch invoice finalize {inv.id})"
        )
    if inv.status == "void":
        raise StateError(f"invoice {label} is void: a voided invoice cannot be paid")
    if inv.status == "paid":
        by = f" by PaymentIntent {inv.payment_intent_id}" if inv.payment_intent_id else ""
        when = f" on {inv.paid_at:%Y-%m-%d %H:%M} UTC" if inv.paid_at else ""
        raise StateError(f"invoice {label} is already paid{by}{when}: nothing to charge")
    if inv.status not in PAYABLE:
        raise StateError(f"invoice {label} is {inv.status}: only open or overdue invoices are paid")
    charged = [a for a in attempts if a.status == "succeeded"]
    if charged:
        a = charged[-1]
        raise StateError(
            f"invoice {label} is {inv.status} but attempt {a.attempt_no} already charged it "
            f"(PaymentIntent {a.payment_intent_id}); not charging again: reconcile it by hand"
        )
    if inv.total_minor < 0:
        raise StateError(f"invoice {label} has a negative total ({inv.total}): nothing to charge")


def _now(now: datetime | None) -> datetime:
    value = now or clock.utcnow()
    if value.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return value.astimezone(UTC)


@contextmanager
def _charger(
    settings: Settings, now: datetime | None, http_client: stripe.HTTPClient | None
) -> Iterator[_Charger]:
    charger = _Charger(settings, _now(now), http_client)
    try:
        yield charger
    finally:
        charger.close()


# --- public operations -------------------------------------------------------------------------
def pay_invoice(
    settings: Settings,
    invoice_id: str,
    *,
    payment_method: str | None = None,
    now: datetime | None = None,
    http_client: stripe.HTTPClient | None = None,
) -> PaymentResult:
    """Charge an ``open`` or ``overdue`` invoice (by id or number) through Stripe; a
    ``draft`` is finalized first, then charged (Stripe's convention; ``finalized`` on
    the result).

    ``payment_method`` (``pm_...``) defaults to the workspace's ``default_payment_method``
    in the price book, else the one its last attempt used. A declined card, a
    ``requires_action``, a refused request (an unknown payment method) or a transient
    failure is recorded and returned (``succeeded`` False; ``error()`` says which); a
    pending or unanswered earlier attempt is resolved first and its result returned.
    Raises :class:`StateError` (void, paid), :class:`NoPaymentMethodError`,
    :class:`StripeNotConfiguredError` (no key, or a key Stripe rejects),
    :class:`NotFoundError`."""
    with _charger(settings, now, http_client) as charger:
        return charger.pay(invoice_id, payment_method)


def pay_invoices(
    settings: Settings,
    invoice_ids: Sequence[str],
    *,
    now: datetime | None = None,
    http_client: stripe.HTTPClient | None = None,
) -> list[PaymentResult | BillingError]:
    """Charge many invoices (the nightly run's freshly finalized ones), one result or
    error per id, in order. One failure never stops the others; a Stripe configuration
    error (no key, key rejected) is returned for that invoice and every later one
    without calling Stripe again."""
    results: list[PaymentResult | BillingError] = []
    with _charger(settings, now, http_client) as charger:
        for n, invoice_id in enumerate(invoice_ids):
            try:
                results.append(charger.pay(invoice_id, None))
            except StripeNotConfiguredError as exc:
                log.error("payments stopped: %s", exc)
                results.extend(exc for _ in invoice_ids[n:])
                break
            except BillingError as exc:
                log.warning("invoice %s: not charged: %s", invoice_id, exc)
                results.append(exc)
    return results


def due_payments(settings: Settings, *, now: datetime | None = None) -> list[PaymentAttempt]:
    """The last attempts :func:`retry_due_payments` would act on at ``now``: pending ones
    (resolved), unanswered failures (resolved), failures and declines due for a retry,
    and ``requires_action`` ones (checked, never retried).

    A failure or decline is due when its ``next_retry_at`` has come AND it was made
    before ``now``: an attempt made at the business time of this run (or later: a
    backfill of an earlier date) is never retried by it, so a rerun of the same date
    makes no new attempt, whatever the schedule or the stored ``next_retry_at``."""
    at = clock.ts(_now(now))
    max_attempts = 1 + len(settings.payments.dunning_schedule_days)
    ambiguous = ", ".join(f"'{c}'" for c in sorted(AMBIGUOUS_ERRORS))
    sql = (
        "SELECT a.* FROM payment_attempts AS a JOIN invoices AS i ON i.id = a.invoice_id "
        "WHERE a.attempt_no = (SELECT MAX(b.attempt_no) FROM payment_attempts AS b "
        "                      WHERE b.invoice_id = a.invoice_id) "
        "AND (a.status = 'pending' OR (i.status IN ('open', 'overdue') AND ("
        f"  (a.status = 'failed' AND a.error_code IN ({ambiguous}) "
        "    AND a.payment_intent_id IS NULL) "
        "  OR (a.status IN ('failed', 'declined') AND a.next_retry_at IS NOT NULL "
        "      AND a.next_retry_at <= ? AND a.created_at < ? AND a.attempt_no < ?) "
        "  OR (a.status = 'requires_action' AND a.payment_intent_id IS NOT NULL)))) "
        "ORDER BY i.number, i.id"
    )
    with store.opened(settings) as con:
        rows = con.execute(sql, (at, at, max_attempts)).fetchall()
        return [_attempt_from_row(r) for r in rows]


def retry_due_payments(
    settings: Settings,
    *,
    now: datetime | None = None,
    http_client: stripe.HTTPClient | None = None,
) -> list[PaymentResult | BillingError]:
    """Dunning: retry every failed or declined payment whose ``next_retry_at`` has come
    (a new attempt number each time, up to ``1 + len(dunning_schedule_days)`` attempts),
    resolve attempts left pending or unanswered, and record ``requires_action`` payments
    the customer has since authenticated (they are never retried automatically).

    Returns one result per invoice acted on (a ``requires_action`` one only when it got
    paid), or the error that invoice met: one failure never stops the others. Nothing
    due: ``[]``, without needing a Stripe key. Raises :class:`StripeNotConfiguredError`
    when something is due and Stripe is not configured (or rejects the key)."""
    due = due_payments(settings, now=now)
    if not due:
        return []
    results: list[PaymentResult | BillingError] = []
    with _charger(settings, now, http_client) as charger:
        _api_key(settings)
        for last in due:
            try:
                if last.status == "requires_action":
                    with store.opened(settings) as con:
                        inv = invoices.load_invoice(con, last.invoice_id)
                    polled = charger.poll(inv, last)
                    if polled is not None:
                        results.append(polled)
                    continue
                results.append(charger.pay(last.invoice_id, None))
            except StripeNotConfiguredError:
                raise
            except BillingError as exc:
                log.warning("invoice %s: not retried: %s", last.invoice_id, exc)
                results.append(exc)
    return results


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
