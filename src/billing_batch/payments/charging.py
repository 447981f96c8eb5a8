"""Charging an invoice through Stripe: never twice, every attempt recorded.

* :func:`pay_invoice` charges one ``open`` or ``overdue`` invoice (a ``draft`` is finalized
  first, as on Stripe): a PaymentIntent created and confirmed off-session for the
  workspace's Stripe customer (:mod:`.customers`), for the invoice's amount due in the
  currency's minor units, with the invoice id, number and workspace in its metadata.
* Every attempt is a row of ``payment_attempts`` (:mod:`.attempts`), committed as
  ``pending`` BEFORE the Stripe call (key ``invoice-<id>-attempt-<n>``) and completed
  after it (:mod:`.recording`), in the same transaction as the invoice's move to
  ``paid`` or the ``billing.invoice.payment_failed`` event. An attempt whose fate Stripe
  has not told us (left ``pending`` by a crash, or ``failed`` on a network error or a
  5xx, when the request may have been executed) is *resolved* before anything else:
  looked up by metadata search, else sent again with its own key (Stripe replays the
  stored result, or performs it if it never arrived). Attempt n+1 never starts while
  attempt n may still turn into a charge.
* :func:`pay_invoices` charges a batch (the nightly run); one failure never stops the
  others. Dunning (retrying on a schedule) is :mod:`.dunning`.

Outcomes (:mod:`.outcomes`): ``succeeded`` (invoice paid), ``declined`` (card declined:
decline code and message kept, retried on the schedule), ``requires_action`` (3-D
Secure: the customer must authenticate; never retried automatically), ``failed`` (rate
limit, network, Stripe error or refused request, after the SDK's network retries and a
bounded backoff on rate limits; retried on the schedule), ``pending`` (not known yet).
Stripe itself is only reached through :mod:`.stripe_gateway`. Design and the
crash-safety argument: ``docs/payments.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

from .._core import clock
from .._core.errors import (
    BillingError,
    InputError,
    NoPaymentMethodError,
    PaymentError,
    PaymentTransientError,
    StateError,
    StripeNotConfiguredError,
)
from ..config.price_book import load_price_book
from ..config.settings import Settings
from ..invoicing import service as invoices
from ..invoicing.model import Invoice
from ..rating.plans import PriceBook
from ..storage import state
from .attempts import (
    PAYABLE,
    PaymentAttempt,
    PaymentResult,
    check_payable,
    insert_pending,
    label,
    load_attempt,
    load_attempts,
    new_attempt,
    result_of,
)
from .customers import stripe_customer
from .outcomes import Outcome, outcome_from_failure, outcome_from_intent
from .recording import record
from .redaction import redact
from .stripe_gateway import HTTPClient, StripeGateway, require_api_key

log = logging.getLogger(__name__)

#: Times ``pay`` looks again when another process started an attempt of the same
#: invoice between its look and its own attempt.
_LOOKS = 4


class Charger:
    """One batch of payment work: one Stripe gateway, one price book, one ``now``."""

    def __init__(self, settings: Settings, now: datetime, gateway: StripeGateway) -> None:
        self.settings = settings
        self.now = now
        self.gateway = gateway
        self._book: PriceBook | None = None

    @property
    def book(self) -> PriceBook:
        if self._book is None:
            self._book = load_price_book(self.settings)
        return self._book

    # -- paying ---------------------------------------------------------------------------
    def pay(self, invoice_ref: str, payment_method: str | None) -> PaymentResult:
        """Charge the invoice (by id or number); a draft is finalized first."""
        inv = invoices.get_invoice(self.settings, invoice_ref)
        if inv.status != "draft":
            return self._pay(inv, payment_method)
        opened = self._finalize_draft(inv, payment_method)
        return replace(self._pay(opened, payment_method), finalized=True)

    def _finalize_draft(self, inv: Invoice, payment_method: str | None) -> Invoice:
        """Stripe's convention: paying a draft finalizes it first (numbered, frozen, its
        JSON and PDF written; ``invoices.finalize_invoice``), then charges it. What can be
        checked before is checked before, so a payment that cannot even be attempted
        (Stripe not configured, no payment method) leaves the draft a draft. Finalized
        meanwhile by another caller: that invoice is charged."""
        if inv.due_minor != 0:
            require_api_key(self.settings)
            self._payment_method(inv, payment_method, None)
        try:
            opened = invoices.finalize_invoice(self.settings, inv.id, now=self.now)
        except StateError:
            opened = invoices.get_invoice(self.settings, inv.id)
            if opened.status == "draft":
                raise
            return opened
        log.info(
            "invoice %s: draft finalized as %s to be paid (total %s %s)",
            inv.id,
            opened.number,
            opened.total,
            opened.currency,
        )
        return opened

    def _pay(self, inv: Invoice, payment_method: str | None) -> PaymentResult:
        """Settle what the last attempt left open, then (if there is still something to
        charge) begin attempt n+1 and charge it. Looks again if another process began
        an attempt in between."""
        for _ in range(_LOOKS):
            with state.opened(self.settings) as con:
                inv = invoices.load_invoice(con, inv.id)
                attempts = load_attempts(con, inv.id)
            last = attempts[-1] if attempts else None
            if last is not None and last.status == "pending":
                return self._resolve(inv, last)
            check_payable(inv, attempts)
            if inv.due_minor == 0:
                return self._settle_zero(inv)
            require_api_key(self.settings)
            if last is not None and last.unanswered:
                return self._resolve(inv, last)
            if last is not None and last.status == "requires_action" and last.payment_intent_id:
                done = self._release(inv, last)
                if done is not None:
                    return done
            method = self._payment_method(inv, payment_method, last)
            customer = self._customer(inv)
            attempt = self._begin(inv, last, method)
            if attempt is not None:
                return self._charge(inv, attempt, customer)
        raise PaymentTransientError(
            f"invoice {label(inv)}: another payment of it is in progress; try again shortly"
        )

    def _settle_zero(self, inv: Invoice) -> PaymentResult:
        """Nothing to charge (and Stripe refuses an amount of 0): paid without a charge."""
        with state.opened(self.settings) as con, state.transaction(con):
            paid = invoices.transition(
                con, inv.id, "paid", at=self.now, reason="nothing to charge: the amount due is 0"
            )
        log.info("invoice %s: amount due 0, marked paid without a charge", label(inv))
        return PaymentResult(
            invoice_id=inv.id,
            attempt_no=0,
            status="succeeded",
            payment_intent_id=None,
            decline_code=None,
            message="nothing to charge: the amount due is 0",
            amount_minor=0,
            currency=inv.currency,
            completed_at=self.now,
            invoice=paid,
        )

    def _payment_method(
        self, inv: Invoice, explicit: str | None, last: PaymentAttempt | None
    ) -> str:
        """The one given, else the price book's default, else the last attempt's."""
        if explicit is not None:
            pm = explicit.strip()
            if not pm or len(pm) > 255 or any(c.isspace() for c in pm):
                raise InputError(f"not a payment method id: {explicit!r} (expected pm_...)")
            return pm
        account = self.book.account(inv.workspace_id)
        if account.default_payment_method:
            return account.default_payment_method
        if last is not None and last.payment_method:
            return last.payment_method
        raise NoPaymentMethodError(
            f"invoice {label(inv)}: no payment method: pass one (billing-batch invoice pay "
            f"{label(inv)} --payment-method pm_...) or set default_payment_method for workspace "
            f"{inv.workspace_id} in the price book",
            invoice_id=inv.id,
            invoice_number=inv.number,
            workspace_id=inv.workspace_id,
        )

    def _customer(self, inv: Invoice) -> str:
        account = self.book.account(inv.workspace_id)
        return stripe_customer(self.settings, self.gateway, account, now=self.now)

    def _begin(
        self, inv: Invoice, last: PaymentAttempt | None, payment_method: str
    ) -> PaymentAttempt | None:
        """Commit attempt n+1 as ``pending`` (before any charge), unless something moved
        since ``last`` was read (None: look again)."""
        with state.opened(self.settings) as con, state.transaction(con):
            current = invoices.load_invoice(con, inv.id)
            attempts = load_attempts(con, inv.id)
            now_last = attempts[-1] if attempts else None
            if (now_last.attempt_no if now_last else 0) != (last.attempt_no if last else 0):
                return None
            if now_last is not None and now_last.unknown:
                return None
            check_payable(current, attempts)
            n = (now_last.attempt_no if now_last else 0) + 1
            attempt = new_attempt(current, n, payment_method, self.now)
            insert_pending(con, attempt)
        return attempt

    def _charge(self, inv: Invoice, attempt: PaymentAttempt, customer: str) -> PaymentResult:
        """Send a freshly begun attempt and record what Stripe said."""
        log.info(
            "invoice %s: attempt %d, charging %s %s with %s (idempotency key %s)",
            label(inv),
            attempt.attempt_no,
            attempt.amount,
            attempt.currency,
            attempt.payment_method,
            attempt.idempotency_key,
        )
        return self._record(inv, attempt, self._send(inv, attempt, customer), "pending")

    def _send(self, inv: Invoice, attempt: PaymentAttempt, customer: str) -> Outcome:
        """Create and confirm the attempt's PaymentIntent (with its own key). The request
        is a pure function of the attempt row, the frozen invoice and the customer, so a
        resend is byte-identical."""
        assert attempt.payment_method is not None
        self.gateway.connect()
        try:
            pi = self.gateway.create_payment_intent(
                amount_minor=attempt.amount_minor,
                currency=attempt.currency,
                customer=customer,
                payment_method=attempt.payment_method,
                description=f"Invoice {label(inv)}",
                metadata={
                    "invoice_id": inv.id,
                    "invoice_number": inv.number or "",
                    "workspace_id": inv.workspace_id,
                    "attempt": str(attempt.attempt_no),
                },
                idempotency_key=attempt.idempotency_key,
            )
        except PaymentError as err:
            return self._outcome_of_error(inv, attempt, err)
        return outcome_from_intent(pi)

    def _outcome_of_error(
        self, inv: Invoice, attempt: PaymentAttempt, err: PaymentError
    ) -> Outcome:
        f = self.gateway.failure(err)
        if f.kind != "idempotency":
            return outcome_from_failure(f, err)
        # Stripe has this key with other parameters (e.g. the customer changed since the
        # first try): find what the first request did.
        found = self._find_intent(inv, attempt)
        if found is not None:
            return outcome_from_intent(found)
        log.error(
            "invoice %s attempt %d: %s; its PaymentIntent is not found yet: left pending",
            label(inv),
            attempt.attempt_no,
            f.message,
        )
        return Outcome(
            "pending",
            message="Stripe has a request under this idempotency key that search does not "
            "show yet; resolved on the next run",
        )

    def _find_intent(self, inv: Invoice, attempt: PaymentAttempt) -> dict[str, Any] | None:
        """The PaymentIntent an attempt created, found by its metadata. (Stripe's search
        lags by up to about a minute: a miss is followed by a resend under the same key,
        which Stripe answers with the stored result of a request that young.)"""
        intents = self.gateway.search_payment_intents(inv.id, attempt.attempt_no)
        if not intents:
            return None
        succeeded = [pi for pi in intents if pi.get("status") == "succeeded"]
        if len(succeeded) > 1:
            log.error(
                "invoice %s attempt %d: %d succeeded PaymentIntents (%s): refund the extra ones",
                label(inv),
                attempt.attempt_no,
                len(succeeded),
                ", ".join(str(pi.get("id")) for pi in succeeded),
            )
        return succeeded[0] if succeeded else intents[0]

    # -- resolving what is not known yet --------------------------------------------------
    def _resolve(self, inv: Invoice, attempt: PaymentAttempt) -> PaymentResult:
        """Find out what happened to an attempt whose outcome is unknown (``pending``
        after a crash, or ``failed`` without an answer) and record it; if Stripe cannot
        be asked, it stays as it was (:meth:`_unresolved`)."""
        log.warning(
            "invoice %s: attempt %d is %s%s; asking Stripe what became of it",
            label(inv),
            attempt.attempt_no,
            attempt.status,
            f" ({attempt.error_code})" if attempt.error_code else "",
        )
        self.gateway.connect()
        try:
            outcome = self._lookup_or_resend(inv, attempt)
        except StripeNotConfiguredError:
            raise
        except PaymentError as err:
            return self._unresolved(inv, attempt, err.message)
        if outcome.error is not None:
            raise outcome.error
        if not outcome.definitive:
            return self._unresolved(inv, attempt, outcome.message or str(outcome.error_code))
        return self._record(inv, attempt, outcome, attempt.status)

    def _lookup_or_resend(self, inv: Invoice, attempt: PaymentAttempt) -> Outcome:
        """Search first (by metadata): it finds the PaymentIntent whatever the age of the
        key. Not found: send the same request again under the same key. If the first
        one reached Stripe less than a day ago, Stripe replays its result; if it never
        arrived (or search lagged because it is seconds old, when the key is certainly
        still stored), it is performed now. Never a second charge: a key older than a
        day is never resent without search having had time to find its PaymentIntent."""
        if attempt.payment_intent_id:
            found: dict[str, Any] | None = self.gateway.retrieve_payment_intent(
                attempt.payment_intent_id
            )
        else:
            found = self._find_intent(inv, attempt)
        if found is not None:
            return outcome_from_intent(found)
        if inv.status not in PAYABLE:
            # Voided (or paid) meanwhile: look, but never send a charge for it now.
            return Outcome(
                "failed",
                None,
                None,
                "not_found",
                f"no PaymentIntent found for this attempt, and the invoice is {inv.status}: "
                "not sent again",
                notify=False,
            )
        return self._send(inv, attempt, self._customer(inv))

    def _unresolved(self, inv: Invoice, attempt: PaymentAttempt, why: str) -> PaymentResult:
        """Stripe could not be asked (rate limit, network): the attempt stays as it was,
        unknown, so no new attempt can start beside it; the next run asks again."""
        message = redact(
            f"attempt {attempt.attempt_no} is still unresolved ({why}); nothing new was "
            "charged; it is looked up again on the next run",
            self.settings.stripe_api_key,
        )
        log.warning("invoice %s: %s", label(inv), message)
        with state.opened(self.settings) as con:
            current = load_attempt(con, attempt.id)
            after = invoices.load_invoice(con, inv.id)
        return result_of(current, after, message=message, failure="unavailable")

    def _release(self, inv: Invoice, last: PaymentAttempt) -> PaymentResult | None:
        """Before a new attempt after ``requires_action``: if the customer completed the
        authentication meanwhile, that attempt paid the invoice; otherwise cancel its
        PaymentIntent so that it can never succeed later, next to a new one."""
        assert last.payment_intent_id is not None
        pid = last.payment_intent_id
        pi = self.gateway.retrieve_payment_intent(pid)
        status = pi.get("status")
        if status in ("succeeded", "processing"):
            return self._record(inv, last, outcome_from_intent(pi), "requires_action")
        if status == "canceled":
            return None
        try:
            self.gateway.cancel_payment_intent(pid, attempt_key=last.idempotency_key)
        except PaymentError as err:
            if self.gateway.failure(err).kind != "invalid":
                raise
            # It moved on (e.g. succeeded) between the two calls: look again.
            pi = self.gateway.retrieve_payment_intent(pid)
            if pi.get("status") != "canceled":
                return self._record(inv, last, outcome_from_intent(pi), "requires_action")
        log.info(
            "invoice %s: canceled PaymentIntent %s of attempt %d (never authenticated)",
            label(inv),
            pid,
            last.attempt_no,
        )
        return None

    def poll(self, last: PaymentAttempt) -> PaymentResult | None:
        """A ``requires_action`` attempt whose PaymentIntent succeeded since (the customer
        authenticated): record it. Nothing otherwise (no automatic retry)."""
        assert last.payment_intent_id is not None
        with state.opened(self.settings) as con:
            inv = invoices.load_invoice(con, last.invoice_id)
        pi = self.gateway.retrieve_payment_intent(last.payment_intent_id)
        if pi.get("status") != "succeeded":
            return None
        return self._record(inv, last, outcome_from_intent(pi), "requires_action")

    def _record(
        self, inv: Invoice, attempt: PaymentAttempt, outcome: Outcome, expected: str
    ) -> PaymentResult:
        return record(self.settings, self.now, inv, attempt, outcome, expected=expected)


@contextmanager
def open_charger(
    settings: Settings, now: datetime | None, http_client: HTTPClient | None
) -> Iterator[Charger]:
    """A :class:`Charger` at ``now`` (default: the wall clock); its Stripe client, if
    one gets built, is closed on exit (an injected ``http_client`` stays the caller's)."""
    at = clock.aware(now)
    with StripeGateway(settings, http_client) as gateway:
        yield Charger(settings, at, gateway)


# --- public operations -------------------------------------------------------------------------
def pay_invoice(
    settings: Settings,
    invoice_id: str,
    *,
    payment_method: str | None = None,
    now: datetime | None = None,
    http_client: HTTPClient | None = None,
) -> PaymentResult:
    """Charge an ``open`` or ``overdue`` invoice (by id or number) through Stripe; a
    ``draft`` is finalized first, then charged (Stripe's convention; ``finalized`` on
    the result).

    ``payment_method`` (``pm_...``) defaults to the workspace's ``default_payment_method``
    in the price book, else the one its last attempt used. A declined card, a
    ``requires_action``, a refused request (an unknown payment method) or a transient
    failure is recorded and returned (``succeeded`` False; ``error()`` says which); a
    pending or unanswered earlier attempt is resolved first and its result returned.
    Raises :class:`StateError` (void, paid), :class:`NoPaymentMethodError`,
    :class:`StripeNotConfiguredError` (no key, or a key Stripe rejects),
    :class:`NotFoundError`."""
    with open_charger(settings, now, http_client) as charger:
        return charger.pay(invoice_id, payment_method)


def pay_invoices(
    settings: Settings,
    invoice_ids: Sequence[str],
    *,
    now: datetime | None = None,
    http_client: HTTPClient | None = None,
) -> list[PaymentResult | BillingError]:
    """Charge many invoices (the nightly run's freshly finalized ones), one result or
    error per id, in order. One failure never stops the others; a Stripe configuration
    error (no key, key rejected) is returned for that invoice and every later one
    without calling Stripe again."""
    results: list[PaymentResult | BillingError] = []
    with open_charger(settings, now, http_client) as charger:
        for n, invoice_id in enumerate(invoice_ids):
            try:
                results.append(charger.pay(invoice_id, None))
            except StripeNotConfiguredError as exc:
                log.error("payments stopped: %s", exc)
                results.extend(exc for _ in invoice_ids[n:])
                break
            except BillingError as exc:
                log.warning("invoice %s: not charged: %s", invoice_id, exc)
                results.append(exc)
    return results


__all__ = ["Charger", "open_charger", "pay_invoice", "pay_invoices"]
