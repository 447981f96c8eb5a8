"""Webhook delivery: Standard Webhooks signing, at-least-once delivery, verification.

The write side is :mod:`billing_batch.webhooks.outbox`: every state change appends its event to
the ``outbox`` table in the same transaction. This module reads the outbox and delivers
each event to every configured endpoint subscribed to its type. The event catalogue,
headers, signature scheme and retry schedule are documented in ``docs/webhooks.md``.

One delivery pass (:func:`deliver`):

1. **Endpoints**: every configured endpoint gets a row in ``webhook_endpoint_state`` the
   first time a pass sees it (``deliver_since`` = that moment minus ``max_age_hours``:
   a new endpoint receives the events still inside the delivery window, never older
   history). An endpoint disabled by a ``410 Gone`` stays disabled until
   :func:`enable_endpoint`.
2. **Schedule**: one ``webhook_deliveries`` row per (event, enabled endpoint subscribed
   to its type, event not older than the endpoint's ``deliver_since``): ``pending``,
   first due at the event's time.
3. **Attempt** each due delivery: *claim* it (a small transaction that bumps
   ``attempts`` and leases it for a while so a concurrent pass leaves it alone), POST it,
   then record the outcome in its own small transaction. A crash between the POST and
   that record leaves the delivery pending: the lease expires and a later pass sends it
   again with the same ``webhook-id``. That is the at-least-once guarantee; receivers
   dedupe on ``webhook-id``.

Outcomes: ``2xx`` → ``delivered``. ``410 Gone`` → the endpoint is disabled (with its
reason) and its pending deliveries are stopped (``failed``). Anything else (other
status codes, redirects, timeouts, connection errors, a refused destination) → the
attempt is recorded and the next one is scheduled with exponential backoff and jitter
(:data:`RETRY_DELAYS`), until ``max_age_hours`` after the event; then ``failed``.

Outbound safety: only ``http``/``https``; unless ``allow_private_addresses``, the host is
resolved and every address must be public (no private, loopback, link-local, multicast,
reserved, shared or unspecified address, IPv4 or IPv6, including IPv4 embedded in
IPv6). The request is then sent to the address that was checked (the URL's host is
replaced by the IP, the ``Host`` header and TLS SNI/certificate check keep the name), so
a DNS answer that changes between the check and the connection (DNS rebinding) cannot
redirect it. Redirects are never followed; proxies from the environment are ignored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
import os
import random
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from .._core.clock import parse_ts, ts, utcnow
from .._core.errors import (
    ConfigError,
    InputError,
    LakeError,
    NotFoundError,
    WebhookError,
    WebhookVerificationError,
)
from .._core.jsonutil import loads
from ..config.settings import Settings, WebhookEndpoint
from ..storage.state import opened, transaction

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
#: Default tolerance of :func:`verify` between the ``webhook-timestamp`` and now.
DEFAULT_TOLERANCE_SECONDS = 300

#: Delay before attempt ``n + 1`` after attempt ``n`` failed (``RETRY_DELAYS[n - 1]``;
#: the last one repeats). The Standard Webhooks / Svix schedule. Each delay is
#: multiplied by a random factor in ``[1 - RETRY_JITTER, 1 + RETRY_JITTER]``, and no
#: attempt is scheduled later than ``max_age_hours`` after the event: with 72 h the
#: attempts fall at about 0, 5 s, 5 min, 35 min, 2.6 h, 7.6 h, 17.6 h, 31.6 h, 51.6 h and
#: 72 h after the event: ten in all (eleven when the jitter shortens the gaps enough to
#: fit one more 24 h retry before the deadline).
RETRY_DELAYS: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=14),
    timedelta(hours=20),
    timedelta(hours=24),
)
RETRY_JITTER = 0.2
#: A ``Retry-After`` (seconds) on a 429/503 answer postpones the next attempt, up to this.
MAX_RETRY_AFTER = timedelta(hours=24)
#: After this many consecutive connection-level failures (timeout, refused connection,
#: unresolvable host) to one endpoint in one pass, its other due deliveries are not sent
#: in this pass: each gets a failed attempt "not sent" and its normal backoff, so a dead
#: receiver cannot hold a pass for ``timeout × deliveries``.
MAX_CONSECUTIVE_CONNECT_FAILURES = 3

_USER_AGENT = "billing-batch-webhooks/1"
_rng = random.Random()


# --- signing and verification ----------------------------------------------------------
def _secret_bytes(secret: str) -> bytes:
    """The key bytes of one ``whsec_<base64>`` secret (the prefix is optional)."""
    text = secret.strip()
    if text.startswith(SECRET_PREFIX):
        text = text[len(SECRET_PREFIX) :]
    text += "=" * (-len(text) % 4)  # accept unpadded base64
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("a webhook secret must be 'whsec_' followed by base64") from None
    if not key:
        raise ConfigError("a webhook secret must not be empty")
    return key


def _split_secrets(secrets: str | Sequence[str]) -> list[str]:
    items = secrets.split() if isinstance(secrets, str) else [s for s in secrets if s.strip()]
    if not items:
        raise ConfigError("no webhook secret given")
    return items


def _digest(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    signed = msg_id.encode() + b"." + str(timestamp).encode() + b"." + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256(key, f"{msg_id}.{timestamp}.{body}")>`` for one
    ``whsec_...`` secret (the key is the base64-decoded part after ``whsec_``).

    Raises ConfigError for a secret that is not ``whsec_`` + base64.
    """
    digest = _digest(_secret_bytes(secret), msg_id, timestamp, body)
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets: str | Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one ``v1,<sig>`` per secret, space-separated
    (several secrets during a rotation; a string is split on whitespace)."""
    return " ".join(sign(s, msg_id, timestamp, body) for s in _split_secrets(secrets))


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secret: str,
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: datetime | None = None,
) -> Any:
    """Verify a Standard Webhooks request and return its parsed JSON payload.

    ``headers`` are matched case-insensitively; ``body`` must be the raw request bytes
    (not re-serialized JSON). ``secret`` is the endpoint's ``whsec_...`` secret, or
    several space-separated during a rotation (any one may match). The request is
    accepted when ``webhook-timestamp`` is within ``tolerance`` seconds of ``now`` and
    any ``v1`` signature of ``webhook-signature`` matches (constant-time comparison).

    Raises WebhookVerificationError for a missing or malformed header, a stale or future
    timestamp, no matching signature, or a body that is not JSON; ConfigError for a
    malformed secret.
    """
    keys = [_secret_bytes(s) for s in _split_secrets(secret)]
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    msg_id = lower.get("webhook-id", "").strip()
    stamp = lower.get("webhook-timestamp", "").strip()
    signatures = lower.get("webhook-signature", "").strip()
    missing = [
        name
        for name, value in (
            ("webhook-id", msg_id),
            ("webhook-timestamp", stamp),
            ("webhook-signature", signatures),
        )
        if not value
    ]
    if missing:
        raise WebhookVerificationError(f"missing header(s): {', '.join(missing)}")
    if not stamp.isascii() or not stamp.isdigit():
        raise WebhookVerificationError("webhook-timestamp is not an integer unix time")
    timestamp = int(stamp)
    current = int((now or utcnow()).timestamp())
    if timestamp < current - tolerance:
        raise WebhookVerificationError("webhook-timestamp is too old (possible replay)")
    if timestamp > current + tolerance:
        raise WebhookVerificationError("webhook-timestamp is too far in the future")

    expected = [_digest(key, msg_id, timestamp, body) for key in keys]
    matched = False
    for item in signatures.split():
        version, sep, encoded = item.partition(",")
        if not sep or version != "v1":
            continue
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        for digest in expected:
            # no early exit: every candidate is compared against every key
            matched = hmac.compare_digest(digest, candidate) or matched
    if not matched:
        raise WebhookVerificationError("no matching signature")
    try:
        return loads(body)
    except ValueError:
        raise WebhookVerificationError("the body is not JSON") from None


# --- outbound safety -------------------------------------------------------------------
class _Refused(Exception):
    """Internal: the destination may not (or cannot) be contacted; recorded as a failed
    attempt, never raised out of this module."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    out: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        out.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        out.append(ip.sixtofour)
    if ip.teredo is not None:
        out.extend(ip.teredo)
    if ip in _NAT64:
        out.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return out


