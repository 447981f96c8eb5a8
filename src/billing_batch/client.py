"""``BillingClient``: the seed's SDK in Python, over the HTTP API.

::

    from billing_batch.client import BillingClient

    with BillingClient("http://127.0.0.1:8000", api_key) as billing:
        billing.record_usage("ws_123", "api_calls", 1000, datetime.now(UTC))
        usage = billing.get_usage("ws_123", "api_calls", "2024-01-01", "2024-01-31")
        invoice = billing.create_invoice("ws_123", "2024-01-01", "2024-01-31")
        payment = billing.pay_invoice(invoice["id"], payment_method="pm_card_visa")
        pdf = billing.download_invoice_pdf(invoice["id"], path="invoice.pdf")

Answers are the API's JSON as dicts, numbers with a fraction as ``Decimal`` (parsed by
:func:`billing_batch._core.jsonutil.loads`; amounts are never floats). Requests are written by
:func:`billing_batch._core.jsonutil.dumps` (a ``Decimal`` quantity goes out exactly).

Errors come back as the library's exceptions, by the API's stable ``code``
(``not_found`` → NotFoundError, ``invalid_usage`` → InvalidUsageError with each event's
``index`` and ``reason``, ``payment_declined`` → PaymentDeclinedError, ...); answers with
no library class raise :class:`ApiError` subclasses (401 AuthenticationError, 403
PermissionDeniedError, 422/413 InvalidRequestError); a server that cannot be reached
raises :class:`ApiConnectionError`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from ._core import errors
from ._core.errors import BillingError, InputError, NotFoundError, StateError
from ._core.jsonutil import datetime_text, dumps, loads
from .usage.recording import EventError, InvalidUsageError

DEFAULT_TIMEOUT = 30.0


class ApiError(BillingError):
    """An error answer with no library class (authentication, scope, schema, server)."""

    code = "api_error"

    def __init__(self, message: str, *, status: int, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        if code is not None:
            self.code = code


class AuthenticationError(ApiError):
    """401: missing or unknown API key."""

    code = "unauthorized"


class PermissionDeniedError(ApiError):
    """403: the key may not do this (another workspace, or admin only)."""

    code = "forbidden"


class InvalidRequestError(ApiError, InputError):
    """422 / 413: the request does not match the API's schema, or is too large."""

    code = "invalid_request"


class ApiConnectionError(ApiError):
    """The API could not be reached, or did not answer in time."""

    code = "api_unreachable"


