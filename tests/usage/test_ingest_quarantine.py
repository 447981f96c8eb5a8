"""Bad input is kept aside, never fatal: over-long lines, unreadable or corrupt files and
folders, files whose every line is rejected. Through the real CLI (a subprocess), with
real files and real permissions."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from billing_batch.config.settings import Settings
from billing_batch.storage.lake import Lake
from billing_batch.usage.ingest import ingest
from tests.conftest import event, random_events, write_log


def q(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    con = Lake(settings).connect(read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _unprivileged() -> list[str]:
    """A command prefix under which file modes apply: nothing for a normal user; for
    root, the same user with every capability dropped (root ignores file modes only
    through CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv (util-linux) is missing: modes cannot apply")
    return [setpriv, "--bounding-set", "-all", "--"]


def cli(
    settings: Settings, *args: str, prefix: list[str] | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "BILLING_HOME": str(settings.home), **env}
    cmd = [*(prefix or []), sys.executable, "-m", "billing_batch", *args]
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=600)


# --- over-long lines ---------------------------------------------------------------------
@pytest.mark.slow  # 50 MB written and scanned; long lines: the next test
def test_a_50_mb_line_is_rejected_on_its_own(settings: Settings, tmp_path: Path) -> None:
    """The issue's case: one landing file with a 50 MB line. The line is rejected with
    its file, number and reason (the default 1 MiB limit), never read into memory; the
    rest of the file and the batch are ingested."""
    landing = settings.landing_dir
    good = write_log(landing / "a.jsonl", list(random_events(500, seed=1)))
    big = landing / "b.jsonl"
    with big.open("w") as fh:
        fh.write(json.dumps(event(id="before")) + "\n")
        fh.write('{"id": "huge", "workspaceId": "ws_1", "pad": "' + "x" * (50 * 1024 * 1024))
        fh.write('"}\n' + json.dumps(event(id="after")) + "\n")
    proc = cli(settings, "ingest")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["accepted"], out["rejected"], out["failed_files"]) == (502, 1, [])
    rows = q(settings, "SELECT source_file, line_no, reason, length(raw) FROM rejects")
    assert len(rows) == 1
    source, line, reason, kept = rows[0]
    assert (Path(source).name, line) == ("b.jsonl", 2)
    assert "line too long: 52,428,8" in reason and "max_line_bytes" in reason
    assert kept < 2000  # the start of the line and a note, not 50 MB
    assert "1 line(s) rejected" in proc.stderr and out["rejects_file"] in proc.stderr
    assert good.exists() and big.exists()  # landing files stay where they are


@pytest.mark.parametrize("chunk", [64, 1000, 1 << 20])
def test_long_lines_at_chunk_edges_keep_line_numbers(
    settings: Settings, tmp_path: Path, chunk: int
) -> None:
    """Long lines shorter or longer than the read chunk, at the start, the end and in
    the middle of the file (the last one without a newline): the others keep their
    numbers and go through either path alike."""
    ok = [json.dumps(event(id=f"e{i}")) for i in range(6)]
    long = '{"id": "' + "y" * 3000 + '"}'
    lines = [long, ok[0], ok[1], long, long, ok[2], ok[3], "  " + long, ok[4], ok[5], long]
    f = tmp_path / "long.jsonl"
    f.write_text("\n".join(lines))  # no final newline
    s = settings.model_copy(
        update={
            "ingest": settings.ingest.model_copy(
                update={"chunk_bytes": chunk, "max_line_bytes": 2048}
            )
        }
    )
    r = ingest(s, [f])
    d = r.to_dict()
    assert (d["lines"], d["accepted"], d["rejected"]) == (11, 6, 5)
    got = q(settings, "SELECT line_no FROM rejects ORDER BY 1")
    assert [g[0] for g in got] == [1, 4, 5, 8, 11]
    assert q(settings, "SELECT list(line_no ORDER BY line_no) FROM events") == [
        ([2, 3, 6, 7, 9, 10],)
    ]


