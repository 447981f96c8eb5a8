"""Progress on a terminal (rich), silent otherwise (logs, CI, Prefect workers)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Advance = Callable[[int], None]


def _noop(n: int = 1) -> None:
    return None


@contextmanager
def progress(description: str, total: int | None = None) -> Iterator[Advance]:
    """A progress bar (or a spinner when ``total`` is None) on stderr when it is a
    terminal; yields ``advance(n)``."""
    if not sys.stderr.isatty():
        yield _noop
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

        yield advance
