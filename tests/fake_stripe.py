"""A fake Stripe for offline tests: one in-memory Stripe, reachable two ways.

* :class:`FakeStripeHTTPClient`: a ``stripe.HTTPClient`` subclass (``request``/``close``)
  to pass as ``http_client=`` to ``stripe.StripeClient`` (or to
  ``billing_batch.payments.pay_invoice(..., http_client=...)``). No socket: the SDK's
  real form encoding, headers, error mapping and network retries still run.
* :class:`FakeStripeServer`: a loopback HTTP server (127.0.0.1, ephemeral port) over the
  same :class:`FakeStripe`, for transport errors (dropped connections, refused ports)
  and for ``STRIPE_API_BASE=server.url`` in end-to-end tests of the CLI, the nightly flow
  or the HTTP API, possibly from another process.

Both share one :class:`FakeStripe`, so a charge made through the server in a subprocess
is visible to an in-process client afterwards (that is how the crash test works).

What it speaks (v1, form-encoded like Stripe)::

    POST /v1/customers                     GET /v1/customers/{id}   GET /v1/customers/search
    POST /v1/payment_intents               GET /v1/payment_intents/{id}
    POST /v1/payment_intents/{id}/confirm  POST /v1/payment_intents/{id}/cancel
    GET  /v1/payment_intents/search        GET /v1/payment_intents
    POST /v1/refunds    GET /v1/refunds    GET /v1/refunds/{id}   (tests/fake_stripe_refunds.py)

How it behaves like Stripe:

* ``Authorization: Bearer <key>``: with ``FakeStripe(api_key=...)`` any other key gets a
  401 whose message shows the key masked, as Stripe does.
* ``Idempotency-Key`` on POST: the first result of an *executed* request (200, 402, 500)
  is stored and replayed for the same key (header ``Idempotent-Replayed: true``); the
  same key with other parameters (or another endpoint) is a 400 ``idempotency_error``
  (the SDK raises ``stripe.IdempotencyError``). Validation errors (400/404), 401 and
  429 are not stored, as on Stripe. :meth:`FakeStripe.expire_idempotency_keys` forgets
  every key (Stripe keeps them at least 24 hours).
* Confirming a PaymentIntent with Stripe's test payment methods (:data:`TEST_CARDS`):
  ``pm_card_visa`` (and mastercard, amex, ...) succeeds and adds a charge to
  :attr:`FakeStripe.charges`; ``pm_card_chargeDeclined`` → 402 ``card_declined`` /
  ``generic_decline``; ``...InsufficientFunds`` → ``insufficient_funds``;
  ``...ExpiredCard`` → ``expired_card``; ``...IncorrectCvc``, ``...LostCard``,
  ``...StolenCard``, ``...ProcessingError`` likewise; ``pm_card_authenticationRequired``
  → off-session: 402 ``authentication_required`` (PaymentIntent back to
  ``requires_payment_method``), on-session: status ``requires_action`` with a
  ``next_action``. ``FakeStripe(off_session_authentication="requires_action")`` makes
  off-session confirmations answer ``requires_action`` too. A failed confirmation
  stores ``last_payment_error`` on the PaymentIntent, and the 402 body carries the
  PaymentIntent, as Stripe's does. Unknown payment methods or customers → 400
  ``resource_missing``. :meth:`FakeStripe.add_payment_method` adds your own.
* Search (``metadata['k']:'v'``, ``status:'succeeded'``, ``customer:'cus_...'``,
  clauses joined by ``AND``), newest first, with an optional ``search_lag_seconds``
  (objects younger than that are not found yet, as Stripe's search lags).
* Faults, injected with :meth:`FakeStripe.inject` and consumed in order by matching
  requests: ``rate_limit`` (429, nothing executed), ``server_error`` (500, nothing
  executed), ``connection_error`` (the request never arrives: the client raises
  ``stripe.APIConnectionError``, the server closes the connection without answering),
  ``drop_after`` (the request IS executed and its result stored, then the response is
  lost the same way: the ambiguous case).

What you can assert on: :attr:`FakeStripe.charges` (the ledger of successful charges),
:attr:`FakeStripe.payment_intents`, :attr:`FakeStripe.customers`,
:attr:`FakeStripe.requests` (every request: method, path, params, idempotency key,
status, replayed; never the Authorization header).

Example::

    fake = FakeStripe(api_key="sk_test_fake")
    client = stripe.StripeClient("sk_test_fake", http_client=FakeStripeHTTPClient(fake))
    with FakeStripeServer(fake) as server:
        monkeypatch.setenv("STRIPE_API_BASE", server.url)
        ...
    assert len(fake.charges) == 1
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import stripe
from requests.structures import CaseInsensitiveDict

from tests.fake_stripe_refunds import RefundRecord, RefundsMixin
from tests.fake_stripe_refunds import _Invalid as _RefundInvalid

__all__ = [
    "TEST_CARDS",
    "Charge",
    "FakeConnectionError",
    "FakeStripe",
    "FakeStripeHTTPClient",
    "FakeStripeServer",
    "RecordedRequest",
    "Response",
    "unused_local_url",
]


# --- Stripe's test payment methods --------------------------------------------------------
@dataclass(frozen=True)
class CardBehaviour:
    """What confirming a PaymentIntent with this payment method does."""

    outcome: str  # "succeeded" | "declined" | "authentication_required"
    code: str | None = None
    decline_code: str | None = None
    message: str | None = None
    brand: str = "visa"
    last4: str = "4242"


_SUCCEEDS = CardBehaviour("succeeded")

#: Stripe's documented test payment methods (https://docs.stripe.com/testing).
TEST_CARDS: dict[str, CardBehaviour] = {
    "pm_card_visa": _SUCCEEDS,
    "pm_card_visa_debit": CardBehaviour("succeeded", last4="5556"),
    "pm_card_mastercard": CardBehaviour("succeeded", brand="mastercard", last4="4444"),
    "pm_card_amex": CardBehaviour("succeeded", brand="amex", last4="8431"),
    "pm_card_jcb": CardBehaviour("succeeded", brand="jcb", last4="0000"),
    "pm_card_chargeDeclined": CardBehaviour(
        "declined", "card_declined", "generic_decline", "Your card was declined.", last4="0002"
    ),
    "pm_card_chargeDeclinedInsufficientFunds": CardBehaviour(
        "declined",
        "card_declined",
        "insufficient_funds",
        "Your card has insufficient funds.",
        last4="9995",
    ),
    "pm_card_chargeDeclinedLostCard": CardBehaviour(
        "declined", "card_declined", "lost_card", "Your card was declined.", last4="9987"
    ),
    "pm_card_chargeDeclinedStolenCard": CardBehaviour(
        "declined", "card_declined", "stolen_card", "Your card was declined.", last4="9979"
    ),
    "pm_card_chargeDeclinedExpiredCard": CardBehaviour(
        "declined", "expired_card", "expired_card", "Your card has expired.", last4="0069"
    ),
    "pm_card_chargeDeclinedIncorrectCvc": CardBehaviour(
        "declined",
        "incorrect_cvc",
        "incorrect_cvc",
        "Your card's security code is incorrect.",
        last4="0127",
    ),
    "pm_card_chargeDeclinedProcessingError": CardBehaviour(
        "declined",
        "processing_error",
        "processing_error",
        "An error occurred while processing your card. Try again in a little bit.",
        last4="0119",
    ),
    "pm_card_authenticationRequired": CardBehaviour(
        "authentication_required",
        "authentication_required",
        "authentication_required",
        "Your card was declined. This transaction requires authentication.",
        last4="3184",
    ),
}

FAULTS = ("rate_limit", "server_error", "connection_error", "drop_after")


# --- records ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Charge:
    """One successful charge: the ledger that says how often money moved."""

    id: str
    payment_intent: str
    amount: int
    currency: str
    customer: str | None
    payment_method: str
    metadata: dict[str, str]
    created: int


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    params: dict[str, Any]
    idempotency_key: str | None
    status: int | None  # None: no response (connection fault)
    replayed: bool = False
    fault: str | None = None


class FakeConnectionError(Exception):
    """The transport failed (injected): no response reaches the client."""


@dataclass
class _Fault:
    kind: str
    method: str | None
    path: str | None
    times: int


@dataclass
class _Stored:
    fingerprint: tuple[Any, ...]
    status: int
    body: bytes


class _StripeError(Exception):
    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(error.get("message"))
        self.status = status
        self.error = error


def _invalid(message: str, *, code: str | None = None, param: str | None = None) -> _StripeError:
    err: dict[str, Any] = {"type": "invalid_request_error", "message": message}
    if code:
        err["code"] = code
    if param:
        err["param"] = param
    return _StripeError(400, err)


def _missing(kind: str, ident: str, param: str | None = None) -> _StripeError:
    err = _invalid(f"No such {kind}: '{ident}'", code="resource_missing", param=param)
    err.status = 404 if param is None else 400
    return err


# --- form decoding ------------------------------------------------------------------------
def decode_form(text: str) -> dict[str, Any]:
    """Stripe's form encoding back into nested values: ``metadata[invoice_id]=x`` →
    ``{"metadata": {"invoice_id": "x"}}``; ``expand[0]=a`` → ``{"expand": ["a"]}``."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        head, _, rest = key.partition("[")
        parts = [head] + ([p.rstrip("]") for p in ("[" + rest).split("[")[1:]] if rest else [])
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        last = parts[-1]
        if last == "":
            last = str(len(node))
        node[last] = value
    out: dict[str, Any] = _listify(root)
    return out


def _listify(value: Any) -> Any:
    if isinstance(value, dict):
        if value and all(k.isdigit() for k in value):
            return [_listify(value[k]) for k in sorted(value, key=int)]
        return {k: _listify(v) for k, v in value.items()}
    return value


def _bool(value: Any) -> bool:
    return str(value).lower() == "true"


_CLAUSE = re.compile(
    r"""^\s*(?:metadata\[(?P<mq>['"])(?P<key>[^'"]+)(?P=mq)\]|(?P<field>[a-z_]+))"""
    r"""\s*:\s*(?P<vq>['"])(?P<value>[^'"]*)(?P=vq)\s*$"""
)


# --- the in-memory Stripe -----------------------------------------------------------------
class FakeStripe(RefundsMixin):
    """An in-memory Stripe account (thread-safe). See the module docstring (refunds and
    events: :mod:`tests.fake_stripe_refunds`)."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        off_session_authentication: str = "decline",
        search_lag_seconds: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if off_session_authentication not in ("decline", "requires_action"):
            raise ValueError("off_session_authentication: 'decline' or 'requires_action'")
        self.api_key = api_key
        self.off_session_authentication = off_session_authentication
        self.search_lag_seconds = search_lag_seconds
        self.clock = clock
        self.customers: dict[str, dict[str, Any]] = {}
        self.payment_intents: dict[str, dict[str, Any]] = {}
        self.charges: list[Charge] = []
        self.failed_charges: list[str] = []
        self.requests: list[RecordedRequest] = []
        self.refunds: dict[str, dict[str, Any]] = {}
        self.refund_ledger: list[RefundRecord] = []
        self.refund_outcome = "succeeded"
        self.payment_methods: dict[str, CardBehaviour] = dict(TEST_CARDS)
        self._idempotency: dict[tuple[str, str], _Stored] = {}
        self._faults: list[_Fault] = []
        self._ids = itertools.count(1)
        self._lock = threading.RLock()

    # -- test controls --------------------------------------------------------------------
    def inject(
        self, kind: str, *, times: int = 1, method: str | None = None, path: str | None = None
    ) -> None:
        """Make the next ``times`` matching requests fail with ``kind`` (see FAULTS).
        ``path`` matches a prefix of the request path (``/v1/payment_intents``)."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r} (one of {', '.join(FAULTS)})")
        with self._lock:
            self._faults.append(_Fault(kind, method.upper() if method else None, path, times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def expire_idempotency_keys(self) -> None:
        """Forget every stored idempotency key (Stripe keeps them at least 24 h)."""
        with self._lock:
            self._idempotency.clear()

    def add_customer(self, customer_id: str, **fields: Any) -> dict[str, Any]:
        """Register an existing customer (e.g. the ``stripe_customer_id`` of a price book)."""
        with self._lock:
            obj = self._customer_object(customer_id, fields)
            self.customers[customer_id] = obj
            return obj

    def add_payment_method(
        self, payment_method_id: str, behaves_like: str = "pm_card_visa"
    ) -> None:
        with self._lock:
            self.payment_methods[payment_method_id] = self.payment_methods[behaves_like]

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == method.upper() and r.path == path]

    def charges_for(self, invoice_id: str) -> list[Charge]:
        with self._lock:
            return [c for c in self.charges if c.metadata.get("invoice_id") == invoice_id]

    # -- the entry point ------------------------------------------------------------------
    def handle(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        body: bytes | str | None = None,
    ) -> Response:
        """Answer one HTTP request (``url`` absolute or a path with its query).

        Raises :class:`FakeConnectionError` for injected transport faults."""
        method = method.upper()
        parts = urlsplit(url)
        path = parts.path
        hdrs = CaseInsensitiveDict(dict(headers or {}))
        text = body.decode() if isinstance(body, bytes) else (body or "")
        params = decode_form(parts.query if method == "GET" else text)
        key = hdrs.get("Idempotency-Key") if method == "POST" else None
        with self._lock:
            fault = self._take_fault(method, path)
            if fault == "connection_error":
                self._log(method, path, params, key, None, fault=fault)
                raise FakeConnectionError("connection reset before the request arrived")
            if fault in ("rate_limit", "server_error"):
                resp = self._fault_response(fault)
                self._log(method, path, params, key, resp.status, fault=fault)
                return resp
            auth = self._authenticate(hdrs.get("Authorization"))
            if auth is not None:
                self._log(method, path, params, key, auth.status)
                return auth
            resp, replayed = self._idempotent(method, path, params, key, hdrs)
            self._log(method, path, params, key, resp.status, replayed=replayed, fault=fault)
            if fault == "drop_after":
                raise FakeConnectionError("connection closed after the request was executed")
            return resp

    # -- plumbing -------------------------------------------------------------------------
    def _take_fault(self, method: str, path: str) -> str | None:
        for f in self._faults:
            if (f.method is None or f.method == method) and (
                f.path is None or path.startswith(f.path)
            ):
                f.times -= 1
                if f.times <= 0:
                    self._faults.remove(f)
                return f.kind
        return None

    def _fault_response(self, kind: str) -> Response:
        if kind == "rate_limit":
            return self._response(
                429,
                {
                    "error": {
                        "type": "invalid_request_error",
                        "code": "rate_limit",
                        "message": "Request rate limit exceeded. Learn more about rate limits "
                        "here https://stripe.com/docs/rate-limits.",
                    }
                },
            )
        return self._response(
            500,
            {"error": {"type": "api_error", "message": "Sorry, something went wrong (fake)."}},
        )

    def _authenticate(self, header: str | None) -> Response | None:
        given = header[7:] if header and header.startswith("Bearer ") else ""
        if given and (self.api_key is None or given == self.api_key):
            return None
        if not given:
            message = "You did not provide an API key."
        else:
            masked = given[:8] + "*" * max(0, len(given) - 12) + given[-4:]
            message = f"Invalid API Key provided: {masked}"
        return self._response(401, {"error": {"type": "invalid_request_error", "message": message}})

    def _idempotent(
        self,
        method: str,
        path: str,
        params: dict[str, Any],
        key: str | None,
        headers: Mapping[str, str],
    ) -> tuple[Response, bool]:
        scope = headers.get("Authorization", "")
        fingerprint = (method, path, json.dumps(params, sort_keys=True))
        if key:
            stored = self._idempotency.get((scope, key))
            if stored is not None:
                if stored.fingerprint != fingerprint:
                    return self._response(
                        400,
                        {
                            "error": {
                                "type": "idempotency_error",
                                "message": "Keys for idempotent requests can only be used with "
                                "the same parameters they were first used with. Try using a key "
                                f"other than '{key}' if you meant to execute a different request.",
                            }
                        },
                    ), False
                extra = {"Idempotent-Replayed": "true", "Idempotency-Key": key}
                return Response(stored.status, stored.body, self._headers(extra)), True
        resp = self._dispatch(method, path, params)
        if key and resp.status in (200, 402, 500):
            self._idempotency[(scope, key)] = _Stored(fingerprint, resp.status, resp.body)
        return resp, False

    def _log(
        self,
        method: str,
        path: str,
        params: dict[str, Any],
        key: str | None,
        status: int | None,
        *,
        replayed: bool = False,
        fault: str | None = None,
    ) -> None:
        self.requests.append(RecordedRequest(method, path, params, key, status, replayed, fault))

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        h = {"Content-Type": "application/json", "Request-Id": f"req_fake{next(self._ids):06d}"}
        h.update(extra or {})
        return h

    def _response(self, status: int, obj: Any) -> Response:
        return Response(status, json.dumps(obj).encode(), self._headers())

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._ids):06d}"

    def _now(self) -> int:
        return int(self.clock())

    # -- routing --------------------------------------------------------------------------
    def _dispatch(self, method: str, path: str, params: dict[str, Any]) -> Response:
        segments = [s for s in path.split("/") if s]
        try:
            if segments[:1] != ["v1"]:
                raise _invalid(f"Unrecognized request URL ({method}: {path}).")
            route = segments[1:]
            obj = self._route(method, route, params, path)
            return self._response(200, obj)
        except _StripeError as exc:
            return self._response(exc.status, {"error": exc.error})

    def _route(self, method: str, route: list[str], params: dict[str, Any], path: str) -> Any:
        if route[:1] == ["refunds"]:
            try:
                answer = self._refund_route(method, route, params)
            except _RefundInvalid as exc:
                raise _StripeError(400, exc.error) from None
            if answer is not None:
                return answer
        if route == ["customers"] and method == "POST":
            return self._create_customer(params)
        if route == ["customers", "search"] and method == "GET":
            return self._search("customers", self.customers, params, path)
        if len(route) == 2 and route[0] == "customers" and method == "GET":
            if route[1] not in self.customers:
                raise _missing("customer", route[1])
            return self.customers[route[1]]
        if route == ["payment_intents"] and method == "POST":
            return self._create_intent(params)
        if route == ["payment_intents"] and method == "GET":
            return self._list_intents(params)
        if route == ["payment_intents", "search"] and method == "GET":
            return self._search("payment_intents", self.payment_intents, params, path)
        if len(route) >= 2 and route[0] == "payment_intents":
            pi = self.payment_intents.get(route[1])
            if pi is None:
                raise _missing("payment_intent", route[1])
            if len(route) == 2 and method == "GET":
                return pi
            if route[2:] == ["confirm"] and method == "POST":
                return self._confirm_existing(pi, params)
            if route[2:] == ["cancel"] and method == "POST":
                return self._cancel(pi, params)
        raise _invalid(f"Unrecognized request URL ({method}: {path}).")

    # -- customers ------------------------------------------------------------------------
    def _customer_object(self, customer_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "id": customer_id,
            "object": "customer",
            "created": self._now(),
            "description": params.get("description"),
            "email": params.get("email") or None,
            "livemode": False,
            "metadata": dict(params.get("metadata") or {}),
            "name": params.get("name") or None,
        }

    def _create_customer(self, params: dict[str, Any]) -> dict[str, Any]:
        obj = self._customer_object(self._new_id("cus"), params)
        self.customers[obj["id"]] = obj
        return obj

    # -- payment intents ------------------------------------------------------------------
    def _create_intent(self, params: dict[str, Any]) -> dict[str, Any]:
        if "amount" not in params:
            raise _invalid(
                "Missing required param: amount.", code="parameter_missing", param="amount"
            )
        try:
            amount = int(params["amount"])
        except ValueError:
            raise _invalid(
                "Invalid integer: " + str(params["amount"]),
                code="parameter_invalid_integer",
                param="amount",
            ) from None
        if amount < 1:
            raise _invalid(
                "This value must be greater than or equal to 1.",
                code="parameter_invalid_integer",
                param="amount",
            )
        currency = str(params.get("currency", ""))
        if len(currency) != 3 or not currency.isalpha():
            raise _invalid(
                f"Invalid currency: {currency}", code="parameter_missing", param="currency"
            )
        customer = params.get("customer")
        if customer and customer not in self.customers:
            raise _missing("customer", customer, param="customer")
        pm = params.get("payment_method")
        if pm and pm not in self.payment_methods:
            raise _missing("PaymentMethod", pm, param="payment_method")
        confirm = _bool(params.get("confirm", "false"))
        if "off_session" in params and not confirm:
            raise _invalid(
                "You can only pass `off_session` when `confirm` is true.", param="off_session"
            )
        if confirm and not pm:
            raise _invalid(
                "You cannot confirm this PaymentIntent because it's missing a payment method.",
                code="payment_intent_unexpected_state",
            )
        pid = self._new_id("pi")
        pi: dict[str, Any] = {
            "id": pid,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": "automatic",
            "client_secret": f"{pid}_secret_fake",
            "confirmation_method": "automatic",
            "created": self._now(),
            "currency": currency.lower(),
            "customer": customer or None,
            "description": params.get("description"),
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": dict(params.get("metadata") or {}),
            "next_action": None,
            "payment_method": pm or None,
            "payment_method_types": ["card"],
            "status": "requires_confirmation" if pm else "requires_payment_method",
        }
        self.payment_intents[pid] = pi
        if confirm:
            return self._confirm(pi, off_session=_bool(params.get("off_session", "false")))
        return pi

    def _confirm_existing(self, pi: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        if pi["status"] not in (
            "requires_payment_method",
            "requires_confirmation",
            "requires_action",
        ):
            raise _invalid(
                f"You cannot confirm this PaymentIntent because it has a status of {pi['status']}.",
                code="payment_intent_unexpected_state",
            )
        pm = params.get("payment_method") or pi["payment_method"]
        if not pm:
            raise _invalid(
                "You cannot confirm this PaymentIntent because it's missing a payment method.",
                code="payment_intent_unexpected_state",
            )
        if pm not in self.payment_methods:
            raise _missing("PaymentMethod", pm, param="payment_method")
        pi["payment_method"] = pm
        return self._confirm(pi, off_session=_bool(params.get("off_session", "false")))

    def _confirm(self, pi: dict[str, Any], *, off_session: bool) -> dict[str, Any]:
        pm = pi["payment_method"]
        card = self.payment_methods[pm]
        pi["last_payment_error"] = None
        pi["next_action"] = None
        if card.outcome == "succeeded":
            charge = Charge(
                id=self._new_id("ch"),
                payment_intent=pi["id"],
                amount=pi["amount"],
                currency=pi["currency"],
                customer=pi["customer"],
                payment_method=pm,
                metadata=dict(pi["metadata"]),
                created=self._now(),
            )
            self.charges.append(charge)
            pi.update(status="succeeded", amount_received=pi["amount"], latest_charge=charge.id)
            return pi
        if card.outcome == "authentication_required" and not (
            off_session and self.off_session_authentication == "decline"
        ):
            pi.update(
                status="requires_action",
                next_action={
                    "type": "use_stripe_sdk",
                    "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": ""},
                },
            )
            return pi
        charge_id = self._new_id("ch")
        self.failed_charges.append(charge_id)
        error: dict[str, Any] = {
            "type": "card_error",
            "code": card.code,
            "decline_code": card.decline_code,
            "message": card.message,
            "charge": charge_id,
            "doc_url": f"https://stripe.com/docs/error-codes/{card.code}",
            "payment_method": {
                "id": pm,
                "object": "payment_method",
                "type": "card",
                "card": {"brand": card.brand, "last4": card.last4},
            },
        }
        pi.update(status="requires_payment_method", latest_charge=charge_id)
        pi["last_payment_error"] = dict(error)
        raise _StripeError(402, {**error, "payment_intent": dict(pi)})

    def _cancel(self, pi: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        if pi["status"] in ("succeeded", "canceled"):
            raise _invalid(
                "You cannot cancel this PaymentIntent because it has a status of "
                f"{pi['status']}. Only a PaymentIntent with one of the following statuses may be "
                "canceled: requires_payment_method, requires_capture, requires_confirmation, "
                "requires_action, processing.",
                code="payment_intent_unexpected_state",
            )
        pi.update(
            status="canceled",
            canceled_at=self._now(),
            cancellation_reason=params.get("cancellation_reason") or None,
            next_action=None,
        )
        return pi

    def _list_intents(self, params: dict[str, Any]) -> dict[str, Any]:
        items = sorted(self.payment_intents.values(), key=lambda p: p["id"], reverse=True)
        if params.get("customer"):
            items = [p for p in items if p["customer"] == params["customer"]]
        limit = int(params.get("limit", 10))
        return {
            "object": "list",
            "data": items[:limit],
            "has_more": len(items) > limit,
            "url": "/v1/payment_intents",
        }

    # -- search ---------------------------------------------------------------------------
    def _search(
        self, kind: str, objects: Mapping[str, dict[str, Any]], params: dict[str, Any], path: str
    ) -> dict[str, Any]:
        query = str(params.get("query", ""))
        if not query.strip():
            raise _invalid(
                "Missing required param: query.", code="parameter_missing", param="query"
            )
        if re.search(r"\sOR\s", query):
            raise _invalid("The fake Stripe's search supports AND only.", param="query")
        clauses = []
        for text in re.split(r"\s+AND\s+", query.strip()):
            m = _CLAUSE.match(text)
            if m is None:
                raise _invalid(f"Invalid search query: {text!r}.", param="query")
            clauses.append((m.group("key"), m.group("field"), m.group("value")))
        visible_before = self.clock() - self.search_lag_seconds
        found = []
        for obj in objects.values():
            if self.search_lag_seconds and obj["created"] > visible_before:
                continue
            if all(
                (obj.get("metadata") or {}).get(k) == v if k else str(obj.get(f)) == v
                for k, f, v in clauses
            ):
                found.append(obj)
        found.sort(key=lambda o: (o["created"], o["id"]), reverse=True)
        limit = int(params.get("limit", 10))
        return {
            "object": "search_result",
            "data": found[:limit],
            "has_more": len(found) > limit,
            "next_page": None,
            "url": path,
        }


# --- the stripe.HTTPClient ----------------------------------------------------------------
class FakeStripeHTTPClient(stripe.HTTPClient):
    """``http_client=`` for ``stripe.StripeClient``: requests go to ``fake`` in process.

    The SDK's network retries still run (``max_network_retries``), without sleeping:
    ``_sleep_time_seconds`` returns 0 unless ``retry_sleep=True``. Every retry the SDK
    makes is recorded in ``fake.requests`` like any request."""

    name = "fake-stripe"

    def __init__(self, fake: FakeStripe, *, retry_sleep: bool = False) -> None:
        super().__init__()
        self.fake = fake
        self.retry_sleep = retry_sleep
        self.closed = False

    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[bytes, int, Mapping[str, str]]:
        try:
            resp = self.fake.handle(method, url, headers, post_data)
        except FakeConnectionError as exc:
            raise stripe.APIConnectionError(  # type: ignore[no-untyped-call]
                "Unexpected error communicating with Stripe. If this problem persists, let "
                f"us know at support@stripe.com.\n\n(Network error: FakeConnectionError: {exc})",
                should_retry=True,
            ) from exc
        return resp.body, resp.status, CaseInsensitiveDict(resp.headers)

    def request_stream(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[Any, int, Mapping[str, str]]:
        raise NotImplementedError("the fake Stripe does not stream")

    def close(self) -> None:
        self.closed = True

    def _sleep_time_seconds(self, num_retries: int) -> float:
        return super()._sleep_time_seconds(num_retries) if self.retry_sleep else 0.0


# --- the loopback server ------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # HTTP/1.0: one request per connection, so stopping the server never waits on an
    # idle keep-alive connection.

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k: v for k, v in self.headers.items()}
        try:
            resp = self.server.fake.handle(self.command, self.path, headers, body)
        except FakeConnectionError:
            # Close the socket without a byte of response: the client sees the
            # connection dropped (requests: RemoteDisconnected / ConnectionError).
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.send_response(resp.status)
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        self.wfile.write(resp.body)

    do_GET = _serve
    do_POST = _serve
    do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # quiet, and never anything from the Authorization header


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, addr: tuple[str, int], fake: FakeStripe) -> None:
        super().__init__(addr, _Handler)
        self.fake = fake


@dataclass
class FakeStripeServer:
    """A loopback HTTP server speaking the same :class:`FakeStripe`::

    with FakeStripeServer(fake) as server:
        os.environ["STRIPE_API_BASE"] = server.url   # http://127.0.0.1:<port>
    """

    fake: FakeStripe
    host: str = "127.0.0.1"
    port: int = 0
    _server: _Server | None = field(default=None, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("server not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeStripeServer:
        self._server = _Server((self.host, self.port), self.fake)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeStripeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def unused_local_url() -> str:
    """``http://127.0.0.1:<port>`` where nothing listens (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
