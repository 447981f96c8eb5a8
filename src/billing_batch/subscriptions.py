"""Subscriptions: which plan is in force for a workspace on each day, and its billing periods.

The history is append-only (``subscription_events``): ``create``, ``change`` and
``cancel`` events, each effective from a date. Nothing is overwritten; the state on
any day is derived from the events. Rules:

* ``create --start D``: the subscription is in force from D (inclusive).
* ``change --plan P --effective D``: plan P from D (inclusive); the old plan covers up
  to D-1. A change must be on or after the start and before any cancellation.
* ``cancel --effective D``: D is the first day *without* the subscription (the last
  day in force is D-1). The billing period in progress is cut at D-1: that partial
  period gets the *final* invoice.
* A workspace has at most one subscription at a time; after a cancellation a new one
  may be created from the cancellation date on.
* ``trialing``: with ``--trial-days N`` the first N days carry no base fee (usage is
  still priced by the plan); the status reads ``trialing`` until the trial ends.
* Billing periods follow the anchor day (1-28) of the subscription in force: with
  anchor 15, periods run from the 15th to the 14th. A workspace without a subscription
  is billed by calendar month (anchor 1). A period is cut at a cancellation.
* Proration (base fee and minimum commitment): ``amount × days in force / days in the
  nominal period`` (the full anchor-aligned period containing those days), rounded
  once per line (HALF_UP).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from . import store
from .config import Settings
from .errors import NotFoundError, PriceBookError, SubscriptionError
from .ids import new_id

MAX_ANCHOR_DAY = 28


@dataclass(frozen=True)
class PlanSpan:
    """A run of consecutive days [start, end] with one plan in force."""

    start: date
    end: date
    plan: str
    subscription_id: str | None  # None: no subscription, the account's default plan
    trial_end: date | None = None

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def fee_days(self) -> int:
        """Days of this span that carry the base fee (not in a trial)."""
        if self.subscription_id is None:
            return 0
        first = self.start
        if self.trial_end is not None and self.trial_end >= first:
            first = self.trial_end + timedelta(days=1)
        return max((self.end - first).days + 1, 0)


@dataclass(frozen=True)
class Period:
    """A billing period [start, end] and the nominal (uncut) period it belongs to."""

    start: date
    end: date
    nominal_start: date
    nominal_end: date
    kind: str = "regular"  # "final" when cut short by a cancellation

    @property
    def nominal_days(self) -> int:
        return (self.nominal_end - self.nominal_start).days + 1


@dataclass(frozen=True)
class Subscription:
    """One subscription as derived from its events."""

    id: str
    workspace_id: str
    start: date
    anchor_day: int
    trial_end: date | None
    canceled_from: date | None  # first day without it
    plans: tuple[tuple[date, str], ...]  # (effective date, plan), ascending
    history: tuple[dict[str, Any], ...]

    def status(self, on: date) -> str:
        if self.canceled_from is not None and on >= self.canceled_from:
            return "canceled"
        if on < self.start:
            return "scheduled"
        if self.trial_end is not None and on <= self.trial_end:
            return "trialing"
        return "active"

    def plan_on(self, day: date) -> str | None:
        if day < self.start or (self.canceled_from is not None and day >= self.canceled_from):
            return None
        current = None
        for eff, plan in self.plans:
            if eff <= day:
                current = plan
        return current

    @property
    def last_day(self) -> date | None:
        return None if self.canceled_from is None else self.canceled_from - timedelta(days=1)

    def to_dict(self, on: date) -> dict[str, Any]:
        return {
            "id": self.id,
            "workspaceId": self.workspace_id,
            "status": self.status(on),
            "plan": self.plan_on(on) or self.plans[-1][1],
            "start": self.start,
            "anchorDay": self.anchor_day,
            "trialEnd": self.trial_end,
            "canceledFrom": self.canceled_from,
            "plans": [{"plan": p, "effective": d} for d, p in self.plans],
        }


# --- reading ---------------------------------------------------------------------------
def _rows(con: sqlite3.Connection, workspace_id: str | None) -> list[sqlite3.Row]:
    if workspace_id is None:
        return con.execute("SELECT * FROM subscription_events ORDER BY seq").fetchall()
    return con.execute(
        "SELECT * FROM subscription_events WHERE workspace_id = ? ORDER BY seq", (workspace_id,)
    ).fetchall()


def load_subscriptions(
    con: sqlite3.Connection, workspace_id: str | None = None
) -> dict[str, list[Subscription]]:
    """All subscriptions (oldest first) per workspace, derived from the event history."""
    by_sub: dict[str, list[sqlite3.Row]] = {}
    for row in _rows(con, workspace_id):
        by_sub.setdefault(row["subscription_id"], []).append(row)
    out: dict[str, list[Subscription]] = {}
    for sub_id, events in by_sub.items():
        first = events[0]
        plans: list[tuple[date, str]] = []
        canceled: date | None = None
        for e in events:
            eff = date.fromisoformat(e["effective_date"])
            if e["type"] in ("create", "change"):
                plans.append((eff, e["plan"]))
            elif e["type"] == "cancel":
                canceled = eff
        plans.sort(key=lambda p: p[0])
        sub = Subscription(
            id=sub_id,
            workspace_id=first["workspace_id"],
            start=date.fromisoformat(first["effective_date"]),
            anchor_day=int(first["anchor_day"] or 1),
            trial_end=date.fromisoformat(first["trial_end"]) if first["trial_end"] else None,
            canceled_from=canceled,
            plans=tuple(plans),
            history=tuple(
                {
                    "seq": e["seq"],
                    "type": e["type"],
                    "plan": e["plan"],
                    "effective": e["effective_date"],
                    "recordedAt": e["recorded_at"],
                }
                for e in events
            ),
        )
        out.setdefault(sub.workspace_id, []).append(sub)
    for subs in out.values():
        subs.sort(key=lambda s: s.start)
    return out


def plan_spans(
    subs: list[Subscription], start: date, end: date, default_plan: str
) -> list[PlanSpan]:
    """Cover [start, end] with runs of one plan (the default plan where no
    subscription is in force)."""
    spans: list[PlanSpan] = []
    day = start
    while day <= end:
        sub = next((s for s in subs if s.plan_on(day) is not None), None)
        plan = sub.plan_on(day) if sub else default_plan
        assert plan is not None
        run_end = day
        while run_end < end:
            nxt = run_end + timedelta(days=1)
            nsub = next((s for s in subs if s.plan_on(nxt) is not None), None)
            nplan = nsub.plan_on(nxt) if nsub else default_plan
            if nsub is not sub or nplan != plan:
                break
            run_end = nxt
        spans.append(
            PlanSpan(
                start=day,
                end=run_end,
                plan=plan,
                subscription_id=sub.id if sub else None,
                trial_end=sub.trial_end if sub else None,
            )
        )
        day = run_end + timedelta(days=1)
    return spans


def _add_month(d: date) -> date:
    return date(d.year + (d.month == 12), d.month % 12 + 1, d.day)


def nominal_period(day: date, anchor: int) -> tuple[date, date]:
    """The anchor-aligned period containing ``day``: [anchor of this or the previous
    month, the day before the next anchor]."""
    if day.day >= anchor:
        start = date(day.year, day.month, anchor)
    else:
        prev = date(day.year - (day.month == 1), (day.month - 2) % 12 + 1, anchor)
        start = prev
    return start, _add_month(start) - timedelta(days=1)


def _anchor_on(subs: list[Subscription], day: date) -> tuple[int, Subscription | None]:
    sub = next((s for s in subs if s.plan_on(day) is not None), None)
    return (sub.anchor_day, sub) if sub else (1, None)


def _is_boundary(subs: list[Subscription], day: date) -> bool:
    """Does a billing period start on ``day``?"""
    prev = day - timedelta(days=1)
    anchor_prev, sub_prev = _anchor_on(subs, prev)
    anchor, sub = _anchor_on(subs, day)
    if sub_prev is not None and sub_prev.canceled_from == day:
        return True  # a cancellation cuts the period
    if sub is not None and sub.start == day and sub.anchor_day != anchor_prev:
        return True  # a new timeline with another anchor
    return day.day == anchor


def billing_periods(subs: list[Subscription], start: date, end: date) -> list[Period]:
    """The billing periods that intersect [start, end], in order.

    A period starts on each anchor day of the anchor in force (1 without a
    subscription), on a cancellation date (the period before it is the *final* one), and
    when a subscription with a different anchor starts.
    """
    first = start
    while not _is_boundary(subs, first) and (start - first).days < 62:
        first -= timedelta(days=1)
    periods: list[Period] = []
    p = first
    while p <= end:
        q = p + timedelta(days=1)
        while not _is_boundary(subs, q):
            q += timedelta(days=1)
        anchor, sub_at_end = _anchor_on(subs, q - timedelta(days=1))
        anchor_start, _ = _anchor_on(subs, p)
        n_start, n_end = nominal_period(p, anchor_start)
        final = sub_at_end is not None and sub_at_end.canceled_from == q
        periods.append(
            Period(p, q - timedelta(days=1), n_start, n_end, "final" if final else "regular")
        )
        p = q
    return periods


def periods_closed_before(
    subs: list[Subscription], run_date: date, *, lookback_days: int = 62
) -> list[Period]:
    """Periods that ended before ``run_date`` within the lookback window (the nightly
    invoices those not invoiced yet)."""
    lo = run_date - timedelta(days=lookback_days)
    return [p for p in billing_periods(subs, lo, run_date) if p.end < run_date and p.end >= lo]


# --- writing ---------------------------------------------------------------------------
def _check_plan(settings: Settings, plan: str, workspace_id: str) -> None:
    """The plan must exist and bill in the workspace's currency."""
    from .pricing import load_price_book

    book = load_price_book(settings)
    try:
        p = book.plan(plan)
    except PriceBookError as exc:
        raise SubscriptionError(f"unknown plan {plan!r}: {exc}") from None
    currency = book.account(workspace_id).currency
    if p.currency != currency:
        raise SubscriptionError(
            f"plan {plan!r} bills in {p.currency} but workspace {workspace_id} is billed in "
            f"{currency}; choose one of: {', '.join(x.name for x in book.plans_in(currency))}"
        )


