"""Progress milestones in the log (what a Prefect flow run shows instead of a bar)."""

from __future__ import annotations

import logging

import pytest

from billing_batch._core import progress as progress_mod
from billing_batch._core.progress import progress


def test_milestones_every_tenth_then_done(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress_mod, "MIN_INTERVAL", 0.0)
    caplog.set_level(logging.INFO, logger="billing_batch.progress")
    with progress("rendering 1000 invoice(s)", total=1000) as advance:
        for _ in range(40):
            advance(25)
    lines = [r.getMessage() for r in caplog.records if r.name == "billing_batch.progress"]
    assert lines[0].startswith("rendering 1000 invoice(s): 100/1,000 (10%) after ")
    assert [line.split(": ", 1)[1].split(" after")[0] for line in lines[:-1]] == [
        f"{n:,}/1,000 ({n // 10}%)" for n in range(100, 1000, 100)
    ]
    assert lines[-1].startswith("rendering 1000 invoice(s): 1,000 done in ")


def test_milestones_are_spaced_in_time(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the default interval (10 s) swallows the tenths of a quick step: only "done" is logged
    caplog.set_level(logging.INFO, logger="billing_batch.progress")
    with progress("quick", total=10) as advance:
        for _ in range(10):
            advance(1)
    lines = [r.getMessage() for r in caplog.records if r.name == "billing_batch.progress"]
    assert len(lines) == 1 and lines[0].startswith("quick: 10 done in ")


def test_spinner_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="billing_batch.progress")
    with progress("ingesting") as advance:
        advance(5)
    assert not [r for r in caplog.records if r.name == "billing_batch.progress"]