def is_public_address(address: str) -> bool:
    """True if ``address`` (an IPv4/IPv6 literal) is a public unicast address: not
    private, loopback, link-local, multicast, reserved, shared (CGNAT), unspecified or
    site-local, and not an IPv4 address of those kinds embedded in IPv6 (mapped,
    6to4, Teredo, NAT64)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return is_public_address(str(ip.ipv4_mapped))  # judged as the IPv4 it is
    bad = (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )
    if isinstance(ip, ipaddress.IPv6Address):
        bad = bad or ip.is_site_local or ip in _NAT64_LOCAL
        bad = bad or any(not is_public_address(str(v4)) for v4 in _embedded_ipv4(ip))
    return not bad


def _resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, in the resolver's order (no duplicates)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    out: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        addr = str(sockaddr[0])
        if addr not in out:
            out.append(addr)
    return out


@dataclass(frozen=True)
class _Target:
    #: The URLs to connect to, one per checked address (the host replaced by the IP), in
    #: the resolver's order: the next one is tried only when a connection fails.
    urls: tuple[httpx.URL, ...]
    host_header: str  # the original host[:port]
    sni: str | None  # TLS server name (and certificate name), for https to a host name


def _check_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"invalid webhook URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError("a webhook URL must be http:// or https:// with a host")
    return parsed


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _target(url: str, *, allow_private: bool) -> _Target:
    """Resolve and check the destination; raise _Refused if it may not be contacted.
    The returned URLs point at the very addresses that were checked."""
    parsed = _check_url(url)
    host = parsed.host
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    is_literal = _is_ip_literal(host)
    if is_literal:
        addresses = [host]
    else:
        try:
            addresses = _resolve(host, port)
        except (OSError, UnicodeError) as exc:
            raise _Refused(f"cannot resolve {host!r}: {exc}", unreachable=True) from None
        if not addresses:
            raise _Refused(f"{host!r} resolves to no address", unreachable=True)
    if not allow_private:
        refused = [a for a in addresses if not is_public_address(a)]
        if refused:
            raise _Refused(
                f"destination refused: {host} is or resolves to non-public address(es) "
                f"{', '.join(refused)} (webhooks.allow_private_addresses is off)"
            )
    return _Target(
        urls=tuple(parsed.copy_with(host=a.split("%", 1)[0]) for a in addresses),
        host_header=parsed.netloc.decode("ascii"),
        sni=None if is_literal or parsed.scheme != "https" else host,
    )


def _display_url(url: str) -> str:
    """The URL without any password in its userinfo (for output and logs)."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "<invalid URL>"
    if parsed.password:
        return str(parsed.copy_with(password="***"))
    return url


