"""The nightly's pure work fanned out on a Dask cluster (``[scale] dask_address``).

Rendering the invoices' JSON and PDF (~87% of a month close) writes nothing shared but
the files themselves, so it runs as Prefect tasks on Prefect's ``DaskTaskRunner``
(``prefect-dask``), one task per *batch* of invoices: a Prefect task costs ~150 ms on
Dask, so one task per invoice would cost more than the PDF. Around it, the coordinating
flow run does every shared write:

1. reads what to render from the state (``invoicing.publish.pending_documents``);
2. submits one task per batch; each worker gets the run's settings (plain data) and its
   batch's frozen documents, renders them in its own process and PUTs the files into the
   invoices area (object storage, or a folder every worker can reach);
3. records the files in one short state transaction (``record_files``).

A batch whose task fails (a worker lost, an error outside any one invoice) fails its
invoices only; they have no files recorded and the next run renders them again. Without
``dask_address`` the flow takes the single-process path (``steps.publish_files``).

Rating is fanned out the same way (:func:`rate_on_cluster`): inside the invoices step's
one state transaction, the coordinator reads the positions (one lake snapshot, the
ledger) and plans; each batch of planned invoices goes to a worker with its workspaces'
positions and the price book (plain data) and comes back rated (``rate_batch``: pure);
the coordinator then numbers, stores and finalizes them in that same transaction. A
batch whose task fails fails its invoices only (the next run bills them).
"""

from __future__ import annotations

import math
import pickle
import time
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from .._core.errors import BillingError
from .._core.jsonutil import dumps, loads
from ..config.settings import Settings
from ..invoicing.model import Rated
from ..invoicing.planner import PlannedInvoice
from ..invoicing.positions import Positions
from ..invoicing.publish import (
    Pending,
    Published,
    pending_documents,
    record_files,
    render_documents,
)
from ..invoicing.rate import rate_batch
from ..rating.plans import PriceBook
from .steps import documents_result
from .summary import StepResult

#: At least this many batches when there are enough invoices: a slow batch (or a slow
#: worker) does not hold the whole step up.
MIN_BATCHES = 8

#: What a Dask worker for this job starts with in its environment (besides the
#: ``AWS_*`` variables): Dask's statistical profiler off. It samples the running task's
#: stack every 10 ms, and a PDF's stack is deep: measured here, 59.7 ms of CPU per
#: invoice rendered on a worker with it, 52.8 ms without, 51.9 ms in a plain process.
WORKER_ENV = {"DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"}


T = TypeVar("T")
B = TypeVar("B")


def batches(todo: Sequence[T], max_size: int) -> list[list[T]]:
    """``todo`` in order, cut into batches of at most ``max_size`` (and at least
    :data:`MIN_BATCHES` batches when there are that many invoices)."""
    if not todo:
        return []
    size = max(1, min(max_size, math.ceil(len(todo) / MIN_BATCHES)))
    return [list(todo[i : i + size]) for i in range(0, len(todo), size)]


@task(name="render-batch", cache_policy=NO_CACHE)
def render_batch_task(settings_json: str, batch_json: str) -> list[Published]:
    """On a Dask worker: render one batch in the worker's own process (no pool). It gets
    plain text: the run's settings and the batch's frozen documents as JSON (exact
    decimals), nothing the worker would need this process's objects for."""
    settings = Settings.model_validate_json(settings_json)
    batch = [Pending(i, n, doc) for i, n, doc in loads(batch_json)]
    return render_documents(settings, batch, processes=1)


def _batch_json(batch: Sequence[Pending]) -> str:
    return dumps([[p.invoice_id, p.number, p.document] for p in batch])


def _map_on_cluster(
    address: str, task_fn: Any, params: list[dict[str, Any]], work: list[list[B]]
) -> Iterator[tuple[list[B], Any]]:
    """One Prefect task per batch on a ``DaskTaskRunner`` connected to ``address``, all
    submitted first; each batch with its result, or the exception its task raised, in
    order (a failed batch fails alone)."""
    from prefect_dask.task_runners import DaskTaskRunner

    runner: Any = DaskTaskRunner(address=address)
    with runner:
        futures = [runner.submit(task_fn, p) for p in params]
        for batch, future in zip(work, futures, strict=True):
            try:
                result = future.result()
            except Exception as exc:
                result = exc
            yield batch, result


