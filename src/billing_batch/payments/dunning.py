"""Dunning: failed and declined payments retried on the schedule
(:mod:`.retry_schedule`), unknown attempts resolved, ``requires_action`` payments
checked.

**The rerun rule.** A failure or decline is due when its ``next_retry_at`` has come AND
it was made before ``now``: an attempt made at the business time of this run (or later:
a backfill of an earlier date) is never retried by it, so rerunning the nightly run of
a date makes no new attempt and records no new event, whatever the schedule. And since
``next_retry_at`` is never before the day after the attempt it follows, a run after a
long gap makes one retry per invoice, not all the overdue ones at once.
"""

from __future__ import annotations

import logging
from datetime import datetime

from .._core import clock
from .._core.errors import BillingError, StripeNotConfiguredError
from ..config.settings import Settings
from ..storage import state
from .attempts import PaymentAttempt, PaymentResult, attempt_from_row
from .charging import Charger, open_charger
from .retry_schedule import max_attempts
from .stripe_gateway import API_CONNECTION_ERROR, API_ERROR, HTTPClient, require_api_key

log = logging.getLogger(__name__)


def due_payments(settings: Settings, *, now: datetime | None = None) -> list[PaymentAttempt]:
    """The last attempts :func:`retry_due_payments` would act on at ``now``: pending ones
    (resolved), unanswered failures (resolved), failures and declines due for a retry,
    and ``requires_action`` ones (checked, never retried).

    A failure or decline is due when its ``next_retry_at`` has come AND it was made
    before ``now``: an attempt made at the business time of this run (or later: a
    backfill of an earlier date) is never retried by it, so a rerun of the same date
    makes no new attempt, whatever the schedule or the stored ``next_retry_at``."""
    params = {
        "now": clock.ts(clock.aware(now)),
        "max_attempts": max_attempts(settings.payments.dunning_schedule_days),
        "api_connection_error": API_CONNECTION_ERROR,
        "api_error": API_ERROR,
    }
    with state.opened(settings) as con:
        rows = state.query(con, "payments/due_attempts", params).fetchall()
        return [attempt_from_row(r) for r in rows]


def _act_on(charger: Charger, last: PaymentAttempt) -> PaymentResult | None:
    """Check a ``requires_action`` attempt (a result only if it got paid); otherwise
    pay again: resolution of an unknown attempt, or attempt n+1."""
    if last.status == "requires_action":
        return charger.poll(last)
    return charger.pay(last.invoice_id, None)


def retry_due_payments(
    settings: Settings,
    *,
    now: datetime | None = None,
    http_client: HTTPClient | None = None,
) -> list[PaymentResult | BillingError]:
    """Dunning: retry every failed or declined payment whose ``next_retry_at`` has come
    (a new attempt number each time, up to ``1 + len(dunning_schedule_days)`` attempts),
    resolve attempts left pending or unanswered, and record ``requires_action`` payments
    the customer has since authenticated (they are never retried automatically).

    Returns one result per invoice acted on (a ``requires_action`` one only when it got
    paid), or the error that invoice met: one failure never stops the others. Nothing
    due: ``[]``, without needing a Stripe key. Raises :class:`StripeNotConfiguredError`
    when something is due and Stripe is not configured (or rejects the key)."""
    due = due_payments(settings, now=now)
    if not due:
        return []
    results: list[PaymentResult | BillingError] = []
    with open_charger(settings, now, http_client) as charger:
        require_api_key(settings)
        for last in due:
            try:
                result = _act_on(charger, last)
            except StripeNotConfiguredError:
                raise
            except BillingError as exc:
                log.warning("invoice %s: not retried: %s", last.invoice_id, exc)
                results.append(exc)
                continue
            if result is not None:
                results.append(result)
    return results


__all__ = ["due_payments", "retry_due_payments"]
