"""Webhook delivery: at-least-once, one pass at a time.

The write side is :mod:`.outbox`: every state change appends its event to the ``outbox``
table in the same transaction. A delivery pass reads the outbox and delivers each event
to every configured endpoint subscribed to its type. The event catalogue, headers,
signature scheme and retry schedule are documented in ``docs/webhooks.md``.

One delivery pass (:func:`deliver`):

1. **Endpoints** (:mod:`.endpoints`): every configured endpoint is recorded the first
   time a pass sees it; one disabled by a ``410 Gone`` stays disabled until
   re-enabled (:func:`.admin.enable_endpoint`).
2. **Schedule**: one ``webhook_deliveries`` row per (event, enabled endpoint subscribed
   to its type, event not older than the endpoint's ``deliver_since``): ``pending``,
   first due at the event's time.
3. **Attempt** each due delivery: *claim* it (a small transaction that bumps
   ``attempts`` and leases it for a while so a concurrent pass leaves it alone), POST it
   (:mod:`.signing`, through the SSRF guard of :mod:`.egress`), then record the outcome
   in its own small transaction. A crash between the POST and that record leaves the
   delivery pending: the lease expires and a later pass sends it again with the same
   ``webhook-id``. That is the at-least-once guarantee; receivers dedupe on
   ``webhook-id``.

Outcomes: ``2xx`` → ``delivered``. ``410 Gone`` → the endpoint is disabled (with its
reason) and its pending deliveries are stopped (``failed``). Anything else (other
status codes, redirects, timeouts, connection errors, a refused destination) → the
attempt is recorded and the next one is scheduled with exponential backoff and jitter
(:mod:`.retries`), until ``max_age_hours`` after the event; then ``failed``.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx

from .._core.clock import parse_ts, ts, utcnow
from .._core.errors import ConfigError
from ..config.settings import Settings, WebhookEndpoint
from ..storage.state import Row, StateConnection, query, transaction
from . import _state, egress, endpoints, retries
from .report import AttemptResult, DeliveryReport
from .signing import signature_header

log = logging.getLogger(__name__)

#: After this many consecutive connection-level failures (timeout, refused connection,
#: unresolvable host) to one endpoint in one pass, its other due deliveries are not sent
#: in this pass: each gets a failed attempt "not sent" and its normal backoff, so a dead
#: receiver cannot hold a pass for ``timeout × deliveries``.
MAX_CONSECUTIVE_CONNECT_FAILURES = 3

_USER_AGENT = "billing-batch-webhooks/1"


@dataclass
class _Due:
    event_id: str
    endpoint_id: str
    event_type: str
    created_at: datetime
    attempts: int
    payload: bytes

    @classmethod
    def of(cls, row: Row) -> _Due:
        return cls(
            event_id=str(row["event_id"]),
            endpoint_id=str(row["endpoint_id"]),
            event_type=str(row["type"]),
            created_at=parse_ts(str(row["created_at"])),
            attempts=int(row["attempts"]),
            payload=str(row["payload"]).encode("utf-8"),
        )


@dataclass
class _Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int
    retry_after: timedelta | None = None
    #: A connection-level failure (nothing reached the receiver's application).
    unreachable: bool = False

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


# --- the delivery pass -----------------------------------------------------------------
def deliver(
    settings: Settings,
    *,
    now: datetime | None = None,
    client: httpx.Client | None = None,
    limit: int | None = None,
) -> DeliveryReport:
    """Run one delivery pass (see the module docstring) and report what it did.

    ``now`` fixes the clock for the whole pass (scheduling, ``webhook-timestamp``,
    attempt times); by default each attempt reads the real clock, so a long pass still
    sends fresh timestamps. ``client`` replaces the pass's own ``httpx.Client`` (which
    ignores proxy environment variables and never follows redirects). ``limit`` caps
    the number of attempts in this pass.

    A failed attempt is not an error of the pass: it is recorded and retried later.
    Raises ConfigError (before any request) when an enabled endpoint's URL is not
    http(s) or its secret is missing or malformed; LakeError if the state store fails.
    """
    clock: Callable[[], datetime] = (lambda: now) if now is not None else utcnow
    if now is not None and now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    configured = {ep.id: ep for ep in settings.webhooks.endpoints}
    if len(configured) != len(settings.webhooks.endpoints):
        raise ConfigError("webhook endpoint ids must be unique")
    report = DeliveryReport()
    with _state.opened(settings) as con:
        start = clock()
        enabled, secrets = _prepare(con, settings, start)
        report.scheduled = _create_deliveries(con, enabled)
        with _http(settings, client) as http:
            run = _Pass(con, settings, http, configured, secrets, clock, report)
            for due in _due(con, [ep.id for ep in enabled], start, limit):
                run.attempt(due)
    return report


def _prepare(
    con: StateConnection, settings: Settings, now: datetime
) -> tuple[list[WebhookEndpoint], dict[str, list[str]]]:
    """Record the endpoints; return the enabled ones and their secrets, checked before
    any request (a bad URL or secret fails the pass), their unsubscribed deliveries
    stopped."""
    endpoints.sync(con, settings, now)
    states = endpoints.states(con)
    enabled = [ep for ep in settings.webhooks.endpoints if states[ep.id]["enabled"]]
    secrets: dict[str, list[str]] = {}
    for ep in enabled:  # fail fast on configuration, before any request
        egress.check_url(ep.url)
        secrets[ep.id] = endpoints.secrets_of(ep)
        endpoints.stop_unsubscribed(con, ep)
    return enabled, secrets


def _create_deliveries(con: StateConnection, enabled: Sequence[WebhookEndpoint]) -> int:
    """Create the pending delivery rows that do not exist yet; return how many."""
    created = 0
    with transaction(con):
        for ep in enabled:
            for event_type in ep.events or (None,):
                params = {"endpoint_id": ep.id, "event_type": event_type}
                created += max(query(con, "webhooks/create_deliveries", params).rowcount, 0)
    return created


def _due(
    con: StateConnection, endpoint_ids: Sequence[str], now: datetime, limit: int | None
) -> list[_Due]:
    """The due deliveries of these endpoints, in the order they fell due (then event
    time, event id, endpoint id), at most ``limit``."""
    cursors = [
        query(con, "webhooks/due_deliveries", {"endpoint_id": e, "now": ts(now)})
        for e in endpoint_ids
    ]
    try:
        rows = heapq.merge(*cursors, key=_due_order)
        return [_Due.of(r) for r in _state.first(rows, limit)]
    finally:
        for cur in cursors:
            cur.close()


def _due_order(row: Row) -> tuple[str, str, str, str]:
    return (
        str(row["next_attempt_at"]),
        str(row["created_at"]),
        str(row["event_id"]),
        str(row["endpoint_id"]),
    )


@contextmanager
def _http(settings: Settings, client: httpx.Client | None) -> Iterator[httpx.Client]:
    """The caller's client, or the pass's own (no proxies from the environment, no
    redirects), closed after the pass."""
    if client is not None:
        yield client
        return
    with httpx.Client(
        trust_env=False,
        follow_redirects=False,
        timeout=httpx.Timeout(settings.webhooks.timeout_seconds),
        headers={"user-agent": _USER_AGENT},
    ) as own:
        yield own


@dataclass
class _Pass:
    """One pass's attempts: claim, send, record, one due delivery at a time."""

    con: StateConnection
    settings: Settings
    http: httpx.Client
    configured: dict[str, WebhookEndpoint]
    secrets: dict[str, list[str]]
    clock: Callable[[], datetime]
    report: DeliveryReport
    #: Consecutive connection-level failures per endpoint in this pass.
    connect_failures: dict[str, int] = field(default_factory=dict)

    @property
    def lease(self) -> timedelta:
        return retries.lease(self.settings.webhooks.timeout_seconds)

    def attempt(self, due: _Due) -> None:
        if due.endpoint_id in self.report.disabled_endpoints:
            return
        attempt_at = self.clock()
        attempt_no = _claim(self.con, due, attempt_at, self.lease)
        if attempt_no is None:
            return
        outcome = self._send(due, attempt_at)
        result = _record_outcome(
            self.con, self.settings, due, attempt_no, attempt_at, outcome, self.report
        )
        self.report.attempted += 1
        self.report.results.append(result)
        _log(result)

    def _send(self, due: _Due, attempt_at: datetime) -> _Outcome:
        endpoint = self.configured[due.endpoint_id]
        failures = self.connect_failures.get(endpoint.id, 0)
        if failures >= MAX_CONSECUTIVE_CONNECT_FAILURES:
            return _Outcome(
                None,
                "not sent: endpoint unreachable in this pass "
                f"({MAX_CONSECUTIVE_CONNECT_FAILURES} consecutive connection failures)",
                0,
            )
        outcome = _post(
            self.http, self.settings, due, endpoint.url, self.secrets[endpoint.id], attempt_at
        )
        self.connect_failures[endpoint.id] = failures + 1 if outcome.unreachable else 0
        return outcome


