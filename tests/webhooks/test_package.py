"""The package's public names: each resolves from the module that owns it, and a
receiver importing ``verify`` loads nothing heavy."""

from __future__ import annotations

import subprocess
import sys

import billing_batch
from billing_batch import webhooks
from billing_batch.webhooks import admin, delivery, outbox, report, signing


def test_every_public_name_resolves_to_its_module() -> None:
    assert sorted(webhooks.__all__) == sorted(webhooks._EXPORTS)
    for name, module in webhooks._EXPORTS.items():
        owner = sys.modules.get(f"billing_batch.webhooks.{module}") or __import__(
            f"billing_batch.webhooks.{module}", fromlist=[name]
        )
        assert getattr(webhooks, name) is getattr(owner, name), name
    assert webhooks.deliver is delivery.deliver
    assert webhooks.list_deliveries is admin.list_deliveries


def test_the_top_level_webhook_names_point_at_the_split_modules() -> None:
    assert billing_batch.deliver_webhooks is delivery.deliver
    assert billing_batch.DeliveryReport is report.DeliveryReport
    assert billing_batch.sign_webhook is signing.sign
    assert billing_batch.verify_webhook is signing.verify
    assert billing_batch.EVENT_TYPES is outbox.EVENT_TYPES
    assert billing_batch.record_usage_events is outbox.record_usage_events


def test_a_receiver_importing_verify_loads_neither_duckdb_nor_httpx() -> None:
    code = (
        "import sys; from billing_batch.webhooks import verify; "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'duckdb', 'httpx', 'stripe', 'polars', 'pyarrow', 'pydantic', 'sqlite3'})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == []
