"""The defects of issue 13 (money over time), one test each, in the issue's own scenarios.

Each failed on the code before the fix (main at e8bb361). Runs go through the library's
nightly ``bill`` (what ``billing-batch run`` does, without Prefect's server); the stale-read
defect goes through the command line, as reported. Prices: the built-in book (payg: API
calls 0.01; growth: base fee 99.00, minimum 250.00, 100,000 API calls included), with the
issue's workspaces added. The dunning defect (7) is tested with the dunning code.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from billing_batch.cli import main as cli_main
from billing_batch.config.settings import Settings, load_settings

D = date


# --- helpers -------------------------------------------------------------------------------
def make_home(tmp_path: Path, workspaces: dict[str, str] | None = None) -> Settings:
    """A home whose price book is the built-in one plus ``[workspaces.<id>] plan``."""
    from billing_batch import default_price_book_text

    home = tmp_path / "home"
    home.mkdir()
    book = default_price_book_text()
    for ws, plan in (workspaces or {}).items():
        book += f'\n[workspaces.{ws}]\nplan = "{plan}"\n'
    (home / "prices.toml").write_text(book)
    return load_settings(
        env={
            "BILLING_HOME": str(home),
            "BILLING_PRICE_BOOK": str(home / "prices.toml"),
            "BILLING_LAKE_MEMORY_LIMIT": "256MB",
        }
    )


_seq = iter(range(1, 1_000_000))


def land(settings: Settings, *events: tuple[str, str, int, str]) -> Path:
    """A landing file of (workspace, id, api_calls, day) events."""
    lines = [
        json.dumps(
            {
                "id": eid,
                "workspaceId": ws,
                "metric": "api_calls",
                "quantity": qty,
                "timestamp": f"{day}T12:00:00Z",
            }
        )
        for ws, eid, qty, day in events
    ]
    landing = settings.home / "landing"
    landing.mkdir(exist_ok=True)
    path = landing / f"usage-{next(_seq):04d}.jsonl"
    tmp = settings.home / f".{path.name}.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return path


def bill(settings: Settings, run_date: date) -> Any:
    from billing_batch import bill as _bill

    result = _bill(settings, run_date)
    assert list(result.failures) == [], result.failures
    return result


def live_invoices(settings: Settings, ws: str | None = None) -> list[Any]:
    from billing_batch import list_invoices

    return sorted(
        (
            inv
            for inv in list_invoices(settings, workspace_id=ws, limit=100000)
            if inv.status not in ("void", "draft")
        ),
        key=lambda inv: (inv.period_start, inv.workspace_id),
    )


def periods(invoices: list[Any]) -> list[tuple[str, date, date]]:
    return [(inv.workspace_id, inv.period_start, inv.period_end) for inv in invoices]


def late_period(line: Any) -> tuple[date, date]:
    lp = line.detail["latePeriod"]
    return (date.fromisoformat(str(lp["start"])[:10]), date.fromisoformat(str(lp["end"])[:10]))


def fixed_lines(invoices: list[Any]) -> list[tuple[str, date, date, Decimal]]:
    """Every base fee and minimum line (late ones too): (kind, first day, last day, amount)."""
    return [
        (ln.kind, ln.period_start, ln.period_end, ln.amount)
        for inv in invoices
        for ln in inv.lines
        if ln.kind.removeprefix("late_") in ("base_fee", "minimum")
    ]


def unexplained(settings: Settings, as_of: date) -> list[Any]:
    from billing_batch import audit

    return list(audit(settings, as_of=as_of).unexplained)


# --- 1 -------------------------------------------------------------------------------------
def test_late_usage_billed_once_on_catch_up(tmp_path: Path) -> None:
    """Dec usage, run 2024-01-01; then a late Dec event (2,000 API calls) plus Jan and Feb
    usage, and the next run is 2024-03-05: the late usage is on ONE invoice (January's,
    the earliest the run creates), not on both."""
    s = make_home(tmp_path)
    land(s, ("ws_123", "dec-1", 1000, "2023-12-10"))
    bill(s, D(2024, 1, 1))
    land(
        s,
        ("ws_123", "dec-late", 2000, "2023-12-20"),
        ("ws_123", "jan-1", 500, "2024-01-15"),
        ("ws_123", "feb-1", 700, "2024-02-15"),
    )
    result = bill(s, D(2024, 3, 5))
    invoices = live_invoices(s, "ws_123")
    late = [(inv, ln) for inv in invoices for ln in inv.lines if ln.kind == "late_usage"]
    billed = sum((ln.quantity for _, ln in late), Decimal(0))
    where = [(str(inv.period_start), str(ln.quantity), str(ln.amount)) for inv, ln in late]
    assert billed == 2000, f"the late December usage is billed {billed / 2000}x: on {where}"
    assert len(late) == 1
    inv, line = late[0]
    assert (inv.period_start, inv.period_end) == (D(2024, 1, 1), D(2024, 1, 31))
    assert late_period(line) == (D(2023, 12, 1), D(2023, 12, 31))
    assert line.amount == Decimal("20.00")
    assert periods(invoices) == [
        ("ws_123", D(2023, 12, 1), D(2023, 12, 31)),
        ("ws_123", D(2024, 1, 1), D(2024, 1, 31)),
        ("ws_123", D(2024, 2, 1), D(2024, 2, 29)),
    ]
    assert sorted(result.invoice_ids) == sorted(i.id for i in invoices[1:])
    assert unexplained(s, D(2024, 3, 5)) == []
    # the same date again: nothing new
    assert list(bill(s, D(2024, 3, 5)).invoice_ids) == []


# --- 2 -------------------------------------------------------------------------------------
def test_outage_gap_bills_every_period(tmp_path: Path) -> None:
    """Usage in Jan and Feb; the first run is 2024-04-02 (and a workspace whose only usage
    is in Nov 2023): every closed period with usage is invoiced, however long ago."""
    s = make_home(tmp_path)
    land(
        s,
        ("ws_123", "jan", 1000, "2024-01-10"),
        ("ws_123", "feb", 2000, "2024-02-10"),
        ("ws_old", "nov", 300, "2023-11-20"),
    )
    result = bill(s, D(2024, 4, 2))
    invoices = live_invoices(s)
    assert periods(invoices) == [
        ("ws_old", D(2023, 11, 1), D(2023, 11, 30)),
        ("ws_123", D(2024, 1, 1), D(2024, 1, 31)),
        ("ws_123", D(2024, 2, 1), D(2024, 2, 29)),
    ], "a closed period with usage was never invoiced"
    usage = {(inv.workspace_id, inv.period_start): inv.subtotal for inv in invoices}
    assert usage == {
        ("ws_old", D(2023, 11, 1)): Decimal("3.00"),
        ("ws_123", D(2024, 1, 1)): Decimal("10.00"),
        ("ws_123", D(2024, 2, 1)): Decimal("20.00"),
    }
    assert len(result.invoice_ids) == 3
    assert list(result.audit.unexplained) == []


# --- 3 -------------------------------------------------------------------------------------
def test_no_invoice_before_first_activity(tmp_path: Path) -> None:
    """``[workspaces.ws_m] plan = "growth"``, first event 2024-02-05: the runs of
    2024-02-01 and 2024-03-01 invoice nothing before February (no 250.00 minimum for
    months before the customer existed); a listed workspace with no usage and no
    subscription is never invoiced."""
    s = make_home(tmp_path, {"ws_m": "growth", "ws_idle": "growth"})
    land(s, ("ws_m", "first", 5000, "2024-02-05"))
    assert list(bill(s, D(2024, 2, 1)).invoice_ids) == []
    assert live_invoices(s) == [], "invoices before the first activity"
    bill(s, D(2024, 3, 1))
    invoices = live_invoices(s)
    assert [inv.period_start >= D(2024, 2, 1) for inv in invoices] == [True] * len(invoices)
    assert periods(invoices) == [("ws_m", D(2024, 2, 1), D(2024, 2, 29))]
    # growth through the price book only prices usage: 5,000 calls are within the
    # 100,000 included; no fee and no minimum (no subscription)
    assert fixed_lines(invoices) == []
    assert [(ln.kind, ln.plan, ln.quantity) for ln in invoices[0].lines] == [
        ("usage", "growth", Decimal(5000))
    ]


# --- 4 -------------------------------------------------------------------------------------
def test_base_fee_and_minimum_follow_one_rule(tmp_path: Path) -> None:
    """A workspace on growth through the price book (no subscription) gets neither the
    base fee nor the minimum; with a subscription (from 2024-01-10: 22 of 31 days) it gets
    both, prorated by the same fee days."""
    from billing_batch import create_subscription

    s = make_home(tmp_path, {"ws_book": "growth"})
    create_subscription(s, "ws_sub", "growth", D(2024, 1, 10))
    land(s, ("ws_book", "b1", 1000, "2024-01-15"), ("ws_sub", "s1", 1000, "2024-01-15"))
    bill(s, D(2024, 2, 1))
    book_inv = live_invoices(s, "ws_book")
    assert fixed_lines(book_inv) == [], "a fee or a minimum without a subscription"
    assert periods(book_inv) == [("ws_book", D(2024, 1, 1), D(2024, 1, 31))]
    sub_inv = live_invoices(s, "ws_sub")
    assert periods(sub_inv) == [("ws_sub", D(2024, 1, 1), D(2024, 1, 31))]
    # base fee 99.00 x 22/31 = 70.258... -> 70.26; minimum 250.00 x 22/31 = 177.419... ->
    # 177.42, less the usage (1,000 calls within the prorated included units: 0.00)
    assert sorted(fixed_lines(sub_inv)) == [
        ("base_fee", D(2024, 1, 10), D(2024, 1, 31), Decimal("70.26")),
        ("minimum", D(2024, 1, 10), D(2024, 1, 31), Decimal("177.42")),
    ]
    fee = next(ln for ln in sub_inv[0].lines if ln.kind == "base_fee")
    minimum = next(ln for ln in sub_inv[0].lines if ln.kind == "minimum")
    assert fee.quantity == 22 and int(minimum.detail["days"]) == 22


# --- 5 -------------------------------------------------------------------------------------
def test_cancelled_subscription_gets_no_minimum_after(tmp_path: Path) -> None:
    """growth in the price book and a subscription cancelled effective 2024-02-11: the final
    Feb 1-10 invoice carries the prorated fee and minimum; the Feb 11-29 period is priced
    by the price book's plan with no fee and no minimum top-up."""
    from billing_batch import cancel_subscription, create_subscription

    s = make_home(tmp_path, {"ws_c": "growth"})
    create_subscription(s, "ws_c", "growth", D(2024, 1, 1))
    land(
        s,
        ("ws_c", "jan", 1000, "2024-01-20"),
        ("ws_c", "feb-a", 1000, "2024-02-05"),
        ("ws_c", "feb-b", 1000, "2024-02-20"),
    )
    cancel_subscription(s, "ws_c", D(2024, 2, 11))
    bill(s, D(2024, 2, 1))
    bill(s, D(2024, 3, 1))
    invoices = live_invoices(s, "ws_c")
    after = [x for x in fixed_lines(invoices) if x[2] >= D(2024, 2, 11)]
    assert after == [], f"a fee or minimum for days after the cancellation: {after}"
    assert periods(invoices) == [
        ("ws_c", D(2024, 1, 1), D(2024, 1, 31)),
        ("ws_c", D(2024, 2, 1), D(2024, 2, 10)),
        ("ws_c", D(2024, 2, 11), D(2024, 2, 29)),
    ]
    # the final period: 10 fee days of 29: 99 x 10/29 = 34.14, 250 x 10/29 = 86.21
    assert sorted(fixed_lines(invoices[1:2])) == [
        ("base_fee", D(2024, 2, 1), D(2024, 2, 10), Decimal("34.14")),
        ("minimum", D(2024, 2, 1), D(2024, 2, 10), Decimal("86.21")),
    ]
    assert [(ln.kind, ln.plan) for ln in invoices[2].lines] == [("usage", "growth")]


