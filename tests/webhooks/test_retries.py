"""The retry schedule: backoff with jitter up to the 72-hour deadline, then given up."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from billing_batch._core import clock
from billing_batch.webhooks import delivery, retries
from tests.webhooks.support import (
    T0,
    Receiver,
    attempts,
    deliveries,
    endpoint,
    make_settings,
    record,
    run,
)


def test_gives_up_about_72_hours_after_the_event(tmp_path: Path, receiver: Receiver) -> None:
    settings = make_settings(tmp_path, [endpoint("crm", receiver.url())])
    eid = record(settings)
    receiver.actions = [500] * 100
    times: list[datetime] = []
    now = T0
    for _ in range(30):
        report = run(settings, receiver, now)
        assert report.attempted == 1
        times.append(now)
        row = deliveries(settings)[(eid, "crm")]
        if row["status"] != "pending":
            break
        now = clock.parse_ts(row["next_attempt_at"])
    row = deliveries(settings)[(eid, "crm")]
    assert row["status"] == "failed"
    assert re.fullmatch(r"gave up after 1[01] attempt\(s\): HTTP 500", row["last_error"])
    assert report.failed == 1 and report.results[0].outcome == "failed"
    # the schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h (± 20 %), then the
    # last attempt at the 72-hour deadline
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    for gap, nominal in zip(gaps[:8], retries.RETRY_DELAYS, strict=False):
        assert nominal * 0.8 <= gap <= nominal * 1.2
    # ten attempts, or eleven when the jitter shortened the gaps enough to fit one more
    assert times[-1] == T0 + timedelta(hours=72)
    assert len(times) in (10, 11) and len(times) == len(attempts(settings))
    assert len(set(receiver.ids)) == 1
    # and it is never tried again
    assert run(settings, receiver, T0 + timedelta(days=10)).attempted == 0


def test_an_event_first_attempted_after_the_deadline_gets_one_attempt(
    tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(tmp_path, [endpoint("crm", receiver.url())])
    run(settings, receiver, T0)  # the endpoint is known from T0
    eid = record(settings, at=T0 + timedelta(hours=1))
    receiver.actions = [503]
    report = run(settings, receiver, T0 + timedelta(days=5))  # no pass ran for days
    assert report.attempted == 1 and report.failed == 1
    assert deliveries(settings)[(eid, "crm")]["status"] == "failed"


def test_retry_after_is_honoured_on_429_and_503_only_and_capped() -> None:
    assert retries.retry_after(429, "120") == timedelta(seconds=120)
    assert retries.retry_after(503, " 30 ") == timedelta(seconds=30)
    assert retries.retry_after(503, "999999") == retries.MAX_RETRY_AFTER == timedelta(hours=24)
    assert retries.retry_after(500, "120") is None
    assert retries.retry_after(429, "Wed, 21 Oct 2026 07:28:00 GMT") is None  # date form
    assert retries.retry_after(429, "-5") is None
    assert retries.retry_after(429, None) is None


def test_the_next_attempt_never_falls_after_the_deadline() -> None:
    until = retries.deadline(T0, 72)
    assert until == T0 + timedelta(hours=72)
    first = retries.next_attempt_at(T0, 1, None, until)
    assert T0 + timedelta(seconds=4) <= first <= T0 + timedelta(seconds=6)
    asked = retries.next_attempt_at(T0, 1, timedelta(hours=1), until)
    assert asked == T0 + timedelta(hours=1)  # longer than the schedule's 5 s: honoured
    late = T0 + timedelta(hours=71)
    assert retries.next_attempt_at(late, 9, None, until) == until  # 24 h, capped
    assert retries.next_attempt_at(late, 1, timedelta(hours=24), until) == until
    # the last delay repeats
    last = retries.RETRY_DELAYS[-1]
    assert last * 0.8 <= retries.next_delay(50) <= last * 1.2
    assert retries.lease(10) == timedelta(seconds=100)


def test_a_retry_after_answer_postpones_the_next_attempt(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, [endpoint("crm", "http://127.0.0.1:9/hooks")])
    eid = record(settings)

    def busy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"retry-after": "600"})

    with httpx.Client(transport=httpx.MockTransport(busy)) as client:
        report = delivery.deliver(settings, now=T0, client=client)

    [result] = report.results
    assert (result.outcome, result.status_code) == ("retry_scheduled", 429)
    assert result.next_attempt_at == T0 + timedelta(seconds=600)
    assert deliveries(settings)[(eid, "crm")]["next_attempt_at"] == clock.ts(
        T0 + timedelta(seconds=600)
    )
