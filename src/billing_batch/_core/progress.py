"""Progress of long steps: a rich bar on a terminal, and milestones in the log.

The milestones ("rendering 10000 invoice(s): 2,500/10,000 (25%) after 61 s") go to the
``billing_batch.progress`` logger at most every tenth of the work and at least
:data:`MIN_INTERVAL` seconds apart, on a terminal or not: a nightly run served by Prefect
carries them in its flow-run logs (``billing-batch run`` and ``schedule`` add
``billing_batch`` to Prefect's extra loggers), where nobody sees a progress bar.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Advance = Callable[[int], None]

#: The log channel of progress milestones (attached to Prefect's run log).
log = logging.getLogger("billing_batch.progress")

#: Seconds between two logged milestones, at least.
MIN_INTERVAL = 10.0


class _Milestones:
    """Logs ``done/total`` at each tenth of ``total`` (no more often than MIN_INTERVAL)."""

    def __init__(self, description: str, total: int) -> None:  # total > 0
        self.description = description
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self.last_logged = self.started
        self.next_tenth = 1

    def advance(self, n: int) -> None:
        self.done += n
        tenth = self.done * 10 // self.total
        now = time.monotonic()
        if tenth >= self.next_tenth and self.done < self.total:
            self.next_tenth = tenth + 1
            if now - self.last_logged >= MIN_INTERVAL:
                self.last_logged = now
                log.info(
                    "%s: %s/%s (%d%%) after %.0f s",
                    self.description,
                    f"{self.done:,}",
                    f"{self.total:,}",
                    self.done * 100 // self.total,
                    now - self.started,
                )

    def finish(self) -> None:
        if self.done:
            log.info(
                "%s: %s done in %.1f s",
                self.description,
                f"{self.done:,}",
                time.monotonic() - self.started,
            )


@contextmanager
def progress(description: str, total: int | None = None) -> Iterator[Advance]:
    """A progress bar (or a spinner when ``total`` is None) on stderr when it is a
    terminal, and milestones in the log when ``total`` is known; yields ``advance(n)``."""
    milestones = _Milestones(description, total) if total else None

    def logged(n: int = 1) -> None:
        if milestones is not None:
            milestones.advance(n)

    if not sys.stderr.isatty():
        yield logged
        if milestones is not None:
            milestones.finish()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    columns.append(TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            bar.advance(task, n)
            logged(n)

        yield advance
    if milestones is not None:
        milestones.finish()
