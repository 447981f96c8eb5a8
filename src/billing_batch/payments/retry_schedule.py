"""PURE: the dunning schedule (``settings.payments.dunning_schedule_days``): when a
failed or declined payment is tried again, and how many attempts are automatic.

Recording a failed attempt stores its ``next_retry_at`` from here (:mod:`.recording`);
:mod:`.dunning` retries the attempts whose time has come. (Its own module, below both:
recording is part of charging, and dunning drives charging.)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from .._core.clock import issue_time


def max_attempts(schedule: Sequence[int]) -> int:
    """Attempts made automatically: the first try, then one per schedule entry."""
    return 1 + len(schedule)


def next_retry_at(
    schedule: Sequence[int], *, first_try: datetime, attempt_no: int, attempted_at: datetime
) -> datetime | None:
    """Attempt ``attempt_no`` (made at ``attempted_at``) failed: attempt n+1 is due at
    00:00 UTC of the day ``schedule[n-1]`` days after the first try's (UTC) day, and
    never before the day after attempt n's (one attempt per business day at most: a
    catch-up run makes one retry, not all the overdue ones, and a rerun of the same day
    none); none once :func:`max_attempts` have been made.

    00:00 UTC of a day is the business time of that day's nightly run
    (:func:`~billing_batch._core.clock.issue_time`), so the run of that date retries it."""
    if attempt_no >= max_attempts(schedule):
        return None
    day = first_try.astimezone(UTC).date() + timedelta(days=schedule[attempt_no - 1])
    day = max(day, attempted_at.astimezone(UTC).date() + timedelta(days=1))
    return issue_time(day)


__all__ = ["max_attempts", "next_retry_at"]
