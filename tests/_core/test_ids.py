"""One rule for workspace ids (issue 15): ids.check_workspace_id is the home; the CLI, the
HTTP API and the library services use it, and the ingest SQL states the same rule."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from billing_batch._core.errors import InputError, SubscriptionError
from billing_batch._core.ids import (
    WORKSPACE_ID_PATTERN,
    WORKSPACE_ID_RULE,
    check_workspace_id,
    is_workspace_id,
)
from billing_batch.api import models
from billing_batch.cli import main
from billing_batch.config.settings import Settings
from billing_batch.subscriptions.service import create_subscription
from billing_batch.usage.recording import validate_lines
from tests.conftest import event

VALID = ["ws_123", "ws.1-2_3", "WS", "a", "0", "-", ".", "..", "w" * 64, "ws_" + "9" * 61]
INVALID = [
    "",
    "<script>",
    "<script>alert(1)</script>",
    "x' OR 1=1 --",
    "ws;DROP TABLE invoices",
    "ws 1",
    " ws_1",
    "ws_1 ",
    "ws_1\n",
    "\nws_1",
    "ws\t1",
    "ws\r1",
    "ws\x00",
    "w" * 65,
    "wś",
    "ｗｓ",  # full-width letters
    "ws_١",  # an Arabic-Indic digit
    "İ",
    "ws\u200b1",  # zero-width space
    "ws😀",
    "ws/1",
    "../etc/passwd",
    "ws\\1",
    'ws"1',
    "ws%201",
    "ws$1",
    "ws*",
    "ws,1",
]


def _sql_accepts(settings: Settings, workspace_ids: list[str], *, ascii_only: bool) -> list[bool]:
    """ingest's own SQL (sql/ingest_validate.sql), on lines carrying these ids."""
    lines = [
        json.dumps(event(id=f"e{i}", workspace=w), ensure_ascii=ascii_only).encode()
        for i, w in enumerate(workspace_ids)
    ]
    return [reason is None for reason, _ in validate_lines(settings, lines)]


@pytest.mark.parametrize("ascii_only", [True, False])
def test_python_and_sql_agree_on_adversarial_ids(settings: Settings, ascii_only: bool) -> None:
    ids = VALID + INVALID
    sql = _sql_accepts(settings, ids, ascii_only=ascii_only)
    python = [is_workspace_id(w) for w in ids]
    disagree = [(w, p, s) for w, p, s in zip(ids, python, sql, strict=True) if p != s]
    assert disagree == []
    assert python == [True] * len(VALID) + [False] * len(INVALID)


def test_the_api_schema_states_the_same_rule() -> None:
    """The API's pattern comes from ids.py, and pydantic enforces it like the function."""
    assert models.WORKSPACE_PATTERN == WORKSPACE_ID_PATTERN
    period = {"start": "2024-01-01", "end": "2024-01-31"}
    for w in VALID + INVALID:
        try:
            models.CreateInvoice.model_validate({"workspaceId": w, "period": period})
            accepted = True
        except ValidationError:
            accepted = False
        assert accepted == is_workspace_id(w), w
        assert (re.fullmatch(WORKSPACE_ID_PATTERN, w) is not None) == is_workspace_id(w)


def test_the_sql_file_states_the_rule() -> None:
    """sql/ingest_validate.sql keeps its own check (inside DuckDB, on the JSON text):
    the same character class and length as ids.WORKSPACE_ID_PATTERN."""
    text = (Path(__file__).parents[2] / "sql" / "ingest_validate.sql").read_text()
    inner = WORKSPACE_ID_PATTERN.removeprefix("^").removesuffix("$")
    assert f"'^\"{inner}\"$'" in text


def test_check_workspace_id() -> None:
    assert check_workspace_id("ws_123") == "ws_123"
    with pytest.raises(InputError, match=re.escape(WORKSPACE_ID_RULE)) as err:
        check_workspace_id("x' OR 1=1 --", what="--workspace")
    assert 'invalid --workspace "x\' OR 1=1 --"' in str(err.value)
    with pytest.raises(SubscriptionError):
        check_workspace_id("", error=SubscriptionError)
    with pytest.raises(InputError):
        check_workspace_id(123)
    long = check_workspace_id  # a very long value is cut in the message
    with pytest.raises(InputError) as err:
        long("<" * 500)
    assert len(str(err.value)) < 200


def _state_counts(settings: Settings) -> tuple[int, int]:
    if not settings.state_path.exists():
        return (0, 0)
    with sqlite3.connect(settings.state_path) as con:
        return (
            con.execute("SELECT count(*) FROM invoices").fetchone()[0],
            con.execute("SELECT count(*) FROM outbox").fetchone()[0],
        )


@pytest.mark.parametrize("workspace", ["", "<script>", "x' OR 1=1 --", "ws 1", "ws_1\n"])
def test_cli_refuses_bad_workspace_ids_and_records_nothing(
    settings: Settings, workspace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    home = ["--home", str(settings.home)]
    period = ["--start", "2024-01-01", "--end", "2024-01-31"]
    assert main([*home, "invoice", "create", "--workspace", workspace, *period]) == 2
    assert "invalid --workspace" in capsys.readouterr().err
    assert main([*home, "usage", "--workspace", workspace, *period]) == 2
    assert "invalid --workspace" in capsys.readouterr().err
    assert main([*home, "invoice", "list", "--workspace", workspace]) == 2
    assert _state_counts(settings) == (0, 0)
    assert not (settings.home / "lake").exists()  # refused before anything was opened


def test_cli_refusal_as_a_subprocess(settings: Settings) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "billing_batch", "--home", str(settings.home), "invoice"]
        + ["create", "--workspace", "<script>", "--start", "2024-01-01", "--end", "2024-01-31"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and "invalid --workspace '<script>'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_library_service_uses_the_rule(settings: Settings) -> None:
    from datetime import date

    with pytest.raises(SubscriptionError, match=re.escape(WORKSPACE_ID_RULE)):
        create_subscription(settings, "x' OR 1=1 --", "growth", date(2024, 1, 1))
