"""The dunning schedule, as a pure function: days count from the first try's UTC date, a
retry is never due before the day after the attempt it follows, and it stops after
``1 + len(schedule)`` attempts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from billing_batch.payments.retry_schedule import max_attempts, next_retry_at

FIRST = datetime(2024, 2, 1, 2, 0, tzinfo=UTC)  # day 0, 02:00 UTC


def midnight(day: int) -> datetime:
    """00:00 UTC of day ``day`` after FIRST's date."""
    return datetime(2024, 2, 1, tzinfo=UTC) + timedelta(days=day)


def test_the_schedule_counts_days_from_the_first_try() -> None:
    schedule = (1, 3, 7)
    assert max_attempts(schedule) == 4
    made = {1: FIRST, 2: midnight(1) + timedelta(hours=4), 3: midnight(3) + timedelta(hours=4)}
    expected = {1: midnight(1), 2: midnight(3), 3: midnight(7)}
    for n, at in made.items():
        got = next_retry_at(schedule, first_try=FIRST, attempt_no=n, attempted_at=at)
        assert got == expected[n], n
    last = next_retry_at(schedule, first_try=FIRST, attempt_no=4, attempted_at=midnight(7))
    assert last is None  # the schedule is exhausted


def test_never_before_the_day_after_the_attempt() -> None:
    """A schedule of 0 days, or a late catch-up run, still waits for the next day: one
    attempt per business day, and a rerun of the same day retries nothing."""
    same_day = next_retry_at((0,), first_try=FIRST, attempt_no=1, attempted_at=FIRST)
    assert same_day == midnight(1)
    late = midnight(33) + timedelta(hours=1)  # attempt 2 made weeks after its due day
    after_gap = next_retry_at((1, 3, 7), first_try=FIRST, attempt_no=2, attempted_at=late)
    assert after_gap == midnight(34)


def test_days_are_utc_dates() -> None:
    tokyo = timezone(timedelta(hours=9))
    first = datetime(2024, 2, 1, 8, 0, tzinfo=tokyo)  # 2024-01-31 23:00 UTC
    got = next_retry_at((1,), first_try=first, attempt_no=1, attempted_at=first)
    assert got == datetime(2024, 2, 1, tzinfo=UTC)


def test_an_empty_schedule_never_retries() -> None:
    assert max_attempts(()) == 1
    assert next_retry_at((), first_try=FIRST, attempt_no=1, attempted_at=FIRST) is None
