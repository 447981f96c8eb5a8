"""The nightly flow: one scheduled Prefect run does the whole job, safely rerunnable.

Thin by design: each task wraps one library function (``billing_batch.*``); the rules
live in the library. Run it with ``billing-batch run [--date D]`` (ephemeral Prefect, no
server needed), or serve it on a schedule with ``billing-batch schedule`` /
``python flows/nightly.py`` against a Prefect server (see README); ``flows/nightly.py``
is the deployment's entry point and imports it from here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import date
from typing import Any, TypeVar, cast

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from .._core.progress import progress
from ..config.settings import Settings, load_settings
from .steps import (
    audit_step,
    charge,
    close_periods,
    default_run_date,
    deliver_webhooks,
    expire_credits,
    expire_snapshots,
    ingest_step,
    mirror_step,
    overdue,
    publish_files,
    reconcile_step,
    rollup_step,
    run_lock,
)
from .summary import (
    RunSummary,
    StepResult,
    new_run,
    peak_rss_mib,
    record_abort,
    write_summary,
)

T = TypeVar("T")


def _step(step: StepResult) -> StepResult:
    step.peak_rss_mib = peak_rss_mib()
    return step


def _logged(step: StepResult) -> StepResult:
    """The step's notes, failures and counts in the run's log."""
    log = get_run_logger()
    for note in step.notes:
        log.warning(note)
    for failure in step.failures:
        log.error("%s failed: %s", step.name, failure)
    log.info("%s: %s", step.name, step.counts)
    return step


def _run_step(fn: Callable[[], StepResult], spinner: str | None = None) -> StepResult:
    """Run one library step (with a spinner on a terminal), time it and log it."""
    t0 = time.perf_counter()
    if spinner:
        with progress(spinner):
            step = fn()
    else:
        step = fn()
    step.seconds = time.perf_counter() - t0
    return _logged(step)


# Tasks get the run's Settings (plain data: a task can run on another worker and needs
# nothing else), call one library step each, and are timed and logged the same way.
@task(name="ingest-landing", cache_policy=NO_CACHE)
def ingest_task(settings: Settings) -> StepResult:
    return _run_step(lambda: ingest_step(settings), "ingesting new landing files")


@task(name="refresh-rollup", cache_policy=NO_CACHE)
def rollup_task(settings: Settings) -> StepResult:
    return _run_step(lambda: rollup_step(settings), "refreshing the daily rollup")


@task(name="close-periods", cache_policy=NO_CACHE)
def invoices_task(settings: Settings, run_date: date) -> StepResult:
    return _run_step(
        lambda: close_periods(settings, run_date)[0],
        "closing billing periods (rating, finalizing)",
    )


def _invoices(settings: Settings, run_settings: Settings, day: date) -> StepResult:
    """Close periods: rated in batches on the Dask cluster at ``[scale] dask_address``
    (numbered, stored and finalized here, in one transaction), else in this process."""
    if settings.scale.dask_address:
        from .fanout import rate_on_cluster

        rater = rate_on_cluster(settings)

        def step() -> StepResult:
            result = close_periods(settings, day, rater)[0]
            result.counts.update(rating_batches=rater.batches, dask_address=rater.address)
            return result

        return _run_step(step)
    return invoices_task(run_settings, day)


@task(name="audit", cache_policy=NO_CACHE)
def audit_task(settings: Settings, run_date: date, snapshot: int | None, run_id: str) -> StepResult:
    return _run_step(
        lambda: audit_step(settings, run_date, snapshot, run_id), "auditing usage against invoices"
    )


@task(name="render-documents", cache_policy=NO_CACHE)
def documents_task(settings: Settings) -> StepResult:
    return _run_step(lambda: publish_files(settings))


def _documents(settings: Settings, run_settings: Settings) -> StepResult:
    """JSON + PDF: fanned out in batches on the Dask cluster at ``[scale] dask_address``
    (the coordinator reads the state and records the files), else this process's pool."""
    if settings.scale.dask_address:
        from .fanout import publish_on_dask

        return _run_step(lambda: publish_on_dask(settings))
    return documents_task(run_settings)


