"""``billing-batch usage`` and ``billing-batch rollup``: output shape, exit codes, and
workspace ids that try to inject SQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from billing_batch.cli import main as cli_main
from billing_batch.config.settings import Settings
from billing_batch.storage.lake import Lake
from billing_batch.usage.queries import daily_quantities, get_usage, period_quantities
from billing_batch.usage.rollup import refresh_rollup
from tests.usage.support import GOLDEN, D, ev, load, q


# --- the CLI -----------------------------------------------------------------------------
def run_cli(settings: Settings, *args: str) -> int:
    return cli_main(["--home", str(settings.home), *args])


INJECTIONS = [
    "ws_123' OR '1'='1",
    "ws_123'; DROP TABLE events; --",
    "' UNION SELECT metric, day, quantity FROM usage_daily --",
    "ws_123\\' OR 1=1 --",
    "%",
    "*",
    "ws_1%' OR workspace_id LIKE '%",
    'ws_123"; SELECT 1; --',
    "ws_123" + "x" * 5000,
    "wś_123 ☃",
]


def test_injection_through_workspace_returns_nothing(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load(
        settings,
        tmp_path,
        [
            ev("ws_123", "api_calls", 1000, "2024-01-15T10:00:00Z"),
            ev("ws_1", "api_calls", 1, "2024-01-15T10:00:00Z"),
        ],
    )
    refresh_rollup(settings)
    con = Lake(settings).connect()
    try:
        for attempt in INJECTIONS:
            code = run_cli(
                settings, "usage", "--workspace", attempt, "--metric", "api_calls",
                "--start", "2024-01-01", "--end", "2024-01-31",
            )  # fmt: skip
            # refused by the workspace id rule (ids.check_workspace_id) before any query
            assert code == 2, attempt
            out = capsys.readouterr()
            assert out.out == "" and "invalid --workspace" in out.err, attempt
            jan = (D("2024-01-01"), D("2024-01-31"))
            assert period_quantities(con, *jan, workspace_id=attempt) == {}
            assert daily_quantities(con, attempt, *jan) == []
    finally:
        con.close()
    # nothing broke
    assert q(settings, "SELECT count(*) FROM events") == [(2,)]
    assert get_usage(settings, "ws_123", "2024-01-01", "2024-01-31", "api_calls")["total"] == 1000
    # the sql command refuses anything but a read, whatever hides behind a semicolon
    assert run_cli(settings, "sql", "SELECT 1; DROP TABLE events") == 2
    assert "only SELECT" in capsys.readouterr().err
    assert q(settings, "SELECT count(*) FROM events") == [(2,)]


def test_cli_usage_shape_and_exit_codes(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load(
        settings,
        tmp_path,
        [
            ev("ws_123", "api_calls", 1500, "2024-01-15T10:00:00Z"),
            ev("ws_123", "api_calls", 2000, "2024-01-16T10:00:00Z"),
            ev("ws_123", "storage", 12.25, "2024-01-16T10:00:00Z"),
        ],
    )
    # the usage command absorbs the pending ingest itself
    args = ["usage", "--workspace", "ws_123", "--start", "2024-01-01", "--end", "2024-01-31"]
    assert run_cli(settings, *args, "--metric", "api_calls") == 0
    assert capsys.readouterr().out == (
        "{\n"
        '  "metric": "api_calls",\n'
        '  "total": 3500,\n'
        '  "breakdown": [\n'
        "    {\n"
        '      "date": "2024-01-15",\n'
        '      "quantity": 1500\n'
        "    },\n"
        "    {\n"
        '      "date": "2024-01-16",\n'
        '      "quantity": 2000\n'
        "    }\n"
        "  ]\n"
        "}\n"
    )
    assert run_cli(settings, *args) == 0
    out = capsys.readouterr().out
    assert out == (GOLDEN / "usage_all_metrics.json").read_text()
    # storage: 16 days x 12.25 / 31 = 196 / 31 = 6.3225806451... -> 6.322580645
    assert '"total": 6.322580645' in out

    bad = [
        (["--start", "2024-1-1", "--end", "2024-01-31"], "expected a date as YYYY-MM-DD"),
        (["--start", "2024-02-30", "--end", "2024-03-01"], "expected a date as YYYY-MM-DD"),
        (["--start", "2024-01-31", "--end", "2024-01-01"], "is before start date"),
        (["--start", "2024-01-01", "--end", "2024-01-31", "--metric", "bandwidth"],
         "unknown metric 'bandwidth'"),
    ]  # fmt: skip
    for extra, message in bad:
        assert run_cli(settings, "usage", "--workspace", "ws_123", *extra) == 2, extra
        captured = capsys.readouterr()
        assert message in captured.err and captured.out == "", (extra, captured)
    with pytest.raises(SystemExit) as exc:
        run_cli(settings, "usage", "--start", "2024-01-01", "--end", "2024-01-31")
    assert exc.value.code == 2
    capsys.readouterr()

    assert run_cli(settings, "rollup") == 0
    assert json.loads(capsys.readouterr().out)["snapshot_id"] is None
    assert run_cli(settings, "rollup", "--full") == 0
    assert json.loads(capsys.readouterr().out)["days"] == ["2024-01-15", "2024-01-16"]
