"""Rating fanned out (issue 16): the coordinator reads the positions, plans, and writes;
workers rate batches. Here a stand-in for the cluster runs each batch through the
rating task's own body (its payload pickled as it travels), without Prefect; the real
cluster is ``tests/scale/test_scale_close.py``'s."""

from __future__ import annotations

import pickle
from datetime import date
from pathlib import Path
from typing import Any

from billing_batch._core.errors import BillingError
from billing_batch.config.settings import Settings, load_settings
from billing_batch.invoicing.audit import audit
from billing_batch.invoicing.model import Rated
from billing_batch.invoicing.planner import PlannedInvoice
from billing_batch.invoicing.positions import Positions
from billing_batch.invoicing.service import list_invoices
from billing_batch.nightly.fanout import _rating_payload, batches, rate_batch_task
from billing_batch.nightly.steps import close_periods
from billing_batch.rating.plans import PriceBook
from billing_batch.usage.ingest import ingest
from billing_batch.usage.rollup import refresh_rollup
from billing_batch.usage.sample import generate

RUN = date(2024, 2, 1)


def _month(home: Path) -> Settings:
    home.mkdir(parents=True)
    settings = load_settings(env={"BILLING_HOME": str(home), "BILLING_SCALE_RATE_BATCH_SIZE": "4"})
    generate(settings.landing_dir, workspaces=12, events=4_000, seed=5, bad_lines=0)
    ingest(settings)
    refresh_rollup(settings)
    return settings


def _invoices(settings: Settings) -> list[tuple[Any, ...]]:
    def shape(j: dict[str, Any]) -> tuple[Any, ...]:
        lines = [(x["description"], x["quantity"], x["amount"]) for x in j["lineItems"]]
        return (j["number"], j["workspaceId"], j["status"], j["total"], j["amountDue"], lines)

    return sorted(shape(i.to_json()) for i in list_invoices(settings))


class Cluster:
    """Batches as the cluster gets them: each one pickled there and back."""

    def __init__(self, settings: Settings, lose: int | None = None) -> None:
        self.settings, self.lose, self.shipped = settings, lose, 0

    def __call__(
        self, book: PriceBook, positions: Positions, planned: list[PlannedInvoice]
    ) -> list[Rated | BillingError]:
        out: list[Rated | BillingError] = []
        for k, batch in enumerate(batches(planned, self.settings.scale.rate_batch_size)):
            if k == self.lose:  # a worker lost: the batch as a whole fails
                out += [BillingError("rate batch failed: worker lost")] * len(batch)
                continue
            payload = _rating_payload(book, positions, batch)
            _, mine, _ = pickle.loads(payload)
            assert set(mine.by_workspace) == {p.workspace_id for p in batch}
            self.shipped += 1
            # the task's own body, as a worker runs it (settings as JSON, one pickle)
            out += pickle.loads(rate_batch_task.fn(self.settings.model_dump_json(), payload))
        return out


def test_invoices_rated_on_workers_are_the_ones_rated_here(tmp_path: Path) -> None:
    here, there = _month(tmp_path / "here"), _month(tmp_path / "there")
    local_step, _ = close_periods(here, RUN)
    cluster = Cluster(there)
    remote_step, _ = close_periods(there, RUN, cluster)
    assert cluster.shipped >= 3  # 12 workspaces, batches of 4 (at least MIN_BATCHES apart)
    assert local_step.failures == remote_step.failures == []
    assert remote_step.counts["invoices_finalized"] == 12
    assert _invoices(here) == _invoices(there)
    assert audit(there, as_of=RUN).unexplained == []


def test_a_lost_batch_fails_its_invoices_only_and_the_next_run_bills_them(
    tmp_path: Path,
) -> None:
    settings = _month(tmp_path / "home")
    step, ids = close_periods(settings, RUN, Cluster(settings, lose=1))
    lost = {f["workspace"] for f in step.failures}
    assert lost and len(lost) < 12 and len(ids) == 12 - len(lost)
    assert all("worker lost" in f["error"] for f in step.failures)
    assert {i[1] for i in _invoices(settings)} == {f"ws_{n:04d}" for n in range(1, 13)} - lost
    # no number was used up by the failed ones: consecutive, then the rest follow
    again, more = close_periods(settings, RUN, Cluster(settings))
    assert again.failures == [] and len(more) == len(lost)
    numbers = [i[0] for i in _invoices(settings)]
    assert numbers == [f"INV-2024-{n:06d}" for n in range(1, 13)]
    assert audit(settings, as_of=RUN).unexplained == []


def test_a_price_book_travels_to_a_worker_unchanged_and_still_read_only() -> None:
    from types import MappingProxyType

    import cloudpickle

    from billing_batch.config.price_book import default_price_book_text, parse_price_book

    text = default_price_book_text() + '\n[workspaces.ws_9]\nplan = "growth"\n'
    book = parse_price_book(text)
    for dumps in (pickle.dumps, cloudpickle.dumps):
        back = pickle.loads(dumps(book))
        assert back == book and back.digest == book.digest
        assert isinstance(back.plans, MappingProxyType)
        assert isinstance(back.workspaces, MappingProxyType)
        assert all(isinstance(p.prices, MappingProxyType) for p in back.plans.values())