# --- 6 -------------------------------------------------------------------------------------
def test_stale_rollup_never_prices_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``billing-batch ingest seed.jsonl`` then ``billing-batch invoice create --workspace
    ws_123 --start 2024-01-01 --end 2024-01-31``: the draft prices the ingested usage (no
    subtotal of 0 from a rollup that was not refreshed), and ``usage`` reads the same."""
    from billing_batch import list_invoices

    s = make_home(tmp_path)
    seed = tmp_path / "seed.jsonl"
    seed.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"evt_{i}",
                    "workspaceId": "ws_123",
                    "metric": "api_calls",
                    "quantity": 9000,
                    "timestamp": f"2024-01-{10 + i:02d}T08:00:00Z",
                }
            )
            + "\n"
            for i in range(5)
        )
    )
    home = str(s.home)
    assert cli_main(["--home", home, "ingest", str(seed)]) == 0
    capsys.readouterr()
    args = ["--start", "2024-01-01", "--end", "2024-01-31"]
    assert cli_main(["--home", home, "invoice", "create", "--workspace", "ws_123", *args]) == 0
    capsys.readouterr()
    drafts = [inv for inv in list_invoices(s, workspace_id="ws_123") if inv.status == "draft"]
    assert len(drafts) == 1
    draft = drafts[0]
    assert draft.subtotal == Decimal("450.00"), f"the draft prices {draft.subtotal}"
    assert [(ln.kind, ln.quantity) for ln in draft.lines] == [("usage", Decimal(45000))]
    cmd = ["--home", home, "usage", "--workspace", "ws_123", "--metric", "api_calls", *args]
    assert cli_main(cmd) == 0
    assert Decimal(str(json.loads(capsys.readouterr().out)["total"])) == 45000
