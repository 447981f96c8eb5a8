"""How the documents step cuts its work into Prefect tasks (pure; no cluster needed)."""

from __future__ import annotations

from pathlib import Path

from billing_batch.invoicing.publish import Pending
from billing_batch.nightly.fanout import MIN_BATCHES, _batch_json, batches


def _todo(n: int) -> list[Pending]:
    return [Pending(f"inv_{i}", f"INV-{i:06d}", {"id": f"inv_{i}"}) for i in range(n)]


def test_batches_keep_order_and_bound_their_size() -> None:
    todo = _todo(1000)
    work = batches(todo, 250)
    assert [p for b in work for p in b] == todo
    assert max(len(b) for b in work) == 125 and len(work) == MIN_BATCHES
    work = batches(_todo(10_000), 250)
    assert len(work) == 40 and {len(b) for b in work} == {250}


def test_few_invoices_make_small_batches_and_none_make_none() -> None:
    assert batches([], 250) == []
    assert [len(b) for b in batches(_todo(3), 250)] == [1, 1, 1]
    assert sum(len(b) for b in batches(_todo(17), 250)) == 17


def test_a_batch_travels_as_json_with_exact_decimals() -> None:
    from decimal import Decimal

    from billing_batch._core.jsonutil import loads

    p = Pending("inv_1", "INV-1", {"total": Decimal("12.30")})
    assert loads(_batch_json([p])) == [["inv_1", "INV-1", {"total": Decimal("12.30")}]]


def test_settings_reach_a_worker_as_json_unchanged(tmp_path: Path) -> None:
    from billing_batch.config.settings import Settings, load_settings

    (tmp_path / "billing.toml").write_text(
        '[files]\nurl = "s3://b/files"\n[s3]\nendpoint = "http://127.0.0.1:9"\n'
        '[metrics.seats]\ndisplay_name = "Seats"\naggregation = "max"\n'
        '[[webhooks.endpoints]]\nid = "a"\nurl = "https://x.example/h"\nsecret_env = "S"\n'
    )
    settings = load_settings(env={"BILLING_HOME": str(tmp_path)})
    assert Settings.model_validate_json(settings.model_dump_json()) == settings
