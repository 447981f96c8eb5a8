"""Many invoices at once: :func:`render_many` spreads them over worker processes, each
rendering batches with its own engine (built once at start), and returns one result per
invoice in order; a failing invoice is its own result's error and never stops the others.

Workers never outlive the run, even a ``kill -9`` of it: each asks the kernel to kill it
when its parent dies (``_core.children.die_with_parent``). A worker keeps its imported
modules and engine out of the garbage collector's view and collects less often.
"""

from __future__ import annotations

import gc
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._core.children import die_with_parent
from .._core.errors import RenderError
from ..storage.files import FileArea
from ..storage.uploader import shared_uploader
from .pdf import invoice_files, prepare_engine, publish_invoice_files, write_invoice_files
from .view import display_text


@dataclass(frozen=True)
class RenderResult:
    """One item of :func:`render_many`: its paths, or the error that stopped it."""

    index: int
    invoice_id: str
    #: A local path, or an ``s3://`` URL when written to object storage.
    json_path: Path | str | None
    pdf_path: Path | str | None
    error: str | None
    #: Rendering it, and writing it to local disk (an upload to object storage is not
    #: counted: it happens in another process while the next invoices render).
    seconds: float

    @property
    def ok(self) -> bool:
        return self.error is None


#: (index, document, where: a local folder or a files area, basename)
_Item = tuple[int, Mapping[str, Any], "Path | FileArea", str]

#: With ``processes=0``, each worker process gets at least this many invoices (starting one
#: costs about as much as rendering 15): a handful of invoices render in this process.
_MIN_PER_WORKER = 16


def _failed(index: int, invoice_id: str, exc: Exception, started: float) -> RenderResult:
    message = exc.message if isinstance(exc, RenderError) else f"{type(exc).__name__}: {exc}"
    return RenderResult(index, invoice_id, None, None, message, time.perf_counter() - started)


def _render_one(item: _Item) -> RenderResult:
    index, doc, out_dir, basename = item
    started = time.perf_counter()
    invoice_id = _invoice_id(doc)
    try:
        json_path: Path | str
        pdf_path: Path | str
        if isinstance(out_dir, FileArea):
            json_path, pdf_path = publish_invoice_files(doc, out_dir, basename)
        else:
            json_path, pdf_path = write_invoice_files(doc, out_dir, basename)
    except Exception as exc:
        return _failed(index, invoice_id, exc, started)
    return RenderResult(index, invoice_id, json_path, pdf_path, None, time.perf_counter() - started)


def _uploaded(
    item: _Item, pending: Future[list[str]] | RenderResult, seconds: float
) -> RenderResult:
    """An item's result once its upload has answered (or its failed render as it is);
    ``seconds`` is its rendering's."""
    if isinstance(pending, RenderResult):
        return pending
    index, doc, _area, _basename = item
    try:
        json_loc, pdf_loc = pending.result()
    except Exception as exc:
        return RenderResult(
            index, _invoice_id(doc), None, None, f"{type(exc).__name__}: {exc}", seconds
        )
    return RenderResult(index, _invoice_id(doc), json_loc, pdf_loc, None, seconds)


def _render_batch(batch: list[_Item]) -> list[RenderResult]:
    """Each item rendered and written, in order. To object storage, this process renders
    and an upload process (``storage.uploader``) PUTs the files of finished invoices
    meanwhile: the same files, each one PUT, the JSON first; a failed upload is that
    invoice's error. Measured here against SeaweedFS, one rendering process: 59.0 ms per
    invoice to local disk, 62.1 ms uploading on two threads of this process, 57.2 ms
    with the upload process."""
    if not any(isinstance(i[2], FileArea) and i[2].remote for i in batch):
        return [_render_one(item) for item in batch]
    uploads: list[tuple[_Item, Future[list[str]] | RenderResult, float]] = []
    for item in batch:
        index, doc, area, basename = item
        if not (isinstance(area, FileArea) and area.remote):  # a local one in the batch
            uploads.append((item, _render_one(item), 0.0))
            continue
        started = time.perf_counter()
        try:
            json_data, pdf_data = invoice_files(doc, basename)
            files = [(f"{basename}.json", json_data), (f"{basename}.pdf", pdf_data)]
            upload: Future[list[str]] | RenderResult = shared_uploader(area.s3).submit(area, files)
        except Exception as exc:
            upload = _failed(index, _invoice_id(doc), exc, started)
        uploads.append((item, upload, time.perf_counter() - started))
    return [_uploaded(item, upload, seconds) for item, upload, seconds in uploads]


