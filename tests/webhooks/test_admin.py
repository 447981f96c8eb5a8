"""Administration: ``billing-batch webhooks deliver|list|endpoints|enable`` and the
listings behind them (never a secret)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from billing_batch._core import clock
from billing_batch._core.errors import InputError, NotFoundError
from billing_batch.cli import main as cli_main
from billing_batch.webhooks import admin
from tests.webhooks.support import (
    SECRET_A,
    T0,
    Receiver,
    endpoint,
    make_settings,
    record,
    run,
)


def test_cli_deliver_list_and_endpoints(
    tmp_path: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(tmp_path, [endpoint("crm", receiver.url())])
    now = clock.utcnow()  # the CLI uses the real clock
    paid = record(settings, "billing.invoice.paid", "inv_1", at=now)
    overdue = record(settings, "billing.invoice.overdue", "inv_2", at=now)
    receiver.actions = [500]
    argv = ["--config", str(settings.config_file), "--home", str(settings.home), "webhooks"]

    assert cli_main([*argv, "deliver"]) == 0  # a 500 is a scheduled retry, not a failure
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert summary["attempted"] == 2
    assert summary["delivered"] == 1
    assert summary["retry_scheduled"] == 1
    assert summary["failed"] == 0
    assert summary["disabled_endpoints"] == []
    assert summary["problems"][0]["status_code"] == 500
    assert "retried" in summary["note"]
    assert "retries are scheduled" in err

    assert cli_main([*argv, "list", "--status", "pending"]) == 0
    pending = json.loads(capsys.readouterr().out)
    assert len(pending) == 1
    assert pending[0]["status"] == "pending"
    assert pending[0]["attempt_log"][0]["status_code"] == 500
    assert pending[0]["event_id"] in (paid, overdue)

    assert cli_main([*argv, "list"]) == 0
    assert {d["status"] for d in json.loads(capsys.readouterr().out)} == {"pending", "delivered"}

    assert cli_main([*argv, "endpoints"]) == 0
    out = capsys.readouterr().out
    assert SECRET_A not in out and SECRET_A.removeprefix("whsec_") not in out
    [ep] = json.loads(out)
    assert ep["id"] == "crm" and ep["state"] == "enabled"
    assert ep["secret_env"] == "WH_SECRET_A" and ep["secrets_set"] == 1
    assert ep["deliveries"] == {"delivered": 1, "pending": 1}


def test_cli_deliver_exits_non_zero_when_the_pass_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(tmp_path, [endpoint("crm", "http://127.0.0.1:9/", "WH_UNSET")])
    argv = ["--config", str(settings.config_file), "--home", str(settings.home)]
    assert cli_main([*argv, "webhooks", "deliver"]) == 1
    err = capsys.readouterr().err
    assert "WH_UNSET" in err


def test_list_deliveries_filters_by_status_endpoint_and_event_newest_first(
    tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(
        tmp_path, [endpoint("a", receiver.url("/a")), endpoint("b", receiver.url("/b"))]
    )
    e1 = record(settings, subject="inv_1", at=T0)
    e2 = record(settings, subject="inv_2", at=T0 + timedelta(seconds=1))
    receiver.path_actions["/b"] = [500, 500]
    run(settings, receiver, T0 + timedelta(minutes=1))

    def keys(**filters: Any) -> list[tuple[str, str]]:
        listed = admin.list_deliveries(settings, **filters)
        return [(d["event_id"], d["endpoint_id"]) for d in listed]

    assert keys() == [(e2, "a"), (e2, "b"), (e1, "a"), (e1, "b")]
    assert keys(status="pending") == [(e2, "b"), (e1, "b")]
    assert keys(status="delivered", endpoint_id="a") == [(e2, "a"), (e1, "a")]
    assert keys(event_id=e1) == [(e1, "a"), (e1, "b")]
    assert keys(limit=1) == [(e2, "a")]
    assert keys(limit=0) == []
    assert len(keys(limit=-1)) == 4  # a negative limit does not limit
    [pending] = admin.list_deliveries(settings, status="pending", event_id=e2)
    assert pending["next_attempt_at"] is not None and pending["last_error"] == "HTTP 500"
    assert [a["status_code"] for a in pending["attempt_log"]] == [500]
    [done] = admin.list_deliveries(settings, status="delivered", event_id=e2)
    assert done["next_attempt_at"] is None and done["delivered_at"] is not None
    with pytest.raises(InputError, match="unknown delivery status"):
        admin.list_deliveries(settings, status="lost")


def test_endpoints_list_hides_passwords_and_keeps_removed_endpoints(
    tmp_path: Path, receiver: Receiver
) -> None:
    url = f"http://user:hunter2@127.0.0.1:{receiver.port}/hooks"
    settings = make_settings(tmp_path, [endpoint("crm", url), endpoint("new", receiver.url())])
    assert [e["state"] for e in admin.list_endpoints(settings)] == [
        "new (not seen by a delivery pass yet)"
    ] * 2
    run(settings, receiver, T0)
    later = make_settings(tmp_path, [endpoint("new", receiver.url())])

    listed = {e["id"]: e for e in admin.list_endpoints(later)}

    assert "hunter2" not in json.dumps(listed)
    assert listed["crm"]["url"].endswith(f":***@127.0.0.1:{receiver.port}/hooks")
    assert listed["crm"]["configured"] is False and listed["crm"]["state"] == "enabled"
    assert listed["new"]["configured"] is True and listed["new"]["events"] == "all"
    with pytest.raises(NotFoundError, match="crm"):
        admin.enable_endpoint(later, "crm")  # no longer configured
