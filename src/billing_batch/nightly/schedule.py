"""Serving the nightly flow on its schedule (the production path).

``billing-batch schedule`` (or ``python flows/nightly.py``) builds a deployment of the
nightly flow with a cron schedule (``[schedule] cron``, default ``0 2 * * *``, in
``[schedule] timezone``, default UTC) and serves it: the deployment appears in the
Prefect UI and its runs are scheduled. It needs a reachable Prefect API
(``prefect server start`` and ``PREFECT_API_URL=http://127.0.0.1:4200/api``).
``concurrency_limit=1`` keeps two scheduled runs from overlapping (the run lock also does).
``prefect deploy`` with ``prefect.yaml`` takes the same cron and timezone from the
settings, through the build step :func:`deployment_schedule`.
Without ``PREFECT_API_URL`` it serves against billing-batch's own supervised temporary
server (:mod:`billing_batch.prefect_server`), never one Prefect starts and leaves behind.
"""

from __future__ import annotations

import os
from typing import Any

from .._core.errors import ConfigError
from ..config.settings import Settings, load_settings


def prefect_defaults(settings: Settings) -> None:
    """Environment defaults for Prefect, set before it is imported: its home inside
    $BILLING_HOME (not ~/.prefect), no telemetry (there is no network), a temporary
    server start that may take as long as ``[schedule] ephemeral_startup_timeout_seconds``
    (should Prefect start one itself), and the library's own log records (warnings,
    progress milestones) in the flow-run logs; outside a run they stay local, without
    Prefect's warning that there is no run to send them to."""
    os.environ.setdefault("PREFECT_HOME", str(settings.home / "prefect"))
    os.environ.setdefault(
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
        str(max(1, round(settings.schedule.ephemeral_startup_timeout_seconds))),
    )
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_UI_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "billing_batch")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


def _cron(settings: Settings) -> Any:
    """``[schedule] cron`` in ``[schedule] timezone`` as a Prefect schedule (ConfigError
    when Prefect refuses either)."""
    from prefect.schedules import Cron

    try:
        return Cron(settings.schedule.cron, timezone=settings.schedule.timezone)
    except Exception as exc:  # prefect raises ValueError/pydantic errors for a bad cron or zone
        raise ConfigError(f"invalid schedule {settings.schedule}: {exc}") from exc


def build_deployment(settings: Settings) -> Any:
    """The nightly flow as a RunnerDeployment with its cron schedule (no API needed)."""
    prefect_defaults(settings)
    from .flow import nightly  # after prefect_defaults: Prefect reads them at import

    schedule = _cron(settings)
    params: dict[str, Any] = {"home": str(settings.home)}
    if settings.config_file:
        params["config"] = str(settings.config_file)
    return nightly.to_deployment(
        name=settings.schedule.deployment_name,
        schedules=[schedule],
        parameters=params,
        concurrency_limit=1,
        description="billing-batch nightly: ingest, rollup, invoices, payments, webhooks",
        tags=["billing-batch"],
    )


def deployment_schedule() -> dict[str, str]:
    """``prefect.yaml``'s build step: the schedule of the settings of the environment
    ``prefect deploy`` runs in (``BILLING_HOME``, ``BILLING_CONFIG``,
    ``BILLING_SCHEDULE_CRON``...), as the step outputs its deployment reads
    (``{{ schedule.cron }}``, ``{{ schedule.timezone }}``): the cron is written in the
    settings only."""
    schedule = _cron(load_settings())
    return {"cron": str(schedule.cron), "timezone": str(schedule.timezone)}


def serve(settings: Settings) -> int:
    """Serve the deployment until interrupted (blocks)."""
    from .prefect_server import ensure_api

    prefect_defaults(settings)
    ensure_api(settings)  # PREFECT_API_URL, or a supervised temporary server
    deployment = build_deployment(settings)
    from prefect import serve as prefect_serve

    prefect_serve(deployment)
    return 0


__all__ = ["build_deployment", "deployment_schedule", "prefect_defaults", "serve"]