# --- reports ---------------------------------------------------------------------------
@dataclass
class AttemptResult:
    """One recorded attempt of one pass."""

    event_id: str
    endpoint_id: str
    event_type: str
    attempt_no: int
    #: delivered | retry_scheduled | failed | endpoint_disabled
    outcome: str
    status_code: int | None = None
    error: str | None = None
    duration_ms: int = 0
    next_attempt_at: datetime | None = None


@dataclass
class DeliveryReport:
    """The outcome of one delivery pass."""

    #: Delivery rows created in this pass (event × endpoint).
    scheduled: int = 0
    #: Attempts recorded (including refused destinations, which send nothing).
    attempted: int = 0
    delivered: int = 0
    #: Failed attempts with a next attempt scheduled (not an error of the pass).
    retry_scheduled: int = 0
    #: Deliveries given up in this pass (too old, or their endpoint answered 410).
    failed: int = 0
    #: Pending deliveries stopped because their endpoint was disabled in this pass.
    stopped: int = 0
    disabled_endpoints: list[str] = field(default_factory=list)
    results: list[AttemptResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        problems = [r for r in self.results if r.outcome != "delivered"]
        out: dict[str, Any] = {
            "scheduled": self.scheduled,
            "attempted": self.attempted,
            "delivered": self.delivered,
            "retry_scheduled": self.retry_scheduled,
            "failed": self.failed,
            "stopped": self.stopped,
            "disabled_endpoints": list(self.disabled_endpoints),
            "problems": [
                {
                    "event_id": r.event_id,
                    "endpoint_id": r.endpoint_id,
                    "type": r.event_type,
                    "attempt_no": r.attempt_no,
                    "outcome": r.outcome,
                    "status_code": r.status_code,
                    "error": r.error,
                    "next_attempt_at": r.next_attempt_at,
                }
                for r in problems
            ],
        }
        if self.retry_scheduled:
            out["note"] = (
                f"{self.retry_scheduled} delivery attempt(s) failed at the receiver and "
                "will be retried by a later pass (see problems)"
            )
        return out


# --- the state store -------------------------------------------------------------------
@contextmanager
def _store(settings: Settings) -> Iterator[sqlite3.Connection]:
    """The state store, with SQLite errors mapped into the project's tree."""
    try:
        with opened(settings) as con:
            yield con
    except sqlite3.Error as exc:
        raise LakeError(f"state store error during webhook delivery: {exc}") from exc


def _subscribed(endpoint: WebhookEndpoint, event_type: str) -> bool:
    return not endpoint.events or event_type in endpoint.events


def _sync_endpoints(con: sqlite3.Connection, settings: Settings, now: datetime) -> None:
    window = timedelta(hours=settings.webhooks.max_age_hours)
    with transaction(con):
        for ep in settings.webhooks.endpoints:
            con.execute(
                "INSERT INTO webhook_endpoint_state (endpoint_id, url, enabled, created_at, "
                "deliver_since) VALUES (?, ?, 1, ?, ?) "
                "ON CONFLICT (endpoint_id) DO UPDATE SET url = excluded.url "
                "WHERE url <> excluded.url",
                (ep.id, ep.url, ts(now), ts(now - window)),
            )


def _endpoint_states(con: sqlite3.Connection) -> dict[str, sqlite3.Row]:
    rows = con.execute("SELECT * FROM webhook_endpoint_state ORDER BY endpoint_id").fetchall()
    return {str(r["endpoint_id"]): r for r in rows}


def _schedule(con: sqlite3.Connection, endpoints: Sequence[WebhookEndpoint]) -> int:
    """Create the pending delivery rows that do not exist yet; return how many."""
    created = 0
    with transaction(con):
        for ep in endpoints:
            params: list[Any] = [ep.id, ep.id]
            type_filter = ""
            if ep.events:
                type_filter = f" AND o.type IN ({', '.join('?' for _ in ep.events)})"
                params.extend(ep.events)
            cur = con.execute(
                "INSERT INTO webhook_deliveries (event_id, endpoint_id, status, attempts, "
                "next_attempt_at) "
                "SELECT o.id, ?, 'pending', 0, o.created_at FROM outbox o "
                "JOIN webhook_endpoint_state s ON s.endpoint_id = ? AND s.enabled = 1 "
                "WHERE o.created_at >= s.deliver_since"
                f"{type_filter} "
                "AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d "
                "WHERE d.event_id = o.id AND d.endpoint_id = s.endpoint_id)",
                params,
            )
            created += max(cur.rowcount, 0)
    return created


def _secrets_of(endpoint: WebhookEndpoint) -> list[str]:
    raw = os.environ.get(endpoint.secret_env, "")
    secrets = raw.split()
    if not secrets:
        raise ConfigError(
            f"webhook endpoint {endpoint.id!r}: environment variable "
            f"{endpoint.secret_env} (its whsec_ secret) is not set"
        )
    for s in secrets:
        try:
            _secret_bytes(s)
        except ConfigError as exc:
            raise ConfigError(
                f"webhook endpoint {endpoint.id!r}: {endpoint.secret_env}: {exc}"
            ) from None
    return secrets


def _lease(settings: Settings) -> timedelta:
    """How long a claimed delivery is left alone by other passes: longer than one
    request can take (connect + write + read timeouts) plus a margin."""
    return timedelta(seconds=4 * settings.webhooks.timeout_seconds + 60)


def _next_delay(attempt_no: int) -> timedelta:
    base = RETRY_DELAYS[min(attempt_no, len(RETRY_DELAYS)) - 1]
    return base * _rng.uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER)