@task(name="mirror-state", cache_policy=NO_CACHE)
def mirror_task(settings: Settings, reason: str) -> StepResult:
    return _run_step(lambda: mirror_step(settings, reason))


@task(name="charge-payments", cache_policy=NO_CACHE)
def payments_task(settings: Settings, run_date: date) -> StepResult:
    return _run_step(lambda: charge(settings, run_date), "charging invoices")


@task(name="mark-overdue", cache_policy=NO_CACHE)
def overdue_task(settings: Settings, run_date: date) -> StepResult:
    return _run_step(lambda: overdue(settings, run_date))


@task(name="reconcile", cache_policy=NO_CACHE)
def reconcile_task(settings: Settings, run_date: date) -> StepResult:
    return _run_step(lambda: reconcile_step(settings, run_date), "reconciling with Stripe")


@task(name="expire-credits", cache_policy=NO_CACHE)
def credits_task(settings: Settings, run_date: date) -> StepResult:
    return _run_step(lambda: expire_credits(settings, run_date))


@task(name="deliver-webhooks", cache_policy=NO_CACHE)
def webhooks_task(settings: Settings) -> StepResult:
    return _run_step(lambda: deliver_webhooks(settings), "delivering webhooks")


@task(name="expire-snapshots", cache_policy=NO_CACHE)
def maintenance_task(settings: Settings) -> StepResult:
    return _run_step(lambda: expire_snapshots(settings))


@flow(name="billing-nightly", log_prints=True)
def nightly(
    run_date: date | None = None,
    config: str | None = None,
    home: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Ingest → rollup → close periods (invoices) → audit → JSON and PDF → charge →
    dunning → overdue → reconcile (Stripe configured) → webhooks → expire old lake
    snapshots → summary. A step that raises stops the run, which still writes its
    summary (that failure included) and then fails."""
    settings = load_settings(config, home=home)
    # progress milestones of long steps (INFO) belong in the run's log; the library's
    # other records are there from WARNING up (see schedule.prefect_defaults)
    milestones = logging.getLogger("billing_batch.progress")
    if milestones.level == logging.NOTSET:
        milestones.setLevel(logging.INFO)
    # tasks get the Settings as they are (quote: Prefect does not rebuild the model)
    run_settings = cast(Settings, quote(settings))
    day = run_date or default_run_date()
    summary: RunSummary = new_run(day, run_id)
    log = get_run_logger()
    log.info("nightly run %s for %s in %s", summary.run_id, day, settings.home)
    with run_lock(settings):
        try:
            summary.steps.append(_step(ingest_task(run_settings)))
            summary.steps.append(_step(rollup_task(run_settings)))
            invoices = _step(_invoices(settings, run_settings, day))
            summary.steps.append(invoices)
            snapshot = invoices.counts.get("lake_snapshot")
            summary.steps.append(_step(credits_task(run_settings, day)))
            summary.steps.append(_step(audit_task(run_settings, day, snapshot, summary.run_id)))
            summary.steps.append(_step(_documents(settings, run_settings)))
            # analysts see the new invoices before the (possibly long) payment steps
            summary.steps.append(
                _step(mirror_task(run_settings, f"run {summary.run_id}: invoices"))
            )
            summary.steps.append(_step(payments_task(run_settings, day)))
            summary.steps.append(_step(overdue_task(run_settings, day)))
            summary.steps.append(_step(reconcile_task(run_settings, day)))
            summary.steps.append(_step(webhooks_task(run_settings)))
            summary.steps.append(_step(maintenance_task(run_settings)))
        except BaseException as exc:  # the summary says where and why, then the run fails
            record_abort(summary, exc)
            raise
        finally:
            path = write_summary(settings, summary)
            log.info("run summary written to %s (status %s)", path, summary.status)
        mirror_task(
            run_settings, f"run {summary.run_id}: summary"
        )  # the runs table, this run's row
    out = summary.to_dict()
    out["summaryFile"] = str(path)
    return out