# --- one attempt -----------------------------------------------------------------------
def _claim(con: StateConnection, due: _Due, now: datetime, lease: timedelta) -> int | None:
    """Take the delivery for one attempt; return its attempt number, or None if another
    pass took it (or it is no longer pending or due) in the meantime."""
    attempt_no = due.attempts + 1
    with transaction(con):
        cur = query(
            con,
            "webhooks/claim_delivery",
            {
                "event_id": due.event_id,
                "endpoint_id": due.endpoint_id,
                "attempts": due.attempts,
                "attempt_no": attempt_no,
                "now": ts(now),
                "lease_until": ts(now + lease),
                "last_error": f"attempt {attempt_no} started, no outcome recorded yet",
            },
        )
    return attempt_no if cur.rowcount == 1 else None


def _post(
    client: httpx.Client,
    settings: Settings,
    due: _Due,
    url: str,
    secrets: Sequence[str],
    now: datetime,
) -> _Outcome:
    """Send one attempt, signed with a fresh ``webhook-timestamp``. Every failure
    (refused destination, timeout, connection or protocol error) is returned as an
    outcome, never raised."""
    timestamp = int(now.timestamp())
    headers = {
        "content-type": "application/json",
        "user-agent": _USER_AGENT,
        "webhook-id": due.event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, due.event_id, timestamp, due.payload),
    }
    answer = egress.post(
        client,
        url,
        headers=headers,
        body=due.payload,
        timeout=settings.webhooks.timeout_seconds,
        allow_private=settings.webhooks.allow_private_addresses,
    )
    code = answer.status_code
    if code is None:
        return _Outcome(None, answer.error, answer.duration_ms, unreachable=answer.unreachable)
    error = None
    if not 200 <= code < 300:
        error = f"HTTP {code}"
        if 300 <= code < 400:
            error += " (redirects are not followed: update the endpoint URL)"
    asked = retries.retry_after(code, answer.retry_after)
    return _Outcome(code, error, answer.duration_ms, retry_after=asked)


