"""Webhooks: billing events out to other systems, signed (Standard Webhooks), at least
once, with stable ids. See ``docs/webhooks.md``.

- :mod:`.outbox`: the write side: a state change appends its event in its own
  transaction (``record_event``); ``record_usage_events`` reconciles the lake's ingests.
- :mod:`.signing`: sign and verify (pure; all a receiver needs).
- :mod:`.egress`: the SSRF guard and the POST pinned to the checked address.
- :mod:`.retries`: the retry schedule (pure).
- :mod:`.endpoints`: the endpoints' state in the store, their secrets.
- :mod:`.delivery`: one delivery pass (``deliver``): claim, attempt, record.
- :mod:`.report`: what a pass reports.
- :mod:`.admin`: re-enable an endpoint, list endpoints and deliveries.

Names are imported on first use, so that a receiver importing ``verify`` loads only
:mod:`.signing`: no DuckDB (the outbox's usage reconciliation reads the lake), no httpx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .admin import enable_endpoint, list_deliveries, list_endpoints
    from .delivery import deliver
    from .egress import is_public_address
    from .outbox import EVENT_TYPES, event_id, record_event, record_usage_events
    from .report import AttemptResult, DeliveryReport
    from .retries import RETRY_DELAYS
    from .signing import DEFAULT_TOLERANCE_SECONDS, sign, signature_header, verify

#: public name -> its module in this package
_EXPORTS: dict[str, str] = {
    "AttemptResult": "report",
    "DEFAULT_TOLERANCE_SECONDS": "signing",
    "DeliveryReport": "report",
    "EVENT_TYPES": "outbox",
    "RETRY_DELAYS": "retries",
    "deliver": "delivery",
    "enable_endpoint": "admin",
    "event_id": "outbox",
    "is_public_address": "egress",
    "list_deliveries": "admin",
    "list_endpoints": "admin",
    "record_event": "outbox",
    "record_usage_events": "outbox",
    "sign": "signing",
    "signature_header": "signing",
    "verify": "signing",
}

__all__ = [
    "DEFAULT_TOLERANCE_SECONDS",
    "EVENT_TYPES",
    "RETRY_DELAYS",
    "AttemptResult",
    "DeliveryReport",
    "deliver",
    "enable_endpoint",
    "event_id",
    "is_public_address",
    "list_deliveries",
    "list_endpoints",
    "record_event",
    "record_usage_events",
    "sign",
    "signature_header",
    "verify",
]


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # the next access skips __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
