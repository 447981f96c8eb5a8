"""A busy machine must not stop the nightly run: a slow Prefect server start is waited
for (and said), a second run started meanwhile exits at once, and a start that never
comes fails clearly without leaving its server behind.

Each test runs the real `billing-batch run` in a subprocess; Prefect's server start is
made slow by a hook in the server process itself (``sitecustomize``, see
``unattended_support.SLOW_SERVER_HOOK``), past Prefect's own 20 s wait."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.nightly.support import (
    BB,
    have_proc,
    marked_processes,
    new_marker,
    run_env,
    sample_home,
    start_run,
    wait_for_no_survivors,
    wait_until,
)

pytestmark = pytest.mark.skipif(not have_proc(), reason="the process census needs /proc")

#: Longer than Prefect's own wait for its temporary server (20 s).
SLOW_START_SECONDS = 25


@pytest.mark.slow
def test_a_slow_server_start_is_waited_for_and_a_second_run_exits_at_once(
    tmp_path: Path,
) -> None:
    home = sample_home(tmp_path)
    marker = new_marker()
    err_path = tmp_path / "first.err"
    with err_path.open("wb") as err:
        first = start_run(
            home,
            run_env(tmp_path, marker, server_delay=SLOW_START_SECONDS),
            err,
            "--date",
            "2024-02-01",
        )
        try:
            # the first run holds the lock while Prefect's server is still starting
            wait_until(
                lambda: "starting Prefect's temporary API server" in err_path.read_text(),
                120,
                "the first run to start Prefect's server",
            )
            second = subprocess.run(
                [BB, "--home", str(home), "run", "--date", "2024-02-01"],
                env=run_env(tmp_path, marker),
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert first.poll() is None, "the first run ended before the second one was tried"
            first.wait(timeout=900)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
    assert second.returncode == 3, second.stderr
    assert f"another nightly run is in progress (pid {first.pid})" in second.stderr
    assert "Prefect" not in second.stderr  # it stopped before anything slow
    assert "Traceback" not in second.stderr

    text = err_path.read_text()
    assert first.returncode == 0, text
    # said while it waited, past Prefect's own limit
    waited = [int(w) for w in re.findall(r"API server \.\.\. \(waited (\d+) s\)", text)]
    assert len(waited) >= 2 and waited == sorted(waited) and waited[-1] >= 20, text
    up = re.search(r"Prefect's temporary API server is up after (\d+) s", text)
    assert up is not None and int(up.group(1)) >= SLOW_START_SECONDS, text
    assert "Timed out" not in text
    (summary_file,) = (home / "runs").glob("2024-02-01-*.json")
    summary = json.loads(summary_file.read_text())
    assert summary["status"] == "succeeded"
    assert summary["steps"]["invoices"]["counts"]["invoices_finalized"] == 3
    # and the server went with the run
    wait_for_no_survivors(marker)


def test_a_server_that_never_answers_fails_clearly_and_is_stopped(tmp_path: Path) -> None:
    home = sample_home(tmp_path, events=100)
    marker = new_marker()
    env = run_env(tmp_path, marker, server_delay=600)
    env["BILLING_SCHEDULE_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "3"
    err_path = tmp_path / "run.err"
    with err_path.open("wb") as err:
        run = start_run(home, env, err, "--date", "2024-02-01")
        try:
            # the server process exists while the run waits for it
            wait_until(
                lambda: (
                    any("create_app" in c for c in marked_processes(marker).values())
                    or run.poll() is not None
                ),
                120,
                "Prefect's server process",
            )
            seen = [c for c in marked_processes(marker).values() if "create_app" in c]
            run.wait(timeout=300)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
    text = err_path.read_text()
    assert seen, "no server process was seen"
    assert run.returncode == 1, text
    assert "Prefect's temporary API server did not answer within 3 s" in text
    assert "ephemeral_startup_timeout_seconds" in text  # says what to change
    assert "Traceback" not in text
    wait_for_no_survivors(marker, timeout=30)
    # the lock went with the run: the next run is not refused
    from billing_batch.config.settings import load_settings
    from billing_batch.nightly.steps import run_lock

    with run_lock(load_settings(env={"BILLING_HOME": str(home)})):
        pass