# --- recording an attempt --------------------------------------------------------------
def _record_outcome(
    con: StateConnection,
    settings: Settings,
    due: _Due,
    attempt_no: int,
    now: datetime,
    outcome: _Outcome,
    report: DeliveryReport,
) -> AttemptResult:
    """Record one attempt and its consequence, in one small transaction."""
    result = AttemptResult(
        event_id=due.event_id,
        endpoint_id=due.endpoint_id,
        event_type=due.event_type,
        attempt_no=attempt_no,
        outcome="delivered",
        status_code=outcome.status_code,
        error=outcome.error,
        duration_ms=outcome.duration_ms,
    )
    with transaction(con):
        _record_attempt(con, due, attempt_no, now, outcome)
        if outcome.ok:
            query(con, "webhooks/mark_delivered", {**_key(due), "now": ts(now)})
            report.delivered += 1
        elif outcome.status_code == 410:
            _gone(con, due, now, report)
            result.outcome = "endpoint_disabled"
        else:
            until = retries.deadline(due.created_at, settings.webhooks.max_age_hours)
            _failed(con, due, attempt_no, now, until, outcome, result, report)
    return result


def _key(due: _Due) -> dict[str, str]:
    return {"event_id": due.event_id, "endpoint_id": due.endpoint_id}


def _record_attempt(
    con: StateConnection, due: _Due, attempt_no: int, now: datetime, outcome: _Outcome
) -> None:
    query(
        con,
        "webhooks/insert_attempt",
        {
            **_key(due),
            "attempt_no": attempt_no,
            "webhook_id": due.event_id,
            "at": ts(now),
            "status_code": outcome.status_code,
            "error": outcome.error,
            "duration_ms": outcome.duration_ms,
        },
    )


def _gone(con: StateConnection, due: _Due, now: datetime, report: DeliveryReport) -> None:
    """``410 Gone``: this delivery fails, the endpoint is disabled, its other pending
    deliveries are stopped."""
    last_error = "HTTP 410 Gone: endpoint disabled"
    query(con, "webhooks/fail_delivery", {**_key(due), "last_error": last_error})
    reason = f"HTTP 410 Gone for event {due.event_id}"
    report.stopped += endpoints.disable(con, due.endpoint_id, reason, now)
    report.failed += 1
    report.disabled_endpoints.append(due.endpoint_id)


def _failed(
    con: StateConnection,
    due: _Due,
    attempt_no: int,
    now: datetime,
    until: datetime,
    outcome: _Outcome,
    result: AttemptResult,
    report: DeliveryReport,
) -> None:
    """A failed attempt: the next one is scheduled, or the delivery is given up when
    the attempt was at or after its deadline (``until``)."""
    key = {**_key(due), "attempt_no": attempt_no}
    if now >= until:
        result.outcome = "failed"
        report.failed += 1
        last_error = f"gave up after {attempt_no} attempt(s): {outcome.error}"
        query(con, "webhooks/give_up_delivery", {**key, "last_error": last_error})
        return
    result.outcome = "retry_scheduled"
    result.next_attempt_at = retries.next_attempt_at(now, attempt_no, outcome.retry_after, until)
    report.retry_scheduled += 1
    query(
        con,
        "webhooks/schedule_retry",
        {**key, "next_attempt_at": ts(result.next_attempt_at), "last_error": outcome.error},
    )


def _log(result: AttemptResult) -> None:
    if result.outcome == "delivered":
        log.info(
            "webhook %s delivered to %s (attempt %d, HTTP %s)",
            result.event_id,
            result.endpoint_id,
            result.attempt_no,
            result.status_code,
        )
    else:
        log.warning(
            "webhook %s to %s attempt %d: %s (%s)",
            result.event_id,
            result.endpoint_id,
            result.attempt_no,
            result.error,
            result.outcome,
        )


__all__ = ["MAX_CONSECUTIVE_CONNECT_FAILURES", "deliver"]
