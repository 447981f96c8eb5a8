"""A nightly run's record: each step's result (counts, failures, notes, seconds, peak
memory), the run's status, and its summary, written as JSON under ``runs/`` (local
disk or object storage) and as a row of the state's ``runs`` table."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from .._core import clock
from .._core.ids import new_id
from .._core.jsonutil import dumps
from ..config.settings import Settings
from ..storage import state as store
from ..storage.files import area


@dataclass
class StepResult:
    name: str
    counts: dict[str, Any] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: Peak RSS of this process (and of its finished children, e.g. PDF workers) by
    #: the end of the step, in MiB.
    peak_rss_mib: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "failures": self.failures,
            "notes": self.notes,
            "seconds": round(self.seconds, 3),
            "peakRssMiB": self.peak_rss_mib,
        }


def peak_rss_mib() -> float:
    """max(this process, its largest finished child) peak RSS so far, in MiB."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)


@dataclass
class RunSummary:
    run_id: str
    run_date: date
    started_at: datetime
    steps: list[StepResult] = field(default_factory=list)
    finished_at: datetime | None = None

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [dict(f, step=s.name) for s in self.steps for f in s.failures]

    @property
    def status(self) -> str:
        """``failed`` when a step failed (the audit's unexplained differences included:
        then ``audit_failed`` if nothing else failed), else ``succeeded``."""
        others = [f for s in self.steps if s.name != "audit" for f in s.failures]
        if others:
            return "failed"
        return "audit_failed" if self.failures else "succeeded"

    def step(self, name: str) -> StepResult | None:
        return next((s for s in self.steps if s.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "runDate": self.run_date,
            "status": self.status,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "steps": {s.name: s.to_dict() for s in self.steps},
            "failures": self.failures,
        }


def new_run(run_date: date, run_id: str | None = None) -> RunSummary:
    return RunSummary(
        run_id=run_id or new_id("run"), run_date=run_date, started_at=datetime.now(UTC)
    )


def record_abort(summary: RunSummary, exc: BaseException) -> StepResult:
    """Record the error that stopped the run, so that its summary says so.

    The failure goes to a step named after the flow task that raised it (``ingest_task``
    → ``ingest``), ``run`` when no task did; its note says the later steps did not run.
    The run's status is then ``failed``."""
    name = _failed_task(exc) or "run"
    error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    failure = {"error": error, "aborted": True}
    step = summary.step(name)
    if step is None:
        step = StepResult(name)
        summary.steps.append(step)
    step.failures.append(failure)
    step.notes.append(f"the run stopped in this step ({error}); the steps after it did not run")
    return step


def _failed_task(exc: BaseException) -> str | None:
    """The innermost flow task (a ``<name>_task`` function) in the exception's traceback."""
    import traceback

    name = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        code = frame.f_code.co_name
        if code.endswith("_task") and "nightly" in str(frame.f_globals.get("__name__", "")):
            name = code.removesuffix("_task")
    return name


def summary_path(settings: Settings, run_date: date, run_id: str) -> str:
    """Where the summary of run ``run_id`` for ``run_date`` is written (a local path, or
    an ``s3://`` URL with ``[files] url``)."""
    return area(settings, "runs").location(_summary_name(run_date, run_id))


def _summary_name(run_date: date, run_id: str) -> str:
    return f"{run_date}-{run_id}.json"


def read_summary(settings: Settings, run_date: date, run_id: str) -> dict[str, Any] | None:
    """A written run summary (with ``summaryFile``), or None when there is none."""
    from .._core.jsonutil import loads

    runs = area(settings, "runs")
    name = _summary_name(run_date, run_id)
    try:
        out: dict[str, Any] = loads(runs.read_bytes(name).decode("utf-8"))
    except FileNotFoundError:
        return None
    out["summaryFile"] = runs.location(name)
    return out


def write_summary(settings: Settings, summary: RunSummary) -> str:
    """Record the run in the state store and as JSON under runs/ (local: temp file +
    rename; object storage: one PUT)."""
    summary.finished_at = summary.finished_at or datetime.now(UTC)
    text = dumps(summary.to_dict(), indent=2)
    target = area(settings, "runs").write_text(
        _summary_name(summary.run_date, summary.run_id), text + "\n"
    )
    with store.opened(settings) as con, store.transaction(con):
        store.query(
            con,
            "runs/record_run",
            {
                "run_id": summary.run_id,
                "run_date": summary.run_date.isoformat(),
                "started_at": clock.ts(summary.started_at),
                "finished_at": clock.ts(summary.finished_at),
                "status": summary.status,
                "summary": text,
            },
        )
    return target


__all__ = [
    "RunSummary",
    "StepResult",
    "new_run",
    "peak_rss_mib",
    "read_summary",
    "record_abort",
    "summary_path",
    "write_summary",
]
