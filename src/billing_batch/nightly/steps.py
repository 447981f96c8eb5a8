"""The nightly job's steps, as library functions (``flows/nightly.py`` sequences them).

A run for date D (default: yesterday, UTC) processes everything known by the end of D:

1. ingest the new files of the landing folder, and emit ``billing.usage.recorded``;
2. refresh the daily rollup for the days that changed;
3. close the billing periods that ended before D (per each workspace's anchor day; the
   1st for workspaces without a subscription): create and finalize the invoice of every
   workspace with usage, a recurring fee, a minimum commitment or late usage, issued
   at D 00:00 UTC, then render their JSON and PDF;
4. charge the open invoices never charged when Stripe is configured; retry the due
   dunning attempts;
5. mark invoices past due as overdue (as of D);
6. deliver webhooks;
7. mirror the state into the lake and write the run summary
   (``$BILLING_HOME/runs/<D>-<run id>.json``).

Every step is idempotent, so running the same date twice changes nothing the second
time; a run holds ``locks/run.lock`` so a second run started meanwhile exits at once with
a clear message. A failure of one workspace (invoice, PDF, payment) is recorded in the
summary and never stops the others; the run's status says whether anything failed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from .._core.clock import issue_time
from .._core.errors import BillingError
from ..config.settings import Settings
from ..invoicing.model import Invoice
from ..invoicing.publish import publish_invoice_files
from ..invoicing.service import RateMany, invoice_closed_periods
from ..storage import state as store
from ..storage.locking import named_lock
from .summary import RunSummary, StepResult


def default_run_date(now: datetime | None = None) -> date:
    """Yesterday, UTC."""
    return (now or datetime.now(UTC)).astimezone(UTC).date() - timedelta(days=1)


@contextmanager
def run_lock(settings: Settings) -> Iterator[None]:
    """Only one nightly run at a time: the second one fails at once (LockedError).
    Re-entrant within this process: ``billing-batch run`` takes it before Prefect starts,
    the flow takes it again (a scheduled run has only the flow's). With the state on
    PostgreSQL it is an advisory lock there, so runs on different machines exclude each
    other too (:func:`..storage.locking.named_lock`)."""
    with named_lock(settings, "run", timeout=0, what="nightly run", scope="process"):
        yield


# --- steps 1-2: ingest and rollup ---------------------------------------------------------
def ingest_step(settings: Settings) -> StepResult:
    """Ingest the new landing files and emit ``billing.usage.recorded``."""
    from ..usage.ingest import ingest
    from ..webhooks.outbox import record_usage_events

    report = ingest(settings)
    events = record_usage_events(settings)
    d = report.to_dict()
    step = StepResult(
        "ingest",
        counts={
            "files": d["files"],
            "lines": d["lines"],
            "accepted": d["accepted"],
            "duplicates": d["duplicates"],
            "conflicts": d["conflicts"],
            "rejected": d["rejected"],
            "usage_events": len(events),
            "seconds": {k: v for k, v in report.timings.items() if not k.endswith("_cpu")},
        },
        failures=[{"file": f["file"], "error": f["error"]} for f in d["failed_files"]],
    )
    if d["rejects_file"]:
        step.notes.append(f"rejected lines kept in {d['rejects_file']}")
    return step


def rollup_step(settings: Settings) -> StepResult:
    """Absorb the new ingests into the daily rollup (the days that changed)."""
    from ..usage.rollup import refresh_rollup

    report = refresh_rollup(settings)
    return StepResult(
        "rollup", counts={"days": len(report.days), "ingests": len(report.ingest_ids)}
    )


def mirror_step(settings: Settings, reason: str) -> StepResult:
    """Copy the state into the lake (analysts see this run's invoices)."""
    from ..storage import mirror

    return StepResult(
        "mirror", counts={"lake_snapshot": mirror.mirror_to_lake(settings, reason=reason)}
    )


# --- step 3: closing periods -------------------------------------------------------------
def close_periods(
    settings: Settings, run_date: date, rate_many: RateMany | None = None
) -> tuple[StepResult, list[str]]:
    """Invoice every period closed before ``run_date`` that still owes anything
    (docs/billing-rules.md §7), finalized and issued at ``run_date`` 00:00 UTC
    (``rate_many``: rated on workers first, see ``fanout.rate_on_cluster``)."""
    step = StepResult("invoices")
    positions, results = invoice_closed_periods(
        settings, run_date, now=issue_time(run_date), rate_many=rate_many
    )
    created: list[Invoice] = []
    carried = 0
    for item, res in results:
        if isinstance(res, BillingError):
            step.failures.append(
                {
                    "workspace": item.workspace_id,
                    "period": f"{item.period.start}..{item.period.end}",
                    "error": str(res),
                }
            )
        else:
            created.append(res)
            carried += len(item.carried)
    totals: dict[str, Decimal] = {}
    for inv in created:
        totals[inv.currency] = totals.get(inv.currency, Decimal(0)) + inv.total
    step.counts = {
        "workspaces_checked": len(positions.by_workspace),
        "periods_considered": sum(len(p) for p in positions.by_workspace.values()),
        "invoices_finalized": len(created),
        "late_periods_carried": carried,
        "amounts": {c: t for c, t in sorted(totals.items())},
        "failed": len(step.failures),
        "lake_snapshot": positions.lake_snapshot_id,
    }
    return step, [i.id for i in created]


def audit_step(
    settings: Settings, run_date: date, snapshot: int | None, run_id: str | None = None
) -> StepResult:
    """The audit after invoicing, as of the run (its date and the snapshot its invoices
    were rated at), recorded in the state; unexplained differences fail the run."""
    from ..invoicing.audit import audit, describe

    report = audit(
        settings, as_of=run_date, snapshot=snapshot, mode="strict", record=True, run_id=run_id
    )
    step = StepResult("audit", counts={**report.counts(), "audit_id": report.audit_id})
    for line in describe(report.unexplained[:50]):
        step.failures.append({"audit": line})
    explained = [f for f in report.findings if f.explained]
    if explained:
        step.notes.append(
            f"{len(explained)} difference(s) wait for a later period to close "
            "(late usage of periods already invoiced)"
        )
    return step


@dataclass
class BillResult:
    """What :func:`bill` did: the invoices it created, failures, and the audit."""

    invoice_ids: list[str]
    failures: list[dict[str, Any]]
    audit: Any  # invoicing.audit.AuditReport
    steps: list[StepResult]


def bill(settings: Settings, run_date: date) -> BillResult:
    """The money part of a nightly run, without Prefect, documents or payments: ingest the
    new landing files, refresh the rollup, invoice the closed periods, audit."""
    from ..invoicing.audit import audit
    from ..usage.ingest import ingest
    from ..usage.rollup import refresh_rollup

    ingest(settings)
    refresh_rollup(settings)
    step, ids = close_periods(settings, run_date)
    report = audit(settings, as_of=run_date, snapshot=step.counts["lake_snapshot"], mode="strict")
    return BillResult(invoice_ids=ids, failures=step.failures, audit=report, steps=[step])


def publish_files(settings: Settings, processes: int | None = None) -> StepResult:
    """Render JSON + PDF for every finalized invoice that has no files yet (in this
    process's pool; ``nightly.fanout`` does the same on a Dask cluster)."""
    return documents_result(publish_invoice_files(settings, None, processes=processes))


def documents_result(report: list[tuple[str, str | None]]) -> StepResult:
    """The documents step's result from (invoice id, error or None) per invoice."""
    step = StepResult("documents")
    for invoice_id, error in report:
        if error:
            step.failures.append({"invoice": invoice_id, "error": error})
    step.counts = {"rendered": sum(1 for _, e in report if e is None), "failed": len(step.failures)}
    return step


# --- step 4: payments ------------------------------------------------------------------
def uncharged_invoices(settings: Settings) -> list[str]:
    """Open or overdue invoices without any payment attempt yet."""
    with store.opened(settings) as con:
        return [r[0] for r in store.query(con, "payments/uncharged_invoices")]


def charge(settings: Settings, run_date: date) -> StepResult:
    """Charge never-charged invoices and retry due dunning attempts (Stripe configured).

    An invoice whose workspace has no payment method (no ``default_payment_method`` in
    the price book, none used before) is not a failure: it is listed as "not charged:
    no payment method" (a count and the invoice numbers) and stays open, and the run's
    status is kept for real failures (declines, Stripe errors)."""
    from .._core.errors import NoPaymentMethodError

    step = StepResult("payments")
    if not settings.stripe_api_key:
        pending = uncharged_invoices(settings)
        step.notes.append(
            f"Stripe is not configured (STRIPE_API_KEY unset): {len(pending)} invoice(s) "
            "left open, not charged"
        )
        step.counts = {"skipped": len(pending)}
        return step
    from ..payments import pay_invoices, retry_due_payments

    now = issue_time(run_date)  # the run's business clock: dunning days count from it
    first = pay_invoices(settings, uncharged_invoices(settings), now=now)
    retries = retry_due_payments(settings, now=now)
    succeeded = failed = 0
    no_method: list[str] = []
    for res in [*first, *retries]:
        if isinstance(res, NoPaymentMethodError):
            no_method.append(res.invoice_number or res.invoice_id or "?")
        elif isinstance(res, BillingError):
            failed += 1
            step.failures.append({"error": str(res)})
        elif res.succeeded:
            succeeded += 1
        else:
            failed += 1
            step.failures.append(
                {
                    "invoice": res.invoice_id,
                    "attempt": res.attempt_no,
                    "status": res.status,
                    "error": res.message or res.decline_code or res.status,
                }
            )
    if no_method:
        step.notes.append(_no_payment_method_note(no_method))
    step.counts = {
        "charged": sum(1 for r in first if not isinstance(r, NoPaymentMethodError)),
        "retried": len(retries),
        "succeeded": succeeded,
        "failed": failed,
        "not_charged_no_payment_method": len(no_method),
        "not_charged_no_payment_method_invoices": no_method,
    }
    return step


def _no_payment_method_note(numbers: list[str]) -> str:
    shown = ", ".join(numbers[:20]) + (
        f" and {len(numbers) - 20} more" if len(numbers) > 20 else ""
    )
    return (
        f"not charged: no payment method: {len(numbers)} invoice(s) left open "
        f"({shown}); set default_payment_method in the price book, or pay them with "
        "billing-batch invoice pay ID --payment-method pm_..."
    )


def overdue(settings: Settings, run_date: date) -> StepResult:
    from ..invoicing.service import mark_overdue

    marked = mark_overdue(settings, as_of=run_date, now=issue_time(run_date))
    return StepResult("overdue", counts={"marked_overdue": len(marked)})


def reconcile_step(settings: Settings, run_date: date) -> StepResult:
    """Pending refunds sent again, then the three-way reconciliation of the month before
    the run date (Stripe configured): mismatches are listed as notes and counted, not
    failures (a human looks at them)."""
    from datetime import timedelta

    from ..invoicing.reconcile import parse_period, reconcile

    step = StepResult("reconcile")
    if not settings.stripe_api_key:
        step.notes.append("Stripe is not configured: reconciliation with Stripe skipped")
        return step
    from ..payments.refunds import resolve_pending_refunds

    settled = resolve_pending_refunds(settings)  # refunds left pending are asked again first
    month = run_date - timedelta(days=1)
    report = reconcile(settings, period=parse_period(f"{month:%Y-%m}"), now=issue_time(run_date))
    step.counts = {
        "refunds_resolved": len(settled),
        "refunds_still_pending": sum(1 for r in settled if r.status == "pending"),
        "reconcile_id": report.reconcile_id,
        "invoices_checked": report.invoices_checked,
        "mismatches": len(report.mismatches),
    }
    step.notes.extend(f"reconcile {m.kind}: {m.message}" for m in report.mismatches[:20])
    return step


def expire_credits(settings: Settings, run_date: date) -> StepResult:
    """Prepaid credit grants that expired before ``run_date`` lose what is left (after
    the run's invoices drew from them: invoicing runs first)."""
    from ..invoicing.credits import expire_credits as expire

    gone = expire(settings, run_date, now=issue_time(run_date))
    return StepResult(
        "expire_credits",
        counts={"grants_expired": len(gone), "expired_grants": [g.id for g in gone]},
    )


def deliver_webhooks(settings: Settings) -> StepResult:
    from ..webhooks.delivery import deliver

    rep = deliver(settings)
    d = rep.to_dict()
    step = StepResult("webhooks", counts={k: v for k, v in d.items() if not isinstance(v, list)})
    if not settings.webhooks.endpoints:
        step.notes.append("no webhook endpoint configured: events stay in the outbox")
    return step


def expire_snapshots(settings: Settings) -> StepResult:
    """Lake housekeeping (``[lake] expire_snapshots``): see maintenance.py."""
    from ..storage.maintenance import expire_lake_snapshots

    step = StepResult("maintenance")
    if not settings.lake.expire_snapshots:
        step.notes.append("lake snapshots are kept ([lake] expire_snapshots = false)")
        return step
    expiry = expire_lake_snapshots(settings)
    step.counts = {
        "snapshots_expired": len(expiry.expired),
        "snapshots_kept_for_invoices": len(expiry.kept),
        "files_deleted": expiry.files_deleted,
    }
    return step


__all__ = [
    "BillResult",
    "RunSummary",
    "StepResult",
    "audit_step",
    "bill",
    "charge",
    "close_periods",
    "default_run_date",
    "deliver_webhooks",
    "documents_result",
    "expire_credits",
    "expire_snapshots",
    "ingest_step",
    "mirror_step",
    "overdue",
    "publish_files",
    "reconcile_step",
    "rollup_step",
    "run_lock",
    "uncharged_invoices",
]
