"""The retry schedule of webhook deliveries: when the next attempt is due, when to give
up, how long a claimed delivery is left alone. The one home of these rules (documented
in ``docs/webhooks.md``, "Retry schedule"). Pure: no I/O.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

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

_rng = random.Random()


def deadline(created_at: datetime, max_age_hours: float) -> datetime:
    """When a delivery is given up: an attempt failing at or after it is the last."""
    return created_at + timedelta(hours=max_age_hours)


def next_delay(attempt_no: int) -> timedelta:
    """The jittered delay before the attempt after failed attempt ``attempt_no``."""
    base = RETRY_DELAYS[min(attempt_no, len(RETRY_DELAYS)) - 1]
    return base * _rng.uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER)


def retry_after(status_code: int | None, header: str | None) -> timedelta | None:
    """The delay a ``429``/``503`` answer asks for (``Retry-After: <seconds>``, at most
    :data:`MAX_RETRY_AFTER`); None for other answers or another form of the header."""
    if status_code not in (429, 503):
        return None
    raw = (header or "").strip()
    if not raw.isascii() or not raw.isdigit():
        return None
    return min(timedelta(seconds=int(raw)), MAX_RETRY_AFTER)


def next_attempt_at(
    now: datetime, attempt_no: int, asked: timedelta | None, until: datetime
) -> datetime:
    """When the attempt after failed attempt ``attempt_no`` (at ``now``) is due: the
    jittered delay, or longer if the receiver ``asked`` for it, never after ``until``
    (the :func:`deadline`)."""
    delay = next_delay(attempt_no)
    if asked is not None:
        delay = max(delay, asked)
    return min(now + delay, until)


def lease(timeout_seconds: float) -> timedelta:
    """How long a claimed delivery is left alone by other passes: longer than one
    request can take (connect + write + read timeouts) plus a margin. A pass that dies
    after claiming leaves the delivery due again once the lease expires."""
    return timedelta(seconds=4 * timeout_seconds + 60)


__all__ = [
    "MAX_RETRY_AFTER",
    "RETRY_DELAYS",
    "RETRY_JITTER",
    "deadline",
    "lease",
    "next_attempt_at",
    "next_delay",
    "retry_after",
]