def _subclasses(cls: type[BillingError]) -> Iterator[type[BillingError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


#: The library's exception classes by code (those defined in ``errors.py``).
_LIBRARY_CLASSES: list[type[BillingError]] = [BillingError, *_subclasses(BillingError)]
_BY_CODE: dict[str, type[BillingError]] = {
    cls.code: cls for cls in _LIBRARY_CLASSES if cls.__module__ == errors.__name__
}


def error_from_response(response: httpx.Response) -> BillingError:
    """The exception for an error answer (by its JSON ``code``, else by status)."""
    status = response.status_code
    try:
        body = loads(response.content)
        detail = body["error"]
        code = str(detail["code"])
        message = str(detail["message"])
    except (ValueError, TypeError, KeyError):
        text = response.text.strip()[:200] or response.reason_phrase
        return ApiError(f"HTTP {status}: {text}", status=status, code=f"http_{status}")
    if code == InvalidUsageError.code:
        return InvalidUsageError(
            message,
            [EventError(int(e["index"]), str(e["reason"])) for e in detail.get("errors", [])],
        )
    if code == errors.PaymentDeclinedError.code:
        return errors.PaymentDeclinedError(
            message, decline_code=detail.get("declineCode"), stripe_code=detail.get("stripeCode")
        )
    if detail.get("type") == errors.PaymentRefusedError.code:  # code: Stripe's own
        return errors.PaymentRefusedError(message, stripe_code=code, param=detail.get("param"))
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls(message)
    if status == 401:
        return AuthenticationError(message, status=status, code=code)
    if status == 403:
        return PermissionDeniedError(message, status=status, code=code)
    if status in (413, 422):
        return InvalidRequestError(message, status=status, code=code)
    if status == 400:
        return InputError(message)
    if status == 404:
        return NotFoundError(message)
    if status == 409:
        return StateError(message)
    return ApiError(message, status=status, code=code)


def _day(value: date | str) -> str:
    return value.isoformat() if isinstance(value, date) else value


def _quantity(value: Decimal | int | float | str) -> Decimal | int | str:
    if isinstance(value, bool):
        raise InputError(f"quantity must be a number, got {value!r}")
    if isinstance(value, float):
        return Decimal(repr(value))  # the shortest text that round-trips, never binary noise
    return value


def _timestamp(value: datetime | str) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InputError("timestamp must be timezone-aware (UTC)")
        return datetime_text(value)
    return value


def _segment(value: str) -> str:
    return quote(value, safe="")


class BillingClient:
    """The Billing Rail API (``base_url`` such as ``http://127.0.0.1:8000``)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        from . import __version__

        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            transport=transport,
            headers={
                "Authorization": f"Bearer {api_key}",
                "Accept": "application/json",
                "User-Agent": f"billing-batch-client/{__version__}",
            },
        )

    # --- plumbing ------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BillingClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str | int | None] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        send_headers = dict(headers or {})
        content: bytes | None = None
        if body is not None:
            content = dumps(body).encode("utf-8")
            send_headers["Content-Type"] = "application/json"
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.request(
                method, path, content=content, params=query, headers=send_headers
            )
        except httpx.TimeoutException as exc:
            raise ApiConnectionError(f"{method} {path}: timed out ({exc})", status=0) from exc
        except httpx.TransportError as exc:
            raise ApiConnectionError(f"{method} {path}: {exc}", status=0) from exc
        if response.is_error:
            raise error_from_response(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        try:
            return loads(response.content)
        except ValueError as exc:
            raise ApiError(
                f"{method} {path}: the answer is not JSON", status=response.status_code
            ) from exc

    # --- usage ---------------------------------------------------------------------------
    def record_usage(
        self,
        workspace_id: str,
        metric: str,
        quantity: Decimal | int | float | str,
        timestamp: datetime | str,
        id: str | None = None,
        idempotency_key: str | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Record one event (recordUsage); answers ``{"accepted": 1, "ids": [...]}``."""
        event: dict[str, Any] = {}
        if id is not None:
            event["id"] = id
        event.update(
            workspaceId=workspace_id,
            metric=metric,
            quantity=_quantity(quantity),
            timestamp=_timestamp(timestamp),
        )
        if properties is not None:
            event["properties"] = dict(properties)
        return self._post_usage(event, idempotency_key)

    def record_usage_batch(
        self, events: Sequence[Mapping[str, Any]], idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Record several events, all or none (camelCase keys, as in the API)."""
        batch = []
        for e in events:
            event = dict(e)
            if "quantity" in event:
                event["quantity"] = _quantity(event["quantity"])
            if "timestamp" in event:
                event["timestamp"] = _timestamp(event["timestamp"])
            batch.append(event)
        return self._post_usage({"events": batch}, idempotency_key)

    def _post_usage(self, body: Any, idempotency_key: str | None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None
        result: dict[str, Any] = self._json("POST", "/v1/billing/usage", body=body, headers=headers)
        return result

    def get_usage(
        self,
        workspace_id: str,
        metric: str | None,
        start_date: date | str,
        end_date: date | str,
    ) -> dict[str, Any]:
        """``{"metric", "total", "breakdown": [{"date", "quantity"}]}`` (getUsage)."""
        result: dict[str, Any] = self._json(
            "GET",
            "/v1/billing/usage",
            params={
                "workspaceId": workspace_id,
                "metric": metric,
                "startDate": _day(start_date),
                "endDate": _day(end_date),
            },
        )
        return result

    # --- invoices ------------------------------------------------------------------------
    def create_invoice(
        self, workspace_id: str, start: date | str, end: date | str
    ) -> dict[str, Any]:
        """Create (or refresh) the draft invoice for the period (createInvoice)."""
        result: dict[str, Any] = self._json(
            "POST",
            "/v1/billing/invoices",
            body={"workspaceId": workspace_id, "period": {"start": _day(start), "end": _day(end)}},
        )
        return result

    def get_invoice(self, id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/v1/billing/invoices/{_segment(id)}")
        return result

    def list_invoices(
        self, workspace_id: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        page = self._json(
            "GET",
            "/v1/billing/invoices",
            params={"workspaceId": workspace_id, "status": status, "limit": limit},
        )
        data: list[dict[str, Any]] = page["data"]
        return data

    def pay_invoice(self, id: str, payment_method: str | None = None) -> dict[str, Any]:
        """Charge an open or overdue invoice (payInvoice)."""
        body = {"paymentMethod": payment_method} if payment_method is not None else {}
        result: dict[str, Any] = self._json(
            "POST", f"/v1/billing/invoices/{_segment(id)}/pay", body=body
        )
        return result

    def finalize_invoice(self, id: str) -> dict[str, Any]:
        """Number and freeze a draft (admin key)."""
        result: dict[str, Any] = self._json("POST", f"/v1/billing/invoices/{_segment(id)}/finalize")
        return result

    def void_invoice(self, id: str, reason: str = "") -> dict[str, Any]:
        """Cancel an open or overdue invoice (admin key)."""
        result: dict[str, Any] = self._json(
            "POST", f"/v1/billing/invoices/{_segment(id)}/void", body={"reason": reason}
        )
        return result

    def download_invoice_pdf(
        self, id: str, path: str | Path | None = None, *, copy: str = "current"
    ) -> bytes:
        """The invoice's PDF (``copy="current"``: its status now; ``"original"``: the
        archival copy written at finalization); also written to ``path`` (atomically,
        its folder created) when given."""
        response = self._send(
            "GET",
            f"/v1/billing/invoices/{_segment(id)}/pdf",
            params={"copy": copy},
            headers={"Accept": "application/pdf"},
        )
        data = response.content
        if path is not None:
            from ._core.files import atomic_write_bytes

            target = Path(path).expanduser().resolve()
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, data)
        return data

    # --- subscriptions -------------------------------------------------------------------
    def create_subscription(
        self,
        workspace_id: str,
        plan: str,
        start: date | str,
        anchor_day: int = 1,
        trial_days: int = 0,
    ) -> dict[str, Any]:
        """Subscribe a workspace to a plan (admin key); answers its subscriptions."""
        result: dict[str, Any] = self._json(
            "POST",
            "/v1/billing/subscriptions",
            body={
                "workspaceId": workspace_id,
                "plan": plan,
                "start": _day(start),
                "anchorDay": anchor_day,
                "trialDays": trial_days,
            },
        )
        return result

    def get_subscription(self, workspace_id: str, on: date | str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "GET",
            f"/v1/billing/subscriptions/{_segment(workspace_id)}",
            params={"on": _day(on) if on is not None else None},
        )
        return result

    def change_subscription(
        self, workspace_id: str, plan: str, effective: date | str
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "POST",
            f"/v1/billing/subscriptions/{_segment(workspace_id)}/change",
            body={"plan": plan, "effective": _day(effective)},
        )
        return result

    def cancel_subscription(self, workspace_id: str, effective: date | str) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "POST",
            f"/v1/billing/subscriptions/{_segment(workspace_id)}/cancel",
            body={"effective": _day(effective)},
        )
        return result


__all__ = [
    "ApiConnectionError",
    "ApiError",
    "AuthenticationError",
    "BillingClient",
    "InvalidRequestError",
    "PermissionDeniedError",
    "error_from_response",
]
