"""Time: timezone-aware UTC everywhere; timestamps stored as ISO 8601 text with 'Z'; the
business time of a nightly run."""

from __future__ import annotations

from datetime import UTC, date, datetime, time


def utcnow() -> datetime:
    return datetime.now(UTC)


def ts(value: datetime) -> str:
    """A UTC timestamp as stored: ISO 8601 with microseconds and 'Z'."""
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def aware(now: datetime | None) -> datetime:
    """``now`` (default: the wall clock) as UTC; a naive datetime is refused."""
    value = now or utcnow()
    if value.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return value.astimezone(UTC)


def issue_time(run_date: date) -> datetime:
    """The business time of a nightly run for ``run_date`` (00:00 UTC that day): what it
    issues, due dates and dunning count from it, so a backfill gives the same invoices as
    runs on the day would have."""
    return datetime.combine(run_date, time(0, 0), tzinfo=UTC)


__all__ = ["aware", "issue_time", "parse_ts", "ts", "utcnow"]
