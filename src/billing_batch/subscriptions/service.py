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

from datetime import date, datetime, timedelta
from typing import Any

from .._core import clock
from .._core.errors import NotFoundError, PriceBookError, SubscriptionError
from .._core.ids import check_workspace_id, new_id
from ..config.settings import Settings
from ..periods import MAX_ANCHOR_DAY, Subscription
from ..storage import state as store
from ..storage.state import Row, StateConnection


# --- reading ---------------------------------------------------------------------------
def _rows(con: StateConnection, workspace_id: str | None) -> list[Row]:
    if workspace_id is None:
        return store.query(con, "subscriptions/events").fetchall()
    return store.query(
        con, "subscriptions/workspace_events", {"workspace_id": workspace_id}
    ).fetchall()


def load_subscriptions(
    con: StateConnection, workspace_id: str | None = None
) -> dict[str, list[Subscription]]:
    """All subscriptions (oldest first) per workspace, derived from the event history."""
    by_sub: dict[str, list[Row]] = {}
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


# --- writing ---------------------------------------------------------------------------
def _check_plan(settings: Settings, plan: str, workspace_id: str) -> None:
    """The plan must exist and bill in the workspace's currency."""
    from ..config.price_book import load_price_book

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
    con: StateConnection,
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
    store.query(
        con,
        "subscriptions/insert_event",
        {
            "subscription_id": sub_id,
            "workspace_id": workspace_id,
            "type": type_,
            "plan": plan,
            "effective_date": effective.isoformat(),
            "anchor_day": anchor_day,
            "trial_end": trial_end.isoformat() if trial_end else None,
            "recorded_at": clock.ts(now),
        },
    )


def _append(
    con: StateConnection,
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


def _check_not_billed(con: StateConnection, workspace_id: str, effective: date, what: str) -> None:
    """History is never rewritten under an issued invoice: refuse an effective date on
    or before the last day billed by a finalized live invoice (docs/billing-rules.md §8)."""
    row = store.query(
        con, "subscriptions/last_billed_invoice", {"workspace_id": workspace_id}
    ).fetchone()
    if row is not None and effective <= date.fromisoformat(row["period_end"]):
        raise SubscriptionError(
            f"{what} effective {effective} falls in days already billed by invoice "
            f"{row['number']} (through {row['period_end']}); void that invoice first, or make "
            f"it effective on {date.fromisoformat(row['period_end']) + timedelta(days=1)} "
            "or later"
        )


def _validate_workspace(workspace_id: str) -> None:
    check_workspace_id(workspace_id, error=SubscriptionError)


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
    now = now or clock.utcnow()
    with store.opened(settings) as con, store.transaction(con):
        subs = load_subscriptions(con, workspace_id).get(workspace_id, [])
        current = _current(subs)
        _check_not_billed(con, workspace_id, start, "a subscription")
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
    now = now or clock.utcnow()
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
        _check_not_billed(con, workspace_id, effective, "a plan change")
        return _append(con, current, "change", plan, effective, now)


def cancel_subscription(
    settings: Settings, workspace_id: str, effective: date, *, now: datetime | None = None
) -> Subscription:
    """Cancel from ``effective`` (the first day without the subscription)."""
    now = now or clock.utcnow()
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
        _check_not_billed(con, workspace_id, effective, "a cancellation")
        return _append(con, current, "cancel", None, effective, now)


def show_subscription(
    settings: Settings, workspace_id: str, *, on: date | None = None
) -> dict[str, Any]:
    """Current plan and full history, as a JSON-ready dict."""
    on = on or clock.utcnow().date()
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


__all__ = [
    "cancel_subscription",
    "change_subscription",
    "create_subscription",
    "load_subscriptions",
    "show_subscription",
]
