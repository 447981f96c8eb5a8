"""Billing periods and plan spans of subscription timelines (pure): calendar months
without a subscription, anchor days, proration inside the nominal period, plan changes,
cancellations (the final period) and trial days."""

from __future__ import annotations

from datetime import date

import pytest

from billing_batch.periods import Subscription, billing_periods, nominal_period, plan_spans

D = date


def sub(
    start: date,
    plans: list[tuple[date, str]] | None = None,
    *,
    anchor: int = 1,
    cancel: date | None = None,
    trial_end: date | None = None,
    id: str = "sub_1",
) -> Subscription:
    return Subscription(
        id=id,
        workspace_id="ws_1",
        start=start,
        anchor_day=anchor,
        trial_end=trial_end,
        canceled_from=cancel,
        plans=tuple(plans or [(start, "growth")]),
        history=(),
    )


def spans(subs: list[Subscription], start: date, end: date) -> list[tuple[str, str, str, int]]:
    return [
        (str(s.start), str(s.end), s.plan, s.fee_days())
        for s in plan_spans(subs, start, end, "payg")
    ]


def periods(subs: list[Subscription], start: date, end: date) -> list[tuple[str, str, int, str]]:
    return [
        (str(p.start), str(p.end), p.nominal_days, p.kind)
        for p in billing_periods(subs, start, end)
    ]


def test_no_subscription_is_calendar_months() -> None:
    assert periods([], D(2024, 1, 10), D(2024, 3, 1)) == [
        ("2024-01-01", "2024-01-31", 31, "regular"),
        ("2024-02-01", "2024-02-29", 29, "regular"),
        ("2024-03-01", "2024-03-31", 31, "regular"),
    ]
    assert spans([], D(2024, 1, 1), D(2024, 1, 31)) == [("2024-01-01", "2024-01-31", "payg", 0)]


@pytest.mark.parametrize(
    ("day", "anchor", "expected"),
    [
        (D(2024, 1, 20), 15, (D(2024, 1, 15), D(2024, 2, 14))),
        (D(2024, 1, 10), 15, (D(2023, 12, 15), D(2024, 1, 14))),
        (D(2024, 2, 29), 1, (D(2024, 2, 1), D(2024, 2, 29))),
        (D(2023, 2, 28), 1, (D(2023, 2, 1), D(2023, 2, 28))),
        (D(2024, 4, 30), 1, (D(2024, 4, 1), D(2024, 4, 30))),
        (D(2024, 12, 31), 28, (D(2024, 12, 28), D(2025, 1, 27))),
    ],
)
def test_nominal_periods(day: date, anchor: int, expected: tuple[date, date]) -> None:
    assert nominal_period(day, anchor) == expected


def test_anchor_15_periods_run_15th_to_14th() -> None:
    s = sub(D(2024, 1, 15), anchor=15)
    assert periods([s], D(2024, 1, 15), D(2024, 3, 20)) == [
        ("2024-01-15", "2024-02-14", 31, "regular"),
        ("2024-02-15", "2024-03-14", 29, "regular"),
        ("2024-03-15", "2024-04-14", 31, "regular"),
    ]


def test_start_mid_month_prorates_within_the_calendar_period() -> None:
    s = sub(D(2024, 1, 10))
    assert periods([s], D(2024, 1, 1), D(2024, 1, 31)) == [
        ("2024-01-01", "2024-01-31", 31, "regular")
    ]
    assert spans([s], D(2024, 1, 1), D(2024, 1, 31)) == [
        ("2024-01-01", "2024-01-09", "payg", 0),
        ("2024-01-10", "2024-01-31", "growth", 22),
    ]


def test_plan_change_splits_spans_not_periods() -> None:
    s = sub(D(2024, 1, 1), [(D(2024, 1, 1), "growth"), (D(2024, 2, 10), "scale")])
    assert periods([s], D(2024, 2, 1), D(2024, 2, 29)) == [
        ("2024-02-01", "2024-02-29", 29, "regular")
    ]
    assert spans([s], D(2024, 2, 1), D(2024, 2, 29)) == [
        ("2024-02-01", "2024-02-09", "growth", 9),
        ("2024-02-10", "2024-02-29", "scale", 20),
    ]


def test_cancellation_cuts_a_final_period() -> None:
    s = sub(D(2023, 12, 1), cancel=D(2024, 1, 20))
    assert periods([s], D(2024, 1, 1), D(2024, 2, 1)) == [
        ("2024-01-01", "2024-01-19", 31, "final"),
        ("2024-01-20", "2024-01-31", 31, "regular"),
        ("2024-02-01", "2024-02-29", 29, "regular"),
    ]
    assert spans([s], D(2024, 1, 1), D(2024, 1, 19)) == [("2024-01-01", "2024-01-19", "growth", 19)]


def test_trial_days_carry_no_fee() -> None:
    s = sub(D(2024, 1, 1), trial_end=D(2024, 1, 14))
    assert spans([s], D(2024, 1, 1), D(2024, 1, 31)) == [("2024-01-01", "2024-01-31", "growth", 17)]
    assert s.status(D(2024, 1, 14)) == "trialing" and s.status(D(2024, 1, 15)) == "active"