#: The cyclic garbage collector's young-generation threshold in a render worker (default
#: 700). A PDF allocates tens of thousands of short-lived containers (WeasyPrint's boxes
#: and styles), so the default collects every few boxes; measured here, 50,000 saves ~2%
#: of a worker's CPU for ~15 MB more memory.
_WORKER_GC_THRESHOLD = 50_000


def _worker_init(parent_pid: int) -> None:
    die_with_parent(parent_pid)  # a worker never outlives the run, even its kill -9
    prepare_engine()  # import WeasyPrint and parse the stylesheet once per worker
    # What the worker keeps for its whole life (modules, the engine) leaves the
    # collector's view, and the young generation is collected less often.
    gc.freeze()
    gc.set_threshold(_WORKER_GC_THRESHOLD, 10, 10)


def _start_method() -> str:
    """``fork`` when this process has a single OS thread (cheap: the worker inherits the
    imported WeasyPrint), else ``spawn`` (forking a threaded process is unsafe)."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return "spawn"
    try:
        threads = len(os.listdir("/proc/self/task"))
    except OSError:
        import threading

        threads = threading.active_count()
    return "fork" if threads == 1 else "spawn"


def _invoice_id(doc: Any) -> str:
    return display_text(doc.get("id")) if isinstance(doc, Mapping) else ""


def _workers(processes: int, count: int) -> int:
    if processes:
        return min(processes, count)
    # auto: a worker costs about 1 s to start, ~15 PDFs: not worth it for a few
    return min(os.cpu_count() or 1, math.ceil(count / _MIN_PER_WORKER))


def _in_pool(
    indexed: list[_Item],
    workers: int,
    start_method: str | None,
    progress: Callable[[int], None] | None,
) -> list[RenderResult]:
    # Several batches per worker: one slow invoice does not hold up a whole share.
    size = max(1, math.ceil(len(indexed) / (workers * 4)))
    batches = [indexed[i : i + size] for i in range(0, len(indexed), size)]
    context = multiprocessing.get_context(start_method or _start_method())
    results: list[RenderResult] = []
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_worker_init,
        initargs=(os.getpid(),),
    ) as pool:
        futures: dict[Future[list[RenderResult]], list[_Item]] = {
            pool.submit(_render_batch, batch): batch for batch in batches
        }
        for future in as_completed(futures):
            try:
                results.extend(future.result())
                if progress:
                    progress(len(futures[future]))
            except Exception as exc:  # a worker died (BrokenProcessPool) or pickling
                error = f"{type(exc).__name__}: {exc}"
                results += [
                    RenderResult(index, _invoice_id(doc), None, None, error, 0.0)
                    for index, doc, _, _ in futures[future]
                ]
    results.sort(key=lambda r: r.index)
    return results


def render_many(
    items: Sequence[tuple[Mapping[str, Any], Path | FileArea, str]],
    processes: int = 0,
    *,
    start_method: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[RenderResult]:
    """Render and write many invoices (``(doc, out_dir, basename)`` each; ``out_dir`` a
    local folder or a :class:`~billing_batch.storage.files.FileArea`) across
    ``processes`` worker processes (0 = one per core, fewer when there are few invoices;
    1 = in this process). Results come back in the order of ``items``; a failing invoice
    is that item's ``error`` and never stops the others.

    ``start_method``: None = ``fork`` if this process has a single thread, else ``spawn``
    (polars, DuckDB and Prefect start threads, and forking a threaded process is unsafe).
    ``progress(n)`` is called as batches of ``n`` invoices finish.

    To object storage, a rendering process keeps its upload process
    (``storage.uploader``) for later calls; ``close_uploaders()`` stops this process's,
    and it stops at exit anyway."""
    if processes < 0:
        raise ValueError("processes must be ≥ 0")
    indexed: list[_Item] = [
        (i, doc, d if isinstance(d, FileArea) else Path(d), b)
        for i, (doc, d, b) in enumerate(items)
    ]
    if not indexed:
        return []
    workers = _workers(processes, len(indexed))
    if workers > 1:
        return _in_pool(indexed, workers, start_method, progress)
    done = _render_batch(indexed)
    if progress:
        progress(len(done))
    return done


__all__ = ["RenderResult", "render_many"]
