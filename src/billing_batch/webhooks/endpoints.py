"""Webhook endpoints: their state in the store and their secrets.

Every configured endpoint gets a row in ``webhook_endpoint_state`` the first time a
delivery pass sees it (``deliver_since`` = that moment minus ``max_age_hours``: a new
endpoint receives the events still inside the delivery window, never older history).
A ``410 Gone`` disables it and stops its pending deliveries; it stays disabled until
re-enabled (:func:`enable`), and then receives the events created from that moment.
Narrowing an endpoint's ``events`` stops its pending deliveries of the other types.

Secrets never reach the store: an endpoint names the environment variable that holds
its ``whsec_`` secret(s) (:func:`secrets_of`).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from .._core.clock import ts
from .._core.errors import ConfigError
from ..config.settings import Settings, WebhookEndpoint
from ..storage.state import Row, StateConnection, query, query_many, transaction
from .signing import secret_key


def sync(con: StateConnection, settings: Settings, now: datetime) -> None:
    """Record the configured endpoints not seen before (and keep their URLs current)."""
    window = timedelta(hours=settings.webhooks.max_age_hours)
    rows = [
        {"endpoint_id": ep.id, "url": ep.url, "now": ts(now), "deliver_since": ts(now - window)}
        for ep in settings.webhooks.endpoints
    ]
    with transaction(con):
        query_many(con, "webhooks/sync_endpoint", rows)


def states(con: StateConnection) -> dict[str, Row]:
    """The stored state of every endpoint seen so far, by endpoint id."""
    rows = query(con, "webhooks/endpoint_states").fetchall()
    return {str(r["endpoint_id"]): r for r in rows}


def disable(con: StateConnection, endpoint_id: str, reason: str, now: datetime) -> int:
    """Disable the endpoint and stop its pending deliveries (inside the caller's
    transaction); return how many were stopped."""
    query(
        con,
        "webhooks/disable_endpoint",
        {"endpoint_id": endpoint_id, "reason": reason, "now": ts(now)},
    )
    cur = query(
        con,
        "webhooks/stop_endpoint_deliveries",
        {"endpoint_id": endpoint_id, "last_error": f"stopped: endpoint disabled ({reason})"},
    )
    return max(cur.rowcount, 0)


def enable(con: StateConnection, endpoint_id: str, now: datetime) -> None:
    """Enable a disabled endpoint again: it receives the events created from ``now``."""
    with transaction(con):
        query(con, "webhooks/enable_endpoint", {"endpoint_id": endpoint_id, "now": ts(now)})


def stop_unsubscribed(con: StateConnection, endpoint: WebhookEndpoint) -> None:
    """Pending deliveries of types the endpoint no longer subscribes to are stopped."""
    if not endpoint.events:
        return
    with transaction(con):
        pending = query(con, "webhooks/pending_event_types", {"endpoint_id": endpoint.id})
        for event_type in [str(r["type"]) for r in pending.fetchall()]:
            if event_type not in endpoint.events:
                query(
                    con,
                    "webhooks/stop_deliveries_of_type",
                    {"endpoint_id": endpoint.id, "event_type": event_type},
                )


def secrets_of(endpoint: WebhookEndpoint) -> list[str]:
    """The endpoint's ``whsec_`` secrets (several during a rotation), from its
    environment variable. Raises ConfigError when it is unset or a secret is malformed."""
    raw = os.environ.get(endpoint.secret_env, "")
    secrets = raw.split()
    if not secrets:
        raise ConfigError(
            f"webhook endpoint {endpoint.id!r}: environment variable "
            f"{endpoint.secret_env} (its whsec_ secret) is not set"
        )
    for s in secrets:
        try:
            secret_key(s)
        except ConfigError as exc:
            raise ConfigError(
                f"webhook endpoint {endpoint.id!r}: {endpoint.secret_env}: {exc}"
            ) from None
    return secrets


__all__ = ["disable", "enable", "secrets_of", "states", "stop_unsubscribed", "sync"]