# --- files and folders that cannot be read -------------------------------------------
def test_corrupt_gzip_is_quarantined_and_the_batch_goes_on(settings: Settings) -> None:
    landing = settings.landing_dir
    write_log(landing / "day1.jsonl", list(random_events(300, seed=2)))
    bad = landing / "sub" / "day2.jsonl.gz"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(gzip.compress(b'{"x": 1}\n' * 5000)[:-40])  # truncated
    proc = cli(settings, "ingest")
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["accepted"] == 300 and out["files"] == 1
    [failed] = out["failed_files"]
    assert failed["file"] == str(bad) and "corrupt gzip" in failed["error"]
    moved = settings.quarantine_dir / "sub" / "day2.jsonl.gz"
    assert failed["quarantined_to"] == str(moved)
    assert not bad.exists() and moved.exists()
    reason = json.loads((moved.parent / "day2.jsonl.gz.reason.json").read_text())
    assert reason["file"] == str(bad) and "corrupt gzip" in reason["reason"]
    assert str(bad) in proc.stderr and "quarantine" in proc.stderr
    # the next run does not trip on it again
    again = cli(settings, "ingest")
    assert again.returncode == 0 and json.loads(again.stdout)["files"] == 0


def test_unreadable_file_and_folder_are_reported_by_name(settings: Settings) -> None:
    prefix = _unprivileged()
    landing = settings.landing_dir
    write_log(landing / "ok.jsonl", list(random_events(200, seed=3)))
    secret = write_log(landing / "locked.jsonl", [event(id="locked")])
    folder = landing / "team-b"
    write_log(folder / "hidden.jsonl", [event(id="hidden")])
    secret.chmod(0o000)
    folder.chmod(0o000)
    try:
        proc = cli(settings, "ingest", prefix=prefix)
    finally:
        folder.chmod(0o755)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    out = json.loads(proc.stdout)
    assert out["accepted"] == 200
    errors = {Path(f["file"]).name: f for f in out["failed_files"]}
    assert set(errors) == {"locked.jsonl", "team-b"}
    assert "not readable" in errors["locked.jsonl"]["error"]
    assert "folder cannot be read" in errors["team-b"]["error"]
    assert errors["team-b"]["quarantined_to"] is None  # a folder stays; it is reported
    moved = settings.quarantine_dir / "locked.jsonl"
    assert errors["locked.jsonl"]["quarantined_to"] == str(moved) and moved.exists()
    assert str(folder) in proc.stderr and str(secret) in proc.stderr
    # once readable again, the folder's file is ingested by the next run
    proc2 = cli(settings, "ingest")
    assert proc2.returncode == 0 and json.loads(proc2.stdout)["accepted"] == 1


def test_unreadable_file_named_on_the_command_line(settings: Settings, tmp_path: Path) -> None:
    """A file given by name outside the landing folder is reported, not moved; the
    other files of the call are ingested."""
    prefix = _unprivileged()
    good = write_log(tmp_path / "good.jsonl", [event(id="g")])
    locked = write_log(tmp_path / "locked.jsonl", [event(id="l")])
    locked.chmod(0o000)
    proc = cli(settings, "ingest", str(good), str(locked), prefix=prefix)
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["accepted"] == 1
    assert [f["file"] for f in out["failed_files"]] == [str(locked)]
    assert out["failed_files"][0]["quarantined_to"] is None and locked.exists()


# --- every line rejected -------------------------------------------------------------
def test_a_utf16_file_says_so_on_stderr(settings: Settings) -> None:
    landing = settings.landing_dir
    text = "".join(json.dumps(event(id=f"u{i}")) + "\n" for i in range(12))
    utf16 = landing / "export.jsonl"
    utf16.parent.mkdir(parents=True, exist_ok=True)
    utf16.write_bytes(text.encode("utf-16"))  # "\n\0" ends a line: a 13th line, "\0"
    write_log(landing / "fine.jsonl", [event(id="fine")])
    proc = cli(settings, "ingest")
    assert proc.returncode == 0
    out = json.loads(proc.stdout)
    assert out["accepted"] == 1 and out["rejected"] == 13
    [only] = out["all_lines_rejected"]
    assert only["file"] == str(utf16) and only["rejected"] == 13
    assert f"all 13 line(s) of {utf16} were rejected" in proc.stderr
    assert out["rejects_file"] in proc.stderr
    kept = [json.loads(x) for x in Path(out["rejects_file"]).read_text().splitlines()]
    assert len(kept) == 13 and {k["source_file"] for k in kept} == {str(utf16)}
