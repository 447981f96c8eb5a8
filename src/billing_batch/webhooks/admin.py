"""Webhook administration: re-enable an endpoint, list endpoints and deliveries
(``billing-batch webhooks enable|endpoints|list``). Never a secret in any output."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from .._core.clock import utcnow
from .._core.errors import InputError, NotFoundError
from ..config.settings import Settings
from ..storage.state import Row, StateConnection, query
from . import _state, endpoints
from .egress import display_url

DELIVERY_STATUSES = ("pending", "delivered", "failed")


def enable_endpoint(
    settings: Settings, endpoint_id: str, *, now: datetime | None = None
) -> dict[str, Any]:
    """Re-enable an endpoint disabled by a 410. It receives events recorded from now
    on; deliveries stopped when it was disabled stay ``failed``."""
    if endpoint_id not in {ep.id for ep in settings.webhooks.endpoints}:
        raise NotFoundError(f"no configured webhook endpoint {endpoint_id!r}")
    at = now or utcnow()
    with _state.opened(settings) as con:
        endpoints.sync(con, settings, at)
        endpoints.enable(con, endpoint_id, at)
    return next(e for e in list_endpoints(settings) if e["id"] == endpoint_id)


def list_endpoints(settings: Settings) -> list[dict[str, Any]]:
    """Configured endpoints (and formerly configured ones still in the state store)
    with their state and delivery counts. Never a secret: only the name of the
    environment variable that holds it and how many secrets it currently has."""
    with _state.opened(settings) as con:
        states = endpoints.states(con)
        counts: dict[str, dict[str, int]] = {}
        for r in query(con, "webhooks/delivery_counts"):
            counts.setdefault(str(r["endpoint_id"]), {})[str(r["status"])] = int(r["n"])
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for ep in settings.webhooks.endpoints:
        seen.add(ep.id)
        out.append(
            {
                "id": ep.id,
                "url": display_url(ep.url),
                "events": list(ep.events) or "all",
                "secret_env": ep.secret_env,
                "secrets_set": len(os.environ.get(ep.secret_env, "").split()),
                "configured": True,
                **_state_dict(states.get(ep.id)),
                "deliveries": counts.get(ep.id, {}),
            }
        )
    for endpoint_id, state in states.items():
        if endpoint_id not in seen:
            out.append(
                {
                    "id": endpoint_id,
                    "url": display_url(str(state["url"])),
                    "configured": False,
                    **_state_dict(state),
                    "deliveries": counts.get(endpoint_id, {}),
                }
            )
    return out


def _state_dict(state: Row | None) -> dict[str, Any]:
    if state is None:
        return {"state": "new (not seen by a delivery pass yet)"}
    return {
        "state": "enabled" if state["enabled"] else "disabled",
        "disabled_reason": state["disabled_reason"],
        "disabled_at": state["disabled_at"],
        "first_seen_at": state["created_at"],
        "deliver_since": state["deliver_since"],
    }


def list_deliveries(
    settings: Settings,
    *,
    status: str | None = None,
    endpoint_id: str | None = None,
    event_id: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Deliveries (newest event first) with their attempts."""
    if status is not None and status not in DELIVERY_STATUSES:
        raise InputError(f"unknown delivery status {status!r} (pending, delivered, failed)")
    filters = {"status": status, "endpoint_id": endpoint_id, "event_id": event_id}
    with _state.opened(settings) as con:
        cur = query(con, "webhooks/deliveries", filters)
        try:
            rows = _state.first(cur, limit)
        finally:
            cur.close()
        return [_delivery_dict(con, r) for r in rows]


def _delivery_dict(con: StateConnection, r: Row) -> dict[str, Any]:
    attempts = query(
        con,
        "webhooks/delivery_attempts",
        {"event_id": r["event_id"], "endpoint_id": r["endpoint_id"]},
    ).fetchall()
    return {
        "event_id": r["event_id"],
        "endpoint_id": r["endpoint_id"],
        "type": r["type"],
        "workspace_id": r["workspace_id"],
        "subject_id": r["subject_id"],
        "event_created_at": r["event_created_at"],
        "status": r["status"],
        "attempts": r["attempts"],
        "next_attempt_at": r["next_attempt_at"] if r["status"] == "pending" else None,
        "last_attempt_at": r["last_attempt_at"],
        "delivered_at": r["delivered_at"],
        "last_error": r["last_error"],
        "attempt_log": [dict(a) for a in attempts],
    }


__all__ = ["DELIVERY_STATUSES", "enable_endpoint", "list_deliveries", "list_endpoints"]
