"""subscriptions.service: the subscription history in the state store, and every
refusal (unknown plan, anchor day, overlap, changes before the start or the last change,
an already finalized period)."""

from __future__ import annotations

import re
from datetime import date

import pytest

from billing_batch._core.errors import NotFoundError, SubscriptionError
from billing_batch.config.settings import Settings
from billing_batch.invoicing.service import create_invoice, finalize_invoice, void_invoice
from billing_batch.subscriptions.service import (
    cancel_subscription,
    change_subscription,
    create_subscription,
    show_subscription,
)

D = date


def test_store_history_and_refusals(settings: Settings) -> None:
    with pytest.raises(NotFoundError):
        show_subscription(settings, "ws_1")
    with pytest.raises(SubscriptionError, match="unknown plan"):
        create_subscription(settings, "ws_1", "no-such-plan", D(2024, 1, 1))
    with pytest.raises(SubscriptionError, match="anchor day"):
        create_subscription(settings, "ws_1", "growth", D(2024, 1, 1), anchor_day=31)
    with pytest.raises(SubscriptionError, match="invalid workspace"):
        create_subscription(settings, "ws 1", "growth", D(2024, 1, 1))
    create_subscription(settings, "ws_1", "growth", D(2024, 1, 10), anchor_day=15)
    with pytest.raises(SubscriptionError, match="already has subscription"):
        create_subscription(settings, "ws_1", "growth", D(2024, 2, 1))
    with pytest.raises(SubscriptionError, match="before the subscription starts"):
        change_subscription(settings, "ws_1", "payg", D(2024, 1, 5))
    with pytest.raises(SubscriptionError, match="already in force"):
        change_subscription(settings, "ws_1", "growth", D(2024, 2, 1))
    with pytest.raises(SubscriptionError, match="unknown plan"):
        change_subscription(settings, "ws_1", "nope", D(2024, 2, 1))
    change_subscription(settings, "ws_1", "payg", D(2024, 2, 1))
    with pytest.raises(SubscriptionError, match="before the last change"):
        change_subscription(settings, "ws_1", "growth", D(2024, 1, 20))
    with pytest.raises(SubscriptionError, match="must be after the last change"):
        cancel_subscription(settings, "ws_1", D(2024, 1, 25))
    cancel_subscription(settings, "ws_1", D(2024, 3, 1))
    with pytest.raises(NotFoundError):
        cancel_subscription(settings, "ws_1", D(2024, 4, 1))
    with pytest.raises(SubscriptionError, match="overlaps"):
        create_subscription(settings, "ws_1", "growth", D(2024, 2, 15))
    shown = show_subscription(settings, "ws_1", on=D(2024, 2, 10))
    assert shown["current"]["plan"] == "payg" and shown["current"]["status"] == "active"
    assert shown["current"]["anchorDay"] == 15
    events = shown["history"][0]["events"]
    assert [e["type"] for e in events] == ["create", "change", "cancel"]
    assert show_subscription(settings, "ws_1", on=D(2024, 3, 1))["current"]["status"] == "canceled"
    create_subscription(settings, "ws_1", "growth", D(2024, 3, 1))  # after the cancellation: fine


def test_days_billed_by_a_finalized_invoice_are_never_rewritten(settings: Settings) -> None:
    """docs/billing-rules.md §8: a change, cancellation or new start on or before the last
    day a live finalized invoice billed is refused; a void releases those days."""
    create_subscription(settings, "ws_1", "growth", D(2024, 1, 1))
    draft = create_invoice(settings, "ws_1", D(2024, 1, 1), D(2024, 1, 31))
    invoice = finalize_invoice(settings, draft.id, render=False)
    message = f"days already billed by invoice {invoice.number} (through 2024-01-31); void"
    for attempt in (
        lambda: change_subscription(settings, "ws_1", "payg", D(2024, 1, 20)),
        lambda: cancel_subscription(settings, "ws_1", D(2024, 1, 31)),
    ):
        with pytest.raises(SubscriptionError, match=re.escape(message)):
            attempt()
    void_invoice(settings, invoice.id)
    assert change_subscription(settings, "ws_1", "payg", D(2024, 1, 20)).plans[-1] == (
        D(2024, 1, 20),
        "payg",
    )