def _current(subs: list[Subscription]) -> Subscription | None:
    """The subscription not canceled (at most one)."""
    live = [s for s in subs if s.canceled_from is None]
    return live[-1] if live else None


def _insert(
    con: sqlite3.Connection,
    *,
    sub_id: str,
    workspace_id: str,
    type_: str,
    plan: str | None,
    effective: date,
    anchor_day: int | None,
    trial_end: date | None,
    now: datetime,
) -> None:
    con.execute(
        "INSERT INTO subscription_events (subscription_id, workspace_id, type, plan, "
        "effective_date, anchor_day, trial_end, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            sub_id,
            workspace_id,
            type_,
            plan,
            effective.isoformat(),
            anchor_day,
            trial_end.isoformat() if trial_end else None,
            store.ts(now),
        ),
    )


def _append(
    con: sqlite3.Connection,
    current: Subscription,
    type_: str,
    plan: str | None,
    effective: date,
    now: datetime,
) -> Subscription:
    """Append a change or cancellation to ``current``'s history; the updated view."""
    _insert(
        con,
        sub_id=current.id,
        workspace_id=current.workspace_id,
        type_=type_,
        plan=plan,
        effective=effective,
        anchor_day=None,
        trial_end=None,
        now=now,
    )
    subs = load_subscriptions(con, current.workspace_id)[current.workspace_id]
    return next(s for s in subs if s.id == current.id)


