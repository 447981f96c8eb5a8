"""Every snippet of docs/analysts.md runs, as written, against a real closed month.

The snippets are taken from the markdown here: shell blocks run in bash (the project's
`billing-batch` on PATH, `$BILLING_HOME` set, a scratch folder as the current
directory), SQL blocks in the raw session that `billing-batch analyst-init` prints and
(single SELECTs) through the sandbox, Python blocks in a Python process. The session
block the guide shows must be what `analyst-init` prints. The `pip install` line runs in
a fresh virtualenv (slow): it must bring everything the raw-session Python snippet uses.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import pytest

import billing_batch
from billing_batch.config.settings import Settings, load_settings
from billing_batch.nightly.steps import close_periods
from billing_batch.storage import mirror
from billing_batch.storage.analyst import analyst_init_sql
from billing_batch.storage.lake import extension_directory
from billing_batch.usage.ingest import ingest
from billing_batch.usage.rollup import refresh_rollup
from billing_batch.usage.sample import generate

DOCS = Path(__file__).resolve().parents[2] / "docs" / "analysts.md"
VENV_BIN = Path(sys.executable).parent


def blocks(lang: str) -> list[str]:
    return [b for lg, b in re.findall(r"```(\w*)\n(.*?)```", DOCS.read_text(), re.S) if lg == lang]


def test_every_snippet_says_its_language() -> None:
    langs = re.findall(r"```(\w*)\n.*?```", DOCS.read_text(), re.S)
    assert langs and set(langs) <= {"sql", "python", "bash"}, langs


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A sample January, ingested, rolled up, invoiced (finalized) and mirrored."""
    root = tmp_path_factory.mktemp("docs-month")
    settings = load_settings(env={"BILLING_HOME": str(root / "home")})
    generate(root / "logs", workspaces=5, events=5_000, seed=4, bad_lines=7)
    ingest(settings, [root / "logs"])
    refresh_rollup(settings)
    step, invoices = close_periods(settings, date(2024, 2, 1))
    assert not step.failures and len(invoices) == 5
    mirror.mirror_to_lake(settings)
    return settings


def env_for(settings: Settings, path_first: Path = VENV_BIN) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BILLING_", "PYTEST_"))}
    env["BILLING_HOME"] = str(settings.home)
    env["PATH"] = f"{path_first}{os.pathsep}{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_bash(block: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )


def run_python(block: str, python: str, cwd: Path, env: dict[str, str]) -> None:
    proc = subprocess.run(
        [python, "-c", block], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"{block}\n--- stderr:\n{proc.stderr}"


def test_the_session_block_is_what_analyst_init_prints(month: Settings) -> None:
    (session,) = [b for b in blocks("sql") if "ATTACH" in b]
    documented = session.replace("<extension_directory>", extension_directory()).replace(
        "<billing_home>", str(month.home)
    )
    printed = analyst_init_sql(month)
    assert [line for line in printed.splitlines() if not line.startswith("--")] == (
        documented.splitlines()
    )


def test_every_shell_and_python_snippet_runs(month: Settings, tmp_path: Path) -> None:
    env = env_for(month)
    shell = [b for b in blocks("bash") if "pip install" not in b]
    assert len(shell) >= 2
    for block in shell:  # in order: analyst-init writes billing-session.sql here
        proc = run_bash(block, tmp_path, env)
        assert proc.returncode == 0, f"{block}\n--- stderr:\n{proc.stderr}"
    assert (tmp_path / "usage_monthly.csv").read_text().startswith("workspace_id,")
    assert "ATTACH" in (tmp_path / "billing-session.sql").read_text()
    python = blocks("python")
    assert len(python) == 2
    for block in python:
        run_python(block, sys.executable, tmp_path, env)


def test_every_sql_snippet_runs_in_the_raw_session_and_the_sandbox(month: Settings) -> None:
    examples = [b for b in blocks("sql") if "ATTACH" not in b]
    assert len(examples) >= 12  # time travel, ten questions, the snapshots
    con = duckdb.connect()
    con.execute(analyst_init_sql(month))
    rows = {}
    try:
        for block in examples:
            rows[block] = con.execute(block).fetchall()
    finally:
        con.close()
    late = next(b for b in examples if "median_delay_hours" in b)
    assert len(rows[late]) == 31  # one row per January day
    with billing_batch.analyst_connection(home=month.home) as sandbox:
        checked = 0
        for block in examples:
            if "SET VARIABLE" in block:
                continue  # refused there, as the guide says
            assert sandbox.sql(block).fetchall() == rows[block], block
            checked += 1
    assert checked >= 11


@pytest.mark.slow
def test_the_pip_line_brings_what_the_raw_python_snippet_needs(
    month: Settings, tmp_path: Path
) -> None:
    """A fresh virtualenv, the guide's `pip install` block as written, then the raw
    session's Python snippet with that virtualenv's Python (`.pl()` needs pyarrow)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    env = env_for(month, path_first=venv / "bin")
    (pip_block,) = [b for b in blocks("bash") if "pip install" in b]
    proc = run_bash(pip_block, tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    printed = Path(proc.stdout.strip().splitlines()[-1])
    assert (printed / "v1.4.4").exists() or any(printed.iterdir())
    (init,) = [b for b in blocks("bash") if "analyst-init" in b]
    assert run_bash(init, tmp_path, env).returncode == 0
    raw = next(b for b in blocks("python") if "billing-session.sql" in b)
    run_python(raw, str(venv / "bin" / "python"), tmp_path, env)
