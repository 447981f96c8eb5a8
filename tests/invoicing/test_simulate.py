"""Price simulation over history: a candidate book prices past periods beside what was
invoiced (late lines and discounts included), per workspace and in total, without
touching any invoice; the report file read back (Parquet and CSV); the CLI's table."""

from __future__ import annotations

import csv
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from billing_batch._core.errors import InputError, PriceBookError
from billing_batch.config.price_book import default_price_book_text
from billing_batch.invoicing.service import create_invoices, list_invoices
from billing_batch.invoicing.simulate import simulate, summary_rows
from billing_batch.storage import state
from tests.invoicing.helpers import NOW, api_calls, load, seed_usage
from tests.invoicing.pricing_support import DISCOUNT, book_settings

D = Decimal
JAN = (date(2024, 1, 1), date(2024, 1, 31))
FEB = (date(2024, 2, 1), date(2024, 2, 29))


def candidate(tmp_path: Path, extra: str = DISCOUNT) -> Path:
    text = default_price_book_text().replace('unit_price = "0.01"', 'unit_price = "0.012"', 1)
    path = tmp_path / "candidate.toml"
    path.write_text(text.replace('version = "default-2024.1"', 'version = "2025.1"') + extra)
    return path


def state_bytes(settings: object) -> list[tuple[object, ...]]:
    with state.opened(settings) as con:  # type: ignore[arg-type]
        rows = con.execute("SELECT * FROM invoices ORDER BY id").fetchall()
        lines = con.execute("SELECT * FROM invoice_lines ORDER BY invoice_id, line_no").fetchall()
        ledger = con.execute("SELECT * FROM billing_ledger ORDER BY 1, 2, 3, 4, 5").fetchall()
    return [tuple(r) for r in [*rows, *lines, *ledger]]


@pytest.fixture
def billed(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    """ws_123: January invoiced (seed usage, 10% discount: 450.00), late usage of January
    carried by February's invoice; ws_b: January invoiced (2,000 api_calls: 20.00)."""
    settings = book_settings(home, monkeypatch)
    load(settings, tmp_path, seed_usage() + api_calls("ws_b", 2, "2024-01-10"))
    create_invoices(settings, [("ws_123", *JAN), ("ws_b", *JAN)], now=NOW, finalize=True)
    load(settings, tmp_path, api_calls("ws_123", 1, "2024-01-25", prefix="late"))
    load(settings, tmp_path, api_calls("ws_123", 1, "2024-02-03", prefix="feb"))
    create_invoices(settings, [("ws_123", *FEB)], now=NOW, finalize=True)
    return settings


def test_simulation_beside_what_was_invoiced(billed: object, tmp_path: Path) -> None:
    before = state_bytes(billed)
    out = tmp_path / "reports" / "sim.parquet"
    sim = simulate(billed, candidate(tmp_path), JAN[0], FEB[1], out=out)  # type: ignore[arg-type]
    assert state_bytes(billed) == before  # no invoice, line or ledger row touched
    rows = {(r["workspace_id"], r["period_start"]): r for r in sim.rows.to_pylist()}
    jan = rows[("ws_123", JAN[0])]
    # invoiced for January: 450.00 + 50.00 - 50.00 discount, then late 1,000 calls 10.00
    # less 10% (on February's invoice): 459.00; simulated: 46,000 × 0.012 + 50.00 - 10%
    assert jan["invoiced_subtotal"] == D("459.00")
    assert jan["simulated_subtotal"] == D("541.80")  # (552.00 + 50.00) × 0.9
    assert jan["difference"] == D("82.80") and jan["error"] is None
    assert set(jan["invoices"].split(",")) == {"INV-2024-000001", "INV-2024-000003"}
    feb = rows[("ws_123", FEB[0])]
    assert (feb["invoiced_subtotal"], feb["simulated_subtotal"]) == (D("9.00"), D("10.80"))
    b = rows[("ws_b", JAN[0])]
    assert (b["invoiced_subtotal"], b["simulated_subtotal"], b["simulated_tax"]) == (
        D("20.00"),
        D("24.00"),
        D("2.40"),
    )
    totals = {r["workspace_id"]: r for r in summary_rows(sim)}
    assert totals["ws_123"]["periods"] == 2
    assert totals["ws_123"]["difference"] == D("84.60")
    assert totals["TOTAL"]["invoiced_subtotal"] == D("488.00")
    assert totals["TOTAL"]["simulated_subtotal"] == D("576.60")
    back = pq.read_table(out).to_pylist()
    assert back == sim.rows.to_pylist()
    assert len(list_invoices(billed)) == 3  # type: ignore[arg-type]


def test_csv_report_and_the_cli_table(billed: object, home: Path, tmp_path: Path) -> None:
    out = tmp_path / "sim.csv"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "billing_batch",
            "simulate",
            "--price-book",
            str(candidate(tmp_path)),
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-31",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env={"BILLING_HOME": str(home), "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 0, run.stderr
    table = run.stdout.splitlines()
    assert table[0].startswith("price book 2025.1 (sha256:")
    assert table[1].split() == [
        "workspace",
        "cur",
        "periods",
        "invoiced",
        "simulated",
        "difference",
    ]
    assert table[3].split() == ["ws_123", "USD", "1", "459.00", "541.80", "82.80"]
    assert table[5].split() == ["TOTAL", "USD", "2", "479.00", "565.80", "86.80"]
    with out.open() as fh:
        got = list(csv.DictReader(fh))
    assert [(r["workspace_id"], r["simulated_subtotal"]) for r in got] == [
        ("ws_123", "541.800000000"),
        ("ws_b", "24.000000000"),
    ]


def test_a_candidate_that_cannot_price_a_workspace_is_a_row_error(
    billed: object, tmp_path: Path
) -> None:
    extra = '\n[workspaces.ws_b]\nplan = "growth_jpy"\n'
    sim = simulate(billed, candidate(tmp_path, extra), *JAN)  # type: ignore[arg-type]
    b = next(r for r in sim.rows.to_pylist() if r["workspace_id"] == "ws_b")
    assert b["error"] == "invoiced in USD, simulated in JPY" and b["difference"] is None


def test_bad_arguments(billed: object, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="before --start"):
        simulate(billed, candidate(tmp_path), FEB[0], JAN[0])  # type: ignore[arg-type]
    with pytest.raises(PriceBookError, match="not found"):
        simulate(billed, tmp_path / "nope.toml", *JAN)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=".parquet or .csv"):
        simulate(billed, candidate(tmp_path), *JAN, out=tmp_path / "x.xlsx")  # type: ignore[arg-type]