def _retry_after(response: httpx.Response) -> timedelta | None:
    if response.status_code not in (429, 503):
        return None
    raw = response.headers.get("retry-after", "").strip()
    if not raw.isascii() or not raw.isdigit():
        return None
    return min(timedelta(seconds=int(raw)), MAX_RETRY_AFTER)


# --- one attempt -----------------------------------------------------------------------
@dataclass
class _Due:
    event_id: str
    endpoint_id: str
    event_type: str
    created_at: datetime
    attempts: int
    payload: bytes


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


def _claim(con: sqlite3.Connection, due: _Due, now: datetime, lease: timedelta) -> int | None:
    """Take the delivery for one attempt; return its attempt number, or None if another
    pass took it (or it is no longer pending) in the meantime."""
    with transaction(con):
        row = con.execute(
            "SELECT status, attempts, next_attempt_at FROM webhook_deliveries "
            "WHERE event_id = ? AND endpoint_id = ?",
            (due.event_id, due.endpoint_id),
        ).fetchone()
        if (
            row is None
            or row["status"] != "pending"
            or row["attempts"] != due.attempts
            or str(row["next_attempt_at"]) > ts(now)
        ):
            return None
        attempt_no = int(row["attempts"]) + 1
        con.execute(
            "UPDATE webhook_deliveries SET attempts = ?, last_attempt_at = ?, "
            "next_attempt_at = ?, last_error = ? WHERE event_id = ? AND endpoint_id = ?",
            (
                attempt_no,
                ts(now),
                ts(now + lease),
                f"attempt {attempt_no} started, no outcome recorded yet",
                due.event_id,
                due.endpoint_id,
            ),
        )
    return attempt_no


