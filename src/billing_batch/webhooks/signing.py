"""Standard Webhooks signatures: sign a request, verify one.

The symmetric ``v1`` scheme of https://www.standardwebhooks.com (checked against the
spec's known-answer vector in ``tests/webhooks/test_signing.py``)::

    signed_content = webhook_id + "." + webhook_timestamp + "." + raw_body
    key            = base64_decode(secret without its "whsec_" prefix)
    signature      = "v1," + base64(HMAC-SHA256(key, signed_content))

Pure: no I/O, no configuration. A receiver needs only :func:`verify` (importing this
module loads nothing heavy).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from .._core.clock import utcnow
from .._core.errors import ConfigError, WebhookVerificationError
from .._core.jsonutil import loads

SECRET_PREFIX = "whsec_"
#: Default tolerance of :func:`verify` between the ``webhook-timestamp`` and now.
DEFAULT_TOLERANCE_SECONDS = 300

_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def secret_key(secret: str) -> bytes:
    """The key bytes of one ``whsec_<base64>`` secret (the prefix is optional).

    Raises ConfigError for a secret that is not ``whsec_`` + base64, or empty.
    """
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
    digest = _digest(secret_key(secret), msg_id, timestamp, body)
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
    keys = [secret_key(s) for s in _split_secrets(secret)]
    msg_id, stamp, signatures = _required_headers(headers)
    timestamp = _checked_timestamp(stamp, tolerance, now)
    expected = [_digest(key, msg_id, timestamp, body) for key in keys]
    if not _any_matches(signatures, expected):
        raise WebhookVerificationError("no matching signature")
    try:
        return loads(body)
    except ValueError:
        raise WebhookVerificationError("the body is not JSON") from None


def _required_headers(headers: Mapping[str, str]) -> tuple[str, str, str]:
    """``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` (any case)."""
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    values = [lower.get(name, "").strip() for name in _HEADERS]
    missing = [name for name, value in zip(_HEADERS, values, strict=True) if not value]
    if missing:
        raise WebhookVerificationError(f"missing header(s): {', '.join(missing)}")
    msg_id, stamp, signatures = values
    return msg_id, stamp, signatures


def _checked_timestamp(stamp: str, tolerance: int, now: datetime | None) -> int:
    """The ``webhook-timestamp`` as unix seconds, refused when more than ``tolerance``
    seconds from ``now`` either way (replay protection)."""
    if not stamp.isascii() or not stamp.isdigit():
        raise WebhookVerificationError("webhook-timestamp is not an integer unix time")
    timestamp = int(stamp)
    current = int((now or utcnow()).timestamp())
    if timestamp < current - tolerance:
        raise WebhookVerificationError("webhook-timestamp is too old (possible replay)")
    if timestamp > current + tolerance:
        raise WebhookVerificationError("webhook-timestamp is too far in the future")
    return timestamp


def _any_matches(signatures: str, expected: Sequence[bytes]) -> bool:
    """Whether any ``v1,`` entry of the header matches any expected digest (other
    versions and malformed entries are ignored)."""
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
    return matched


__all__ = [
    "DEFAULT_TOLERANCE_SECONDS",
    "SECRET_PREFIX",
    "secret_key",
    "sign",
    "signature_header",
    "verify",
]
