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
from typing import Any, TypeVar

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from .._core.progress import progress
from ..config.settings import Settings, load_settings
from ..ingest import ingest
from ..storage import mirror
from ..usage.rollup import refresh_rollup
from ..webhooks.outbox import record_usage_events
from .steps import (
    RunSummary,
    StepResult,
    audit_step,
    charge,
    close_periods,
    default_run_date,
    deliver_webhooks,
    expire_snapshots,
    new_run,
    overdue,
    peak_rss_mib,
    publish_files,
    record_abort,
    run_lock,
    write_summary,
)

T = TypeVar("T")

#: What a task gets instead of a Settings object: plain strings, so a task can run on
#: another worker (Dask, Ray) and load the same settings there.
Where = tuple[str, str | None]  # (BILLING_HOME, config file or None)


def _settings(where: Where) -> Settings:
    home, config = where
    return load_settings(config, home=home)


def _step(step: StepResult) -> StepResult:
    step.peak_rss_mib = peak_rss_mib()
    return step


def _timed(fn: Callable[[], T]) -> tuple[T, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


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
    if spinner:
        with progress(spinner):
            step, step_seconds = _timed(fn)
    else:
        step, step_seconds = _timed(fn)
    step.seconds = step_seconds
    return _logged(step)


@task(name="ingest-landing", cache_policy=NO_CACHE)
def ingest_task(where: Where) -> StepResult:
    settings = _settings(where)
    with progress("ingesting new landing files"):
        report, secs = _timed(lambda: ingest(settings))
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
        },
        failures=[{"file": f["file"], "error": f["error"]} for f in d["failed_files"]],
        seconds=secs,
    )
    if d["rejects_file"]:
        step.notes.append(f"rejected lines kept in {d['rejects_file']}")
    return _logged(step)


@task(name="refresh-rollup", cache_policy=NO_CACHE)
def rollup_task(where: Where) -> StepResult:
    settings = _settings(where)
    with progress("refreshing the daily rollup"):
        report, secs = _timed(lambda: refresh_rollup(settings))
    step = StepResult(
        "rollup",
        counts={"days": len(report.days), "ingests": len(report.ingest_ids)},
        seconds=secs,
    )
    return _logged(step)


@task(name="close-periods", cache_policy=NO_CACHE)
def invoices_task(where: Where, run_date: date) -> StepResult:
    settings = _settings(where)
    return _run_step(
        lambda: close_periods(settings, run_date)[0],
        "closing billing periods (rating, finalizing)",
    )


@task(name="audit", cache_policy=NO_CACHE)
def audit_task(where: Where, run_date: date, snapshot: int | None, run_id: str) -> StepResult:
    settings = _settings(where)
    return _run_step(
        lambda: audit_step(settings, run_date, snapshot, run_id), "auditing usage against invoices"
    )


@task(name="render-documents", cache_policy=NO_CACHE)
def documents_task(where: Where) -> StepResult:
    settings = _settings(where)
    return _run_step(lambda: publish_files(settings))


@task(name="mirror-state", cache_policy=NO_CACHE)
def mirror_task(where: Where, reason: str) -> StepResult:
    settings = _settings(where)

    def copy() -> StepResult:
        snapshot = mirror.mirror_to_lake(settings, reason=reason)
        return StepResult("mirror", counts={"lake_snapshot": snapshot})

    return _run_step(copy)


@task(name="charge-payments", cache_policy=NO_CACHE)
def payments_task(where: Where, run_date: date) -> StepResult:
    settings = _settings(where)
    return _run_step(lambda: charge(settings, run_date), "charging invoices")


@task(name="mark-overdue", cache_policy=NO_CACHE)
def overdue_task(where: Where, run_date: date) -> StepResult:
    settings = _settings(where)
    return _run_step(lambda: overdue(settings, run_date))


@task(name="deliver-webhooks", cache_policy=NO_CACHE)
def webhooks_task(where: Where) -> StepResult:
    settings = _settings(where)
    return _run_step(lambda: deliver_webhooks(settings), "delivering webhooks")


@task(name="expire-snapshots", cache_policy=NO_CACHE)
def maintenance_task(where: Where) -> StepResult:
    settings = _settings(where)
    return _run_step(lambda: expire_snapshots(settings))


@flow(name="billing-nightly", log_prints=True)
def nightly(
    run_date: date | None = None,
    config: str | None = None,
    home: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Ingest → rollup → close periods (invoices) → audit → JSON and PDF → charge →
    dunning → overdue → webhooks → expire old lake snapshots → summary. A step that
    raises stops the run, which still writes its summary (that failure included) and
    then fails."""
    settings = load_settings(config, home=home)
    # progress milestones of long steps (INFO) belong in the run's log; the library's
    # other records are there from WARNING up (see schedule.prefect_defaults)
    milestones = logging.getLogger("billing_batch.progress")
    if milestones.level == logging.NOTSET:
        milestones.setLevel(logging.INFO)
    where: Where = (str(settings.home), str(settings.config_file) if settings.config_file else None)
    day = run_date or default_run_date()
    summary: RunSummary = new_run(day, run_id)
    log = get_run_logger()
    log.info("nightly run %s for %s in %s", summary.run_id, day, settings.home)
    with run_lock(settings):
        try:
            summary.steps.append(_step(ingest_task(where)))
            summary.steps.append(_step(rollup_task(where)))
            invoices = _step(invoices_task(where, day))
            summary.steps.append(invoices)
            snapshot = invoices.counts.get("lake_snapshot")
            summary.steps.append(_step(audit_task(where, day, snapshot, summary.run_id)))
            summary.steps.append(_step(documents_task(where)))
            # analysts see the new invoices before the (possibly long) payment steps
            summary.steps.append(_step(mirror_task(where, f"run {summary.run_id}: invoices")))
            summary.steps.append(_step(payments_task(where, day)))
            summary.steps.append(_step(overdue_task(where, day)))
            summary.steps.append(_step(webhooks_task(where)))
            summary.steps.append(_step(maintenance_task(where)))
        except BaseException as exc:  # the summary says where and why, then the run fails
            record_abort(summary, exc)
            raise
        finally:
            path = write_summary(settings, summary)
            log.info("run summary written to %s (status %s)", path, summary.status)
        mirror_task(where, f"run {summary.run_id}: summary")  # the runs table, this run's row
    out = summary.to_dict()
    out["summaryFile"] = str(path)
    return out