def _validate_workspace(workspace_id: str) -> None:
    import re

    if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", workspace_id):
        raise SubscriptionError(
            f"invalid workspace id {workspace_id!r}: 1-64 letters, digits, '_', '-', '.'"
        )


def create_subscription(
    settings: Settings,
    workspace_id: str,
    plan: str,
    start: date,
    *,
    anchor_day: int = 1,
    trial_days: int = 0,
    now: datetime | None = None,
) -> Subscription:
    """Subscribe ``workspace_id`` to ``plan`` from ``start``."""
    _validate_workspace(workspace_id)
    _check_plan(settings, plan, workspace_id)
    if not 1 <= anchor_day <= MAX_ANCHOR_DAY:
        raise SubscriptionError(f"anchor day must be between 1 and {MAX_ANCHOR_DAY}")
    if trial_days < 0:
        raise SubscriptionError("trial days must not be negative")
    now = now or store.utcnow()
    with store.opened(settings) as con, store.transaction(con):
        subs = load_subscriptions(con, workspace_id).get(workspace_id, [])
        current = _current(subs)
        if current is not None:
            raise SubscriptionError(
                f"workspace {workspace_id} already has subscription {current.id} "
                f"(plan {current.plans[-1][1]}, from {current.start}); change or cancel it"
            )
        for s in subs:
            if s.canceled_from is not None and start < s.canceled_from:
                raise SubscriptionError(
                    f"start {start} overlaps subscription {s.id}, in force until "
                    f"{s.last_day}; start on {s.canceled_from} or later"
                )
        sub_id = new_id("sub")
        trial_end = start + timedelta(days=trial_days - 1) if trial_days else None
        _insert(
            con,
            sub_id=sub_id,
            workspace_id=workspace_id,
            type_="create",
            plan=plan,
            effective=start,
            anchor_day=anchor_day,
            trial_end=trial_end,
            now=now,
        )
        return load_subscriptions(con, workspace_id)[workspace_id][-1]


