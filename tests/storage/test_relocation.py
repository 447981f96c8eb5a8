"""A relocatable home (issue 15): a BILLING_HOME copied with ``cp -a`` (or moved, or
restored elsewhere) is refused with a clear message until ``billing-batch lake
relocate`` makes it this home's; then nothing is re-ingested, queries read this home's
files, and invoices go on."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from billing_batch.cli import main
from billing_batch.config.settings import load_settings
from tests.conftest import event, write_log


def _run(home: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    code = main(["--home", str(home), *argv])
    out = capsys.readouterr()
    try:
        data = json.loads(out.out) if out.out.strip() else None
    except json.JSONDecodeError:
        data = out.out
    return code, data, out.err


def _usage_total(home: Path, capsys: pytest.CaptureFixture[str], workspace: str) -> Decimal:
    code, data, err = _run(
        home,
        capsys,
        "usage",
        "--workspace",
        workspace,
        "--metric",
        "api_calls",
        "--start",
        "2024-01-01",
        "--end",
        "2024-02-29",
    )
    assert code == 0, err
    return Decimal(str(data["total"]))


def test_a_copied_home_is_relocated_without_reingesting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BILLING_LAKE_MEMORY_LIMIT", "512MB")
    home = tmp_path / "home"
    landing = home / "landing"
    write_log(
        landing / "2024-01" / "a.jsonl",
        [event(id=f"a{i}", workspace="ws_1", quantity=100) for i in range(10)],
    )
    write_log(
        landing / "b.jsonl.gz",
        [event(id=f"b{i}", workspace="ws_2", quantity=7) for i in range(5)],
        gz=True,
    )
    code, first, err = _run(home, capsys, "ingest")
    assert code == 0, err
    assert first["files"] == 2 and first["accepted"] == 15
    code, draft, err = _run(
        home,
        capsys,
        "invoice",
        "create",
        "--workspace",
        "ws_1",
        "--start",
        "2024-01-01",
        "--end",
        "2024-01-31",
    )
    assert code == 0, err
    code, jan, err = _run(home, capsys, "invoice", "finalize", draft["id"])
    assert code == 0, err
    assert (home / "invoices" / f"{jan['number']}.pdf").is_file()

    copy = tmp_path / "restored" / "home-copy"
    copy.parent.mkdir()
    subprocess.run(["cp", "-a", str(home), str(copy)], check=True)

    # the copy is refused, clearly, rather than read from the original's files
    for argv in (["ingest"], ["invoice", "list"]):
        code, _, err = _run(copy, capsys, *argv)
        if argv == ["invoice", "list"]:
            assert code == 0  # the state store alone: no lake involved
            continue
        assert code == 1 and "billing-batch lake relocate" in err, err
        assert str(home) in err and str(copy) in err
    code, _, err = _run(
        copy, capsys, "usage", "--workspace", "ws_1", "--start", "2024-01-01", "--end", "2024-01-31"
    )
    assert code == 1 and "lake relocate" in err

    # a dry run says what it would do, and does nothing
    code, plan, err = _run(copy, capsys, "lake", "relocate", "--dry-run")
    assert code == 0, err
    assert plan["moved"] is True and plan["dry_run"] is True
    assert plan["former_home"] == str(home) and plan["home"] == str(copy)
    assert (plan["manifest_rows"], plan["invoice_paths"]) == (2, 1)
    assert plan["data_files"] > 0
    assert _run(copy, capsys, "ingest")[0] == 1

    code, done, err = _run(copy, capsys, "lake", "relocate")
    assert code == 0, err
    assert done["moved"] is True and done["dry_run"] is False
    assert (done["manifest_rows"], done["invoice_paths"]) == (2, 1)
    # again: nothing to do
    code, again, err = _run(copy, capsys, "lake", "relocate")
    assert code == 0 and again["moved"] is False, err

    # the original home is untouched and works as before
    code, orig, err = _run(home, capsys, "ingest")
    assert code == 0 and orig["files"] == 0, err

    # from here on the copy must not need the original at all
    shutil.rmtree(home)

    # ingest again: nothing re-ingested; a new file is
    code, out, err = _run(copy, capsys, "ingest")
    assert code == 0, err
    assert out["files"] == 0 and out["accepted"] == 0
    write_log(
        copy / "landing" / "c.jsonl",
        [event(id="c1", workspace="ws_1", quantity=5, timestamp="2024-02-03T00:00:00Z")],
    )
    code, out, err = _run(copy, capsys, "ingest")
    assert code == 0 and (out["files"], out["accepted"]) == (1, 1), err
    code, out, err = _run(copy, capsys, "ingest")
    assert code == 0 and out["files"] == 0

    # query: the CLI's usage, and the analysts' sandboxed SQL
    assert _usage_total(copy, capsys, "ws_1") == Decimal(1005)
    code, rows, err = _run(
        copy,
        capsys,
        "sql",
        "SELECT count(*) AS n, count(DISTINCT source_file) AS files FROM ingest_manifest",
        "--format",
        "json",
    )
    assert code == 0, err
    assert rows == [{"n": 3, "files": 3}]
    code, rows, err = _run(
        copy,
        capsys,
        "sql",
        "SELECT count(*) AS n FROM ingest_manifest WHERE starts_with(source_file, "
        f"'{copy}/landing/')",
        "--format",
        "json",
    )
    assert code == 0 and rows == [{"n": 3}], err

    # invoices: the old one's archived PDF is found in this home; new ones are issued
    out_pdf = tmp_path / "jan-original.pdf"
    code, _, err = _run(
        copy, capsys, "invoice", "get", jan["number"], "--pdf", str(out_pdf), "--copy", "original"
    )
    assert code == 0, err
    assert out_pdf.read_bytes() == (copy / "invoices" / f"{jan['number']}.pdf").read_bytes()
    settings = load_settings(home=copy, env={"BILLING_LAKE_MEMORY_LIMIT": "512MB"})
    from billing_batch.invoicing.service import get_invoice
    from billing_batch.nightly.steps import close_periods, publish_files

    assert get_invoice(settings, jan["id"]).pdf_path == str(
        copy / "invoices" / f"{jan['number']}.pdf"
    )
    step, created = close_periods(settings, date(2024, 3, 1))  # the nightly's invoices step
    assert step.failures == [], step.failures
    assert len(created) >= 2  # ws_1 February, ws_2 January (and February: nothing)
    docs = publish_files(settings, processes=1)
    assert docs.failures == [] and docs.counts["rendered"] == len(created)
    for invoice_id in created:
        inv = get_invoice(settings, invoice_id)
        assert inv.pdf_path and Path(inv.pdf_path).parent == copy / "invoices"


def test_relocate_refuses_an_incomplete_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    write_log(home / "landing" / "a.jsonl", [event(id="a1", workspace="ws_1")])
    assert _run(home, capsys, "ingest")[0] == 0
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(home), str(copy)], check=True)
    shutil.rmtree(copy / "lake" / "data")  # the catalog without its data
    code, _, err = _run(copy, capsys, "lake", "relocate")
    assert code == 1 and "not under" in err and "copy or restore the whole home" in err
    # nothing changed: still refused, still relocatable once complete
    assert "lake relocate" in _run(copy, capsys, "ingest")[2]
    shutil.copytree(home / "lake" / "data", copy / "lake" / "data")
    assert _run(copy, capsys, "lake", "relocate")[0] == 0
    code, out, err = _run(copy, capsys, "ingest")
    assert code == 0 and out["files"] == 0, err


@pytest.mark.slow  # the installed command in a child process; in-process: the tests above
def test_relocate_as_a_subprocess_with_from(tmp_path: Path) -> None:
    """The real command line, and --from for a layout relocation cannot work out."""
    home = tmp_path / "a"
    write_log(home / "landing" / "a.jsonl", [event(id="a1", workspace="ws_1")])
    env = {"PATH": "/usr/bin:/bin", "BILLING_LAKE_MEMORY_LIMIT": "512MB"}

    def cli(h: Path, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "billing_batch", "--home", str(h), *argv],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )

    assert cli(home, "ingest").returncode == 0
    moved = tmp_path / "b"
    home.rename(moved)  # a move, not a copy
    proc = cli(moved, "lake", "relocate", "--from", str(home))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["manifest_rows"] == 1
    proc = cli(moved, "ingest")
    assert proc.returncode == 0 and json.loads(proc.stdout)["files"] == 0, proc.stderr