def _post(
    client: httpx.Client,
    settings: Settings,
    due: _Due,
    url: str,
    secrets: Sequence[str],
    now: datetime,
) -> _Outcome:
    """Send one attempt. Every failure (refused destination, timeout, connection or
    protocol error) is returned as an outcome, never raised."""
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        target = _target(url, allow_private=settings.webhooks.allow_private_addresses)
    except _Refused as exc:
        return _Outcome(None, str(exc), elapsed(), unreachable=exc.unreachable)
    timestamp = int(now.timestamp())
    headers = {
        "host": target.host_header,
        "content-type": "application/json",
        "user-agent": _USER_AGENT,
        "webhook-id": due.event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, due.event_id, timestamp, due.payload),
    }
    extensions: dict[str, Any] = {}
    if target.sni:
        extensions["sni_hostname"] = target.sni
        # Connections are pooled by IP: never reuse a TLS connection whose certificate
        # was checked for another host name that happens to share the address.
        headers["connection"] = "close"
    timeout = httpx.Timeout(settings.webhooks.timeout_seconds)
    errors: list[str] = []
    for connect_url in target.urls:
        try:
            request = client.build_request(
                "POST",
                connect_url,
                headers=headers,
                content=due.payload,
                timeout=timeout,
                extensions=extensions,
            )
            response = client.send(request, follow_redirects=False, stream=True)
        except httpx.ConnectError as exc:
            # nothing was sent: try the next checked address, if any
            errors.append(f"{connect_url.host}: {str(exc) or type(exc).__name__}")
            continue
        except httpx.TimeoutException as exc:
            return _Outcome(None, f"timeout ({type(exc).__name__})", elapsed(), unreachable=True)
        except httpx.HTTPError as exc:
            return _Outcome(None, f"{type(exc).__name__}: {exc}", elapsed())
        except (httpx.InvalidURL, httpx.StreamError) as exc:  # not expected: a bug
            raise WebhookError(f"cannot send webhook {due.event_id}: {exc}") from exc
        try:
            code = response.status_code
            retry_after = _retry_after(response)
        finally:
            response.close()  # the body is not needed: never read a large answer
        error = None
        if not 200 <= code < 300:
            error = f"HTTP {code}"
            if 300 <= code < 400:
                error += " (redirects are not followed: update the endpoint URL)"
        return _Outcome(code, error, elapsed(), retry_after=retry_after)
    return _Outcome(None, "connection error: " + "; ".join(errors), elapsed(), unreachable=True)


