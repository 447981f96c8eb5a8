"""The nightly flow end to end, through Prefect's ephemeral API (state kept in tmp).

One small month closes with Stripe (a fake on loopback) and a webhook receiver
(loopback); then the same date again changes nothing; a second run while one holds
the lock exits at once; one failing workspace does not stop the others; and the served
deployment carries the configured cron.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from billing_batch.cli import main as cli_main
from billing_batch.config.price_book import default_price_book_text
from billing_batch.config.settings import Settings, load_settings
from billing_batch.nightly.steps import run_lock
from billing_batch.storage import state as store
from billing_batch.subscriptions.service import create_subscription
from billing_batch.usage.sample import generate
from billing_batch.webhooks.signing import verify
from tests.fake_stripe import FakeStripe, FakeStripeServer

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
RUN_DATE = date(2024, 2, 1)


@pytest.fixture(scope="module", autouse=True)
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Prefect's ephemeral server, results and home inside tmp (not ~/.prefect)."""
    root = tmp_path_factory.mktemp("prefect")
    env = {
        "PREFECT_HOME": str(root / "home"),
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(root / "results"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    os.environ.pop("PREFECT_API_URL", None)
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


class Receiver:
    """A webhook receiver on 127.0.0.1 that verifies every signature it gets."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["content-length"]))
                payload = verify(dict(self.headers.items()), body, SECRET)
                received.append({"id": self.headers["webhook-id"], "type": payload["type"]})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def month_settings(home: Path, receiver: Receiver, *, broken: str | None = None) -> Settings:
    book = default_price_book_text()
    for i in range(1, 6):
        plan = "partial" if f"ws_000{i}" == broken else "payg"
        book += (
            f'\n[workspaces.ws_000{i}]\nplan = "{plan}"\nlegal_name = "Customer {i} <Ltd>"\n'
            'default_payment_method = "pm_card_visa"\n'
        )
    # a plan that prices api_calls only: rating a workspace with other usage fails
    book += (
        '\n[plans.partial]\ncurrency = "USD"\n[plans.partial.prices.api_calls]\n'
        'model = "per_unit"\nunit_price = "0.01"\n'
    )
    home.mkdir(parents=True, exist_ok=True)
    (home / "prices.toml").write_text(book)
    (home / "billing.toml").write_text(
        'price_book = "prices.toml"\n'
        "[webhooks]\nallow_private_addresses = true\n"
        f'[[webhooks.endpoints]]\nid = "test"\nurl = "{receiver.url}"\nsecret_env = "TEST_WHSEC"\n'
    )
    return load_settings(env={**os.environ, "BILLING_HOME": str(home)})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def stripe_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeStripe]:
    fake = FakeStripe(api_key="sk_test_nightly")
    with FakeStripeServer(fake) as server:
        monkeypatch.setenv("STRIPE_API_KEY", "sk_test_nightly")
        monkeypatch.setenv("STRIPE_API_BASE", server.url)
        monkeypatch.setenv("TEST_WHSEC", SECRET)
        yield fake


def run(home: Path, day: date) -> tuple[int, dict[str, Any]]:
    code = cli_main(["--home", str(home), "run", "--date", day.isoformat()])
    runs = sorted((home / "runs").glob(f"{day}-*.json"), key=lambda p: p.stat().st_mtime_ns)
    return code, json.loads(runs[-1].read_text())


def state_counts(settings: Settings) -> dict[str, int]:
    with store.opened(settings) as con:
        return {
            t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608 (fixed names)
            for t in ("invoices", "invoice_lines", "payment_attempts", "outbox", "webhook_attempts")
        }


@pytest.mark.slow
def test_month_close_end_to_end_then_rerun_changes_nothing(
    tmp_path: Path, receiver: Receiver, stripe_env: FakeStripe
) -> None:
    home = tmp_path / "home"
    settings = month_settings(home, receiver)
    generate(settings.landing_dir, workspaces=5, events=20_000, seed=7, bad_lines=3)
    create_subscription(settings, "ws_0005", "growth", date(2024, 1, 10))

    code, summary = run(home, RUN_DATE)
    assert code == 0, summary["failures"]
    steps = summary["steps"]
    assert steps["ingest"]["counts"]["rejected"] == 3
    assert steps["ingest"]["counts"]["accepted"] == 20_000
    assert steps["rollup"]["counts"]["days"] == 31
    assert steps["invoices"]["counts"]["invoices_finalized"] == 5
    assert steps["documents"]["counts"]["rendered"] == 5
    # the lake's copy of the state, taken between the documents and the payments
    assert list(steps).index("mirror") == list(steps).index("documents") + 1
    assert steps["mirror"]["counts"]["lake_snapshot"] > 0
    assert steps["payments"]["counts"]["succeeded"] == 5
    assert len(stripe_env.charges) == 5
    # Stripe configured: the month is reconciled (5 paid invoices, one PaymentIntent each)
    assert steps["reconcile"]["counts"]["invoices_checked"] == 5
    assert steps["reconcile"]["counts"]["mismatches"] == 0, steps["reconcile"]["notes"]
    pdfs = sorted(p.name for p in settings.invoices_dir.glob("*.pdf"))
    assert pdfs == [f"INV-2024-{n:06d}.pdf" for n in range(1, 6)]
    types = {r["type"] for r in receiver.received}
    assert {"billing.usage.recorded", "billing.invoice.finalized", "billing.invoice.paid"} <= types
    assert len({r["id"] for r in receiver.received}) == len(receiver.received)
    growth = [
        json.loads(p.read_text())
        for p in settings.invoices_dir.glob("*.json")
        if json.loads(p.read_text())["workspaceId"] == "ws_0005"
    ][0]
    assert any(x["kind"] == "base_fee" and "22/31" in x["description"] for x in growth["lineItems"])
    before = state_counts(settings)
    pdf_bytes = {p.name: p.read_bytes() for p in settings.invoices_dir.glob("*.pdf")}
    delivered = len(receiver.received)

    code, again = run(home, RUN_DATE)  # the same date, again: nothing changes
    assert code == 0
    assert again["steps"]["ingest"]["counts"]["files"] == 0
    assert again["steps"]["invoices"]["counts"]["invoices_finalized"] == 0
    assert again["steps"]["payments"]["counts"]["charged"] == 0
    after = state_counts(settings)
    assert {k: v for k, v in after.items() if k != "webhook_attempts"} == {
        k: v for k, v in before.items() if k != "webhook_attempts"
    }
    assert len(stripe_env.charges) == 5 and len(receiver.received) == delivered
    assert {p.name: p.read_bytes() for p in settings.invoices_dir.glob("*.pdf")} == pdf_bytes
    # the analysts see the invoices beside the usage
    from billing_batch.storage.analyst import open_analyst_session

    con = open_analyst_session(settings)
    try:
        paid = con.execute("SELECT count(*) FROM invoices WHERE status = 'paid'").fetchall()
        runs = con.execute("SELECT count(*) FROM runs").fetchall()
    finally:
        con.close()
    assert paid == [(5,)] and runs[0][0] >= 1


def test_a_failing_workspace_does_not_stop_the_others_in_the_steps(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The nightly's money steps (``steps.bill``: ingest, rollup, invoices, audit), without
    Prefect: one workspace whose plan cannot price its usage fails alone, and the audit
    names its unbilled period. (Through the flow and the CLI: the slow test below.)"""
    from billing_batch.invoicing.audit import describe
    from billing_batch.nightly.steps import bill

    settings = month_settings(tmp_path / "home", receiver, broken="ws_0002")
    generate(settings.landing_dir, workspaces=5, events=1_000, seed=8, bad_lines=0)
    result = bill(settings, RUN_DATE)
    assert [f["workspace"] for f in result.failures] == ["ws_0002"]
    assert "plan 'partial' has no price for metric" in result.failures[0]["error"]
    assert len(result.invoice_ids) == 4
    unexplained = describe(result.audit.unexplained)
    assert unexplained and all("ws_0002 2024-01-01..2024-01-31" in a for a in unexplained)
    assert any("unbilled_period" in a for a in unexplained)


@pytest.mark.slow
def test_a_failing_workspace_does_not_stop_the_others(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    monkeypatch.setenv("TEST_WHSEC", SECRET)
    home = tmp_path / "home"
    settings = month_settings(home, receiver, broken="ws_0002")
    generate(settings.landing_dir, workspaces=5, events=5_000, seed=8, bad_lines=0)
    code, summary = run(home, RUN_DATE)
    assert code == 1 and summary["status"] == "failed"
    failures = [f for f in summary["failures"] if f["step"] == "invoices"]
    assert len(failures) == 1 and failures[0]["workspace"] == "ws_0002"
    assert "plan 'partial' has no price for metric" in failures[0]["error"]
    # the audit sees the period that could not be billed, and says so
    audit = [f["audit"] for f in summary["failures"] if f["step"] == "audit"]
    assert any("ws_0002 2024-01-01..2024-01-31 unbilled_period" in a for a in audit)
    assert all("ws_0002 2024-01-01..2024-01-31" in a for a in audit)
    assert summary["steps"]["audit"]["counts"]["unexplained"] == len(audit)
    assert summary["steps"]["invoices"]["counts"]["invoices_finalized"] == 4
    notes = summary["steps"]["payments"]["notes"]
    assert any("Stripe is not configured" in n for n in notes)


HOLD_RUN_LOCK = """\
import sys
from billing_batch.config import load_settings
from billing_batch.nightly.steps import run_lock
with run_lock(load_settings(env={"BILLING_HOME": sys.argv[1]})):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_second_run_exits_at_once_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    other = subprocess.Popen(  # another run, in another process, holds the lock
        [sys.executable, "-c", HOLD_RUN_LOCK, str(home)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout is not None and other.stdout.readline() == "held\n"
        code = cli_main(["--home", str(home), "run", "--date", "2024-02-01"])
    finally:
        other.communicate("")  # let it go
    assert code == 3
    err = capsys.readouterr().err
    assert f"another nightly run is in progress (pid {other.pid})" in err


def test_the_run_lock_is_reentrant_in_its_process_only(tmp_path: Path) -> None:
    settings = load_settings(env={"BILLING_HOME": str(tmp_path / "home")})
    results: list[str] = []

    def same_process_other_thread() -> None:
        with run_lock(settings):  # the CLI holds it; Prefect may run the flow elsewhere
            results.append("entered")

    with run_lock(settings):
        t = threading.Thread(target=same_process_other_thread)
        t.start()
        t.join()
        other = subprocess.run(  # another process is refused
            [sys.executable, "-c", HOLD_RUN_LOCK, str(settings.home)],
            input="",
            capture_output=True,
            text=True,
        )
    assert results == ["entered"]
    assert other.returncode == 1 and "another nightly run is in progress" in other.stderr
    with run_lock(settings):  # released by the outer holder only
        pass


def test_a_step_that_raises_still_writes_the_run_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    settings = load_settings(env={"BILLING_HOME": str(home)})
    generate(settings.landing_dir, workspaces=2, events=200, seed=9, bad_lines=0)
    # a lake catalog that is not a database: the ingest step raises (LakeError)
    settings.lake_dir.mkdir(parents=True)
    (settings.lake_dir / "catalog.sqlite").write_bytes(b"this is not a SQLite database" * 100)
    code = cli_main(["--home", str(home), "run", "--date", RUN_DATE.isoformat()])
    assert code == 1
    err = capsys.readouterr().err
    assert f"the run for {RUN_DATE} stopped: LakeError" in err
    (path,) = (home / "runs").glob(f"{RUN_DATE}-*.json")
    summary = json.loads(path.read_text())
    assert summary["status"] == "failed"
    assert list(summary["steps"]) == ["ingest"]  # the steps after it did not run
    (failure,) = summary["failures"]
    assert failure["step"] == "ingest" and failure["aborted"] is True
    assert failure["error"].startswith("LakeError: ") and "catalog" in failure["error"]
    assert any("did not run" in n for n in summary["steps"]["ingest"]["notes"])
    assert summary["finishedAt"] is not None
    with store.opened(settings) as con:  # and in the state store's runs table
        row = [tuple(r) for r in con.execute("SELECT run_id, status FROM runs")]
    assert row == [(summary["runId"], "failed")]


def test_served_deployment_has_the_configured_cron(tmp_path: Path) -> None:
    from billing_batch.nightly.schedule import build_deployment

    home = tmp_path / "home"
    home.mkdir()
    (home / "billing.toml").write_text(
        '[schedule]\ncron = "30 3 * * *"\ntimezone = "Europe/Paris"\n'
    )
    settings = load_settings(env={"BILLING_HOME": str(home)})
    deployment = build_deployment(settings)
    assert deployment.name == "nightly"
    (sched,) = deployment.schedules
    assert sched.schedule.cron == "30 3 * * *"
    assert sched.schedule.timezone == "Europe/Paris"
    assert deployment.parameters["home"] == str(settings.home)
    default = build_deployment(load_settings(env={"BILLING_HOME": str(tmp_path / "h2")}))
    assert default.schedules[0].schedule.cron == "0 2 * * *"
    assert default.schedules[0].schedule.timezone == "UTC"


def test_prefect_yaml_takes_its_cron_from_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """prefect.yaml writes no cron: its build step reads the settings, and the deployment's
    schedule is rendered from that step's outputs (as ``prefect deploy`` does)."""
    import importlib

    import yaml
    from prefect.utilities.templating import apply_values

    project = yaml.safe_load((Path(__file__).resolve().parents[2] / "prefect.yaml").read_text())
    home = tmp_path / "home"
    home.mkdir()
    (home / "billing.toml").write_text('[schedule]\ncron = "15 4 * * 1"\ntimezone = "Asia/Tokyo"\n')
    monkeypatch.setenv("BILLING_HOME", str(home))
    outputs = {}
    for step in project["build"]:
        ((name, args),) = step.items()
        module, _, func = name.rpartition(".")
        outputs[args["id"]] = getattr(importlib.import_module(module), func)()
    (deployment,) = project["deployments"]
    (schedule,) = apply_values(deployment["schedules"], outputs)
    assert schedule["cron"] == "15 4 * * 1"
    assert schedule["timezone"] == "Asia/Tokyo"
    assert "* * *" not in (Path(__file__).resolve().parents[2] / "prefect.yaml").read_text()