def change_subscription(
    settings: Settings,
    workspace_id: str,
    plan: str,
    effective: date,
    *,
    now: datetime | None = None,
) -> Subscription:
    """Switch the current subscription to ``plan`` from ``effective``."""
    _check_plan(settings, plan, workspace_id)
    now = now or store.utcnow()
    with store.opened(settings) as con, store.transaction(con):
        subs = load_subscriptions(con, workspace_id).get(workspace_id, [])
        current = _current(subs)
        if current is None:
            raise NotFoundError(f"workspace {workspace_id} has no active subscription")
        if effective < current.start:
            raise SubscriptionError(
                f"a change effective {effective} is before the subscription starts "
                f"({current.start})"
            )
        last_eff = current.plans[-1][0]
        if effective < last_eff:
            raise SubscriptionError(
                f"a change effective {effective} is before the last change ({last_eff}); "
                "history is never rewritten"
            )
        if current.plan_on(effective) == plan:
            raise SubscriptionError(f"plan {plan!r} is already in force on {effective}")
        return _append(con, current, "change", plan, effective, now)


def cancel_subscription(
    settings: Settings, workspace_id: str, effective: date, *, now: datetime | None = None
) -> Subscription:
    """Cancel from ``effective`` (the first day without the subscription)."""
    now = now or store.utcnow()
    with store.opened(settings) as con, store.transaction(con):
        subs = load_subscriptions(con, workspace_id).get(workspace_id, [])
        current = _current(subs)
        if current is None:
            raise NotFoundError(f"workspace {workspace_id} has no active subscription")
        if effective <= current.start:
            raise SubscriptionError(
                f"cancellation effective {effective} must be after the start ({current.start})"
            )
        last_eff = current.plans[-1][0]
        if effective <= last_eff and len(current.plans) > 1:
            raise SubscriptionError(
                f"cancellation effective {effective} must be after the last change ({last_eff})"
            )
        return _append(con, current, "cancel", None, effective, now)


def show_subscription(
    settings: Settings, workspace_id: str, *, on: date | None = None
) -> dict[str, Any]:
    """Current plan and full history, as a JSON-ready dict."""
    on = on or store.utcnow().date()
    with store.opened(settings) as con:
        subs = load_subscriptions(con, workspace_id).get(workspace_id, [])
    if not subs:
        raise NotFoundError(f"workspace {workspace_id} has no subscription")
    current = next((s for s in reversed(subs) if s.plan_on(on)), None) or subs[-1]
    return {
        "workspaceId": workspace_id,
        "current": current.to_dict(on),
        "history": [{**s.to_dict(on), "events": list(s.history)} for s in subs],
    }