def render_on_cluster(
    settings: Settings, work: list[list[Pending]], address: str
) -> list[Published]:
    """In the coordinating flow run: submit one task per batch to a ``DaskTaskRunner``
    connected to ``address``; gather the results in order, a failed batch's invoices
    each carrying its error. (Not a subflow: a flow run stores its parameters, and these
    are every invoice's document.)"""
    log = get_run_logger()
    started = time.perf_counter()
    total = sum(len(b) for b in work)
    out: list[Published] = []
    done = 0
    settings_json = settings.model_dump_json()
    params = [{"settings_json": settings_json, "batch_json": _batch_json(b)} for b in work]
    for batch, result in _map_on_cluster(address, render_batch_task, params, work):
        if isinstance(result, Exception):  # the batch as a whole: its invoices stay unpublished
            error = f"render batch failed: {type(result).__name__}: {result}"
            out.extend(Published(p.invoice_id, None, None, error) for p in batch)
        else:
            out.extend(result)
        done += len(batch)
        log.info(
            "rendering %d invoice(s) on %s: %s/%s after %.0f s",
            total,
            address,
            f"{done:,}",
            f"{total:,}",
            time.perf_counter() - started,
        )
    return out


def publish_on_dask(settings: Settings) -> StepResult:
    """The documents step on the cluster at ``[scale] dask_address`` (call it inside the
    nightly flow run)."""
    todo = pending_documents(settings)
    work = batches(todo, settings.scale.render_batch_size)
    published: list[Published] = []
    if work:
        published = render_on_cluster(settings, work, settings.scale.dask_address)
        record_files(settings, published)
    step = documents_result([(p.invoice_id, p.error) for p in published])
    step.counts["batches"] = len(work)
    step.counts["dask_address"] = settings.scale.dask_address
    return step


@task(name="rate-batch", cache_policy=NO_CACHE)
def rate_batch_task(settings_json: str, payload: bytes) -> bytes:
    """On a Dask worker: rate one batch (pure). Settings as JSON; the price book, the
    batch's positions and its planned invoices as one pickle (plain data: no connection,
    no handle); the ratings go back pickled too. Pickled here, not handed to Prefect as
    objects: Prefect walks and rebuilds task parameters (named tuples came back as
    tuples)."""
    book, positions, items = pickle.loads(payload)  # noqa: S301 - from our coordinator
    rated = rate_batch(Settings.model_validate_json(settings_json), book, positions, items)
    return pickle.dumps(rated)


def _rating_payload(book: PriceBook, positions: Positions, batch: list[PlannedInvoice]) -> bytes:
    """What a rating batch needs: the book, its own workspaces' positions, its plans."""
    mine = positions.only({p.workspace_id for p in batch})
    return pickle.dumps((book, mine, batch), protocol=pickle.HIGHEST_PROTOCOL)


class ClusterRater:
    """What ``invoice_closed_periods`` calls (a :data:`RateMany`) to rate its planned
    invoices on the Dask cluster at ``address``: batches of ``[scale] rate_batch_size``
    (at least :data:`MIN_BATCHES`), each with its own workspaces' positions. ``batches``
    counts the batches it sent (for the step's counts)."""

    def __init__(self, settings: Settings, address: str) -> None:
        self.settings, self.address, self.batches = settings, address, 0

    def __call__(
        self, book: PriceBook, positions: Positions, planned: list[PlannedInvoice]
    ) -> list[Rated | BillingError]:
        started = time.perf_counter()
        work = batches(planned, self.settings.scale.rate_batch_size)
        settings_json = self.settings.model_dump_json()
        params = [
            {"settings_json": settings_json, "payload": _rating_payload(book, positions, b)}
            for b in work
        ]
        out: list[Rated | BillingError] = []
        for batch, result in _map_on_cluster(self.address, rate_batch_task, params, work):
            try:
                if isinstance(result, Exception):
                    raise result
                rated = pickle.loads(result)  # noqa: S301 - from our task
                if len(rated) != len(batch):  # pragma: no cover - a broken worker
                    raise RuntimeError(f"{len(rated)} ratings for {len(batch)} invoices")
                out.extend(rated)
            except Exception as exc:  # the batch as a whole: its invoices wait
                error = BillingError(f"rate batch failed: {type(exc).__name__}: {exc}")
                out.extend(error for _ in batch)
        self.batches += len(work)
        get_run_logger().info(
            "rated %s invoice(s) in %d batch(es) on %s in %.1f s",
            f"{len(planned):,}",
            len(work),
            self.address,
            time.perf_counter() - started,
        )
        return out


def rate_on_cluster(settings: Settings, address: str | None = None) -> ClusterRater:
    """The rater for the cluster at ``address`` (default ``[scale] dask_address``)."""
    return ClusterRater(settings, address or settings.scale.dask_address)


__all__ = [
    "MIN_BATCHES",
    "WORKER_ENV",
    "ClusterRater",
    "batches",
    "publish_on_dask",
    "rate_batch_task",
    "rate_on_cluster",
    "render_batch_task",
    "render_on_cluster",
]
