"""Errors as HTTP answers: ``{"error": {"code": "...", "message": "..."}}`` everywhere.

The library's exceptions keep their stable ``code``; the status follows the class:

======================================  ======  ==========================================
class                                   status  message
======================================  ======  ==========================================
InputError (and subclasses)             400     the library's (no_payment_method, ...)
NotFoundError                           404     the library's
StateError                              409     the library's
LockedError                             409     generic (the lock path stays private)
StripeNotConfiguredError                503     generic
PaymentRefusedError                     400     code = Stripe's code (``resource_missing``),
                                                plus ``param`` (``paymentMethod``)
PaymentDeclinedError                    402     Stripe's, plus ``declineCode``, ``stripeCode``
PaymentActionRequiredError              402     the library's (the customer must act)
other PaymentError                      502     the library's (Stripe unavailable)
LakeError, RenderError, ConfigError...  500     generic (details go to the server log)
======================================  ======  ==========================================

FastAPI's own request validation answers 422 ``invalid_request`` (with the invalid
fields), an unknown route 404 ``not_found``, a wrong method 405 ``method_not_allowed``,
authentication 401 ``unauthorized``, a refused scope 403 ``forbidden`` or
``admin_required``, and anything unexpected 500 ``internal_error``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from .._core.errors import (
    BillingError,
    InputError,
    LockedError,
    NotFoundError,
    PaymentActionRequiredError,
    PaymentDeclinedError,
    PaymentError,
    PaymentRefusedError,
    StateError,
    StripeNotConfiguredError,
)
from ..usage.recording import InvalidUsageError
from .json import JSONResponse
from .models import ErrorBody

log = logging.getLogger("billing_batch.api")


class ApiError(Exception):
    """An HTTP-level refusal (authentication, scope, size) with its status and code."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, **extra}}, status_code=status, headers=headers
    )


_GENERIC_500 = "the billing service could not complete the request; the error was logged"


#: Stripe's request parameters as the API's fields (for ``param`` in a refusal).
_PARAMS = {"payment_method": "paymentMethod"}


def billing_error_response(exc: BillingError, **extra: Any) -> JSONResponse:
    """The HTTP answer for a library error (see the table in the module docstring);
    ``extra`` fields join the error object (e.g. the recorded payment attempt)."""
    if isinstance(exc, InvalidUsageError):
        return error_response(400, exc.code, exc.message, errors=[e.to_json() for e in exc.errors])
    if isinstance(exc, InputError):
        return error_response(400, exc.code, exc.message, **extra)
    if isinstance(exc, PaymentRefusedError):
        # The caller's mistake as Stripe names it (an unknown payment method is
        # resource_missing), never a 502 as if Stripe were down.
        param = _PARAMS.get(exc.param or "", exc.param)
        return error_response(
            400, exc.stripe_code or exc.code, exc.message, type=exc.code, param=param, **extra
        )
    if isinstance(exc, NotFoundError):
        return error_response(404, exc.code, exc.message)
    if isinstance(exc, StateError):
        return error_response(409, exc.code, exc.message)
    if isinstance(exc, LockedError):
        return error_response(
            409,
            exc.code,
            "another billing run holds the lock; try again shortly",
            headers={"Retry-After": "5"},
        )
    if isinstance(exc, StripeNotConfiguredError):
        return error_response(503, exc.code, "payments are not configured on this server")
    if isinstance(exc, PaymentDeclinedError):
        return error_response(
            402,
            exc.code,
            exc.message,
            declineCode=exc.decline_code,
            stripeCode=exc.stripe_code,
            **extra,
        )
    if isinstance(exc, PaymentActionRequiredError):
        return error_response(402, exc.code, exc.message, **extra)
    if isinstance(exc, PaymentError):
        return error_response(502, exc.code, exc.message, **extra)
    log.error("request failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
    return error_response(500, exc.code, _GENERIC_500)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        where, rest = parts[0], parts[1:]
        return ".".join(rest) if rest else where
    return ".".join(parts)


def _validation_response(exc: RequestValidationError) -> JSONResponse:
    errors = [
        {
            "field": _field(tuple(e.get("loc", ()))),
            "message": str(e.get("msg", "invalid")).removeprefix("Value error, "),
        }
        for e in exc.errors()
    ]
    first = errors[0] if errors else {"field": "request", "message": "invalid"}
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return error_response(
        422,
        "invalid_request",
        f"{first['field']}: {first['message']}{more}",
        errors=errors,
    )


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into the JSON error body."""

    async def on_billing_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BillingError)
        return billing_error_response(exc)

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message, headers=exc.headers)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return _validation_response(exc)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, code, message, headers=headers)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal_error", _GENERIC_500)

    app.add_exception_handler(BillingError, on_billing_error)
    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)


def _doc(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


#: Error answers every authenticated operation may give (for the OpenAPI schema).
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _doc("Refused input (the library's rules), with a stable code"),
    401: _doc("Missing or unknown API key"),
    403: _doc("The key may not do this (another workspace's write, or admin only)"),
    404: _doc("Not found, or not visible to this key"),
    409: _doc("Not allowed in the current state, or another run holds the lock"),
    422: _doc("The request does not match the schema"),
    500: _doc("Server error (details in the server log)"),
}