def _record_attempt(
    con: sqlite3.Connection, due: _Due, attempt_no: int, now: datetime, outcome: _Outcome
) -> None:
    con.execute(
        "INSERT INTO webhook_attempts (event_id, endpoint_id, attempt_no, webhook_id, at, "
        "status_code, error, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            due.event_id,
            due.endpoint_id,
            attempt_no,
            due.event_id,
            ts(now),
            outcome.status_code,
            outcome.error,
            outcome.duration_ms,
        ),
    )


def _disable_endpoint(con: sqlite3.Connection, endpoint_id: str, reason: str, now: datetime) -> int:
    """Disable the endpoint and stop its pending deliveries (inside the caller's
    transaction); return how many were stopped."""
    con.execute(
        "UPDATE webhook_endpoint_state SET enabled = 0, disabled_reason = ?, disabled_at = ? "
        "WHERE endpoint_id = ?",
        (reason, ts(now), endpoint_id),
    )
    cur = con.execute(
        "UPDATE webhook_deliveries SET status = 'failed', last_error = ? "
        "WHERE endpoint_id = ? AND status = 'pending'",
        (f"stopped: endpoint disabled ({reason})", endpoint_id),
    )
    return max(cur.rowcount, 0)


def _record_outcome(
    con: sqlite3.Connection,
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
    key = (due.event_id, due.endpoint_id)
    with transaction(con):
        _record_attempt(con, due, attempt_no, now, outcome)
        if outcome.ok:
            con.execute(
                "UPDATE webhook_deliveries SET status = 'delivered', delivered_at = ?, "
                "last_error = NULL WHERE event_id = ? AND endpoint_id = ? "
                "AND status <> 'delivered'",
                (ts(now), *key),
            )
            report.delivered += 1
        elif outcome.status_code == 410:
            reason = f"HTTP 410 Gone for event {due.event_id}"
            con.execute(
                "UPDATE webhook_deliveries SET status = 'failed', last_error = ? "
                "WHERE event_id = ? AND endpoint_id = ? AND status = 'pending'",
                ("HTTP 410 Gone: endpoint disabled", *key),
            )
            report.stopped += _disable_endpoint(con, due.endpoint_id, reason, now)
            report.failed += 1
            report.disabled_endpoints.append(due.endpoint_id)
            result.outcome = "endpoint_disabled"
        else:
            deadline = due.created_at + timedelta(hours=settings.webhooks.max_age_hours)
            if now >= deadline:
                result.outcome = "failed"
                report.failed += 1
                con.execute(
                    "UPDATE webhook_deliveries SET status = 'failed', last_error = ? "
                    "WHERE event_id = ? AND endpoint_id = ? AND status = 'pending' "
                    "AND attempts = ?",
                    (f"gave up after {attempt_no} attempt(s): {outcome.error}", *key, attempt_no),
                )
            else:
                delay = _next_delay(attempt_no)
                if outcome.retry_after is not None:
                    delay = max(delay, outcome.retry_after)
                result.outcome = "retry_scheduled"
                result.next_attempt_at = min(now + delay, deadline)
                report.retry_scheduled += 1
                con.execute(
                    "UPDATE webhook_deliveries SET next_attempt_at = ?, last_error = ? "
                    "WHERE event_id = ? AND endpoint_id = ? AND status = 'pending' "
                    "AND attempts = ?",
                    (ts(result.next_attempt_at), outcome.error, *key, attempt_no),
                )
    return result


def _due(
    con: sqlite3.Connection, endpoint_ids: Sequence[str], now: datetime, limit: int | None
) -> list[_Due]:
    if not endpoint_ids:
        return []
    marks = ", ".join("?" for _ in endpoint_ids)
    sql = (
        "SELECT d.event_id, d.endpoint_id, d.attempts, o.type, o.created_at, o.payload "
        "FROM webhook_deliveries d JOIN outbox o ON o.id = d.event_id "
        "JOIN webhook_endpoint_state s ON s.endpoint_id = d.endpoint_id AND s.enabled = 1 "
        f"WHERE d.status = 'pending' AND d.next_attempt_at <= ? AND d.endpoint_id IN ({marks}) "
        "ORDER BY d.next_attempt_at, o.created_at, d.event_id, d.endpoint_id"
    )
    params: list[Any] = [ts(now), *endpoint_ids]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return [
        _Due(
            event_id=str(r["event_id"]),
            endpoint_id=str(r["endpoint_id"]),
            event_type=str(r["type"]),
            created_at=parse_ts(str(r["created_at"])),
            attempts=int(r["attempts"]),
            payload=str(r["payload"]).encode("utf-8"),
        )
        for r in con.execute(sql, params).fetchall()
    ]


def _stop_unsubscribed(con: sqlite3.Connection, endpoint: WebhookEndpoint) -> None:
    """Pending deliveries of types the endpoint no longer subscribes to are stopped."""
    if not endpoint.events:
        return
    marks = ", ".join("?" for _ in endpoint.events)
    with transaction(con):
        con.execute(
            "UPDATE webhook_deliveries SET status = 'failed', "
            "last_error = 'stopped: the endpoint no longer subscribes to this event type' "
            "WHERE endpoint_id = ? AND status = 'pending' AND event_id IN "
            f"(SELECT id FROM outbox WHERE type NOT IN ({marks}))",
            (endpoint.id, *endpoint.events),
        )


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
    report = DeliveryReport()
    configured = {ep.id: ep for ep in settings.webhooks.endpoints}
    if len(configured) != len(settings.webhooks.endpoints):
        raise ConfigError("webhook endpoint ids must be unique")
    lease = _lease(settings)

    with _store(settings) as con:
        start = clock()
        _sync_endpoints(con, settings, start)
        states = _endpoint_states(con)
        enabled = [ep for ep in configured.values() if states[ep.id]["enabled"]]
        secrets: dict[str, list[str]] = {}
        for ep in enabled:  # fail fast on configuration, before any request
            _check_url(ep.url)
            secrets[ep.id] = _secrets_of(ep)
            _stop_unsubscribed(con, ep)
        report.scheduled = _schedule(con, enabled)

        own_client = client is None
        http = client or httpx.Client(
            trust_env=False,
            follow_redirects=False,
            timeout=httpx.Timeout(settings.webhooks.timeout_seconds),
            headers={"user-agent": _USER_AGENT},
        )
        connect_failures: dict[str, int] = {}
        try:
            for due in _due(con, [ep.id for ep in enabled], start, limit):
                if due.endpoint_id in report.disabled_endpoints:
                    continue
                attempt_at = clock()
                attempt_no = _claim(con, due, attempt_at, lease)
                if attempt_no is None:
                    continue
                endpoint = configured[due.endpoint_id]
                if connect_failures.get(endpoint.id, 0) >= MAX_CONSECUTIVE_CONNECT_FAILURES:
                    outcome = _Outcome(
                        None,
                        "not sent: endpoint unreachable in this pass "
                        f"({MAX_CONSECUTIVE_CONNECT_FAILURES} consecutive connection failures)",
                        0,
                    )
                else:
                    outcome = _post(
                        http, settings, due, endpoint.url, secrets[endpoint.id], attempt_at
                    )
                    if outcome.unreachable:
                        connect_failures[endpoint.id] = connect_failures.get(endpoint.id, 0) + 1
                    else:
                        connect_failures[endpoint.id] = 0
                result = _record_outcome(
                    con, settings, due, attempt_no, attempt_at, outcome, report
                )
                report.attempted += 1
                report.results.append(result)
                _log(result)
        finally:
            if own_client:
                http.close()
    return report


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


# --- endpoints and listings ------------------------------------------------------------
def enable_endpoint(
    settings: Settings, endpoint_id: str, *, now: datetime | None = None
) -> dict[str, Any]:
    """Re-enable an endpoint disabled by a 410. It receives events recorded from now
    on; deliveries stopped when it was disabled stay ``failed``."""
    if endpoint_id not in {ep.id for ep in settings.webhooks.endpoints}:
        raise NotFoundError(f"no configured webhook endpoint {endpoint_id!r}")
    at = now or utcnow()
    with _store(settings) as con:
        _sync_endpoints(con, settings, at)
        with transaction(con):
            con.execute(
                "UPDATE webhook_endpoint_state SET enabled = 1, disabled_reason = NULL, "
                "disabled_at = NULL, deliver_since = ? WHERE endpoint_id = ? AND enabled = 0",
                (ts(at), endpoint_id),
            )
    return next(e for e in list_endpoints(settings) if e["id"] == endpoint_id)


def list_endpoints(settings: Settings) -> list[dict[str, Any]]:
    """Configured endpoints (and formerly configured ones still in the state store)
    with their state and delivery counts. Never a secret: only the name of the
    environment variable that holds it and how many secrets it currently has."""
    with _store(settings) as con:
        states = _endpoint_states(con)
        counts: dict[str, dict[str, int]] = {}
        for r in con.execute(
            "SELECT endpoint_id, status, COUNT(*) AS n FROM webhook_deliveries "
            "GROUP BY endpoint_id, status"
        ):
            counts.setdefault(str(r["endpoint_id"]), {})[str(r["status"])] = int(r["n"])
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for ep in settings.webhooks.endpoints:
        seen.add(ep.id)
        state = states.get(ep.id)
        out.append(
            {
                "id": ep.id,
                "url": _display_url(ep.url),
                "events": list(ep.events) or "all",
                "secret_env": ep.secret_env,
                "secrets_set": len(os.environ.get(ep.secret_env, "").split()),
                "configured": True,
                **_state_dict(state),
                "deliveries": counts.get(ep.id, {}),
            }
        )
    for endpoint_id, state in states.items():
        if endpoint_id not in seen:
            out.append(
                {
                    "id": endpoint_id,
                    "url": _display_url(str(state["url"])),
                    "configured": False,
                    **_state_dict(state),
                    "deliveries": counts.get(endpoint_id, {}),
                }
            )
    return out


def _state_dict(state: sqlite3.Row | None) -> dict[str, Any]:
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
    if status is not None and status not in ("pending", "delivered", "failed"):
        raise InputError(f"unknown delivery status {status!r} (pending, delivered, failed)")
    where: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("d.status", status),
        ("d.endpoint_id", endpoint_id),
        ("d.event_id", event_id),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    sql = (
        "SELECT d.*, o.type, o.workspace_id, o.subject_id, o.created_at AS event_created_at "
        "FROM webhook_deliveries d JOIN outbox o ON o.id = d.event_id"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY o.created_at DESC, d.event_id, d.endpoint_id"
    )
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    with _store(settings) as con:
        rows = con.execute(sql, params).fetchall()
        out: list[dict[str, Any]] = []
        for r in rows:
            attempts = con.execute(
                "SELECT attempt_no, webhook_id, at, status_code, error, duration_ms "
                "FROM webhook_attempts WHERE event_id = ? AND endpoint_id = ? ORDER BY seq",
                (r["event_id"], r["endpoint_id"]),
            ).fetchall()
            out.append(
                {
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
            )
    return out


__all__ = [
    "DEFAULT_TOLERANCE_SECONDS",
    "RETRY_DELAYS",
    "AttemptResult",
    "DeliveryReport",
    "deliver",
    "enable_endpoint",
    "is_public_address",
    "list_deliveries",
    "list_endpoints",
    "sign",
    "signature_header",
    "verify",
]
