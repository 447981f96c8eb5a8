"""Recorded usage: events sent to ``POST /v1/billing/usage``, validated exactly like ingest
and appended durably to the landing zone, where the next ingest picks them up.

* **Same rules, same messages.** Each event becomes one JSON line, and the lines go
  through ``sql/ingest_validate.sql`` (the very query ingest runs on every chunk, with
  the same parameters) on an in-memory DuckDB. The line is re-serialized token for
  token: numbers keep their exact text (``1e400``, ``0.1234567891``, ``NaN`` reach the
  query as sent), objects keep their keys in order, duplicates included. So an event is
  accepted here exactly when ingest would accept the same line, and a refusal carries
  ingest's reason.
* **All or nothing.** A request with any invalid event records nothing
  (:class:`InvalidUsageError` lists every invalid event with its index and reason).
* **Identity.** An event with an ``id`` keeps it. An event without one gets
  ``stable_id("usg", workspaceId, Idempotency-Key, index)`` when the request carries an
  idempotency key (a retried request yields the same ids, and ingest de-duplicates
  them), else a new random id (two identical requests without a key are two events,
  never folded together by ingest's content-hash identity of id-less lines).
* **Durable before accepted.** The lines are written to
  ``<landing>/api/<UTC date>/<rec_...>.jsonl``: a temp name in the same folder, flushed,
  fsynced, renamed, then the folder fsynced (and its parents when they were created).
  Only then does the API answer 202. Ingest ignores the dot-prefixed temp names.

Usage shows in ``getUsage`` after the next ingest (``billing-batch ingest`` or the
nightly run) and rollup.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._core.errors import InputError, LakeError
from .._core.files import atomic_write_bytes, make_dirs
from .._core.ids import new_id, stable_id
from .._core.jsonutil import dumps
from ..config.settings import Settings

if TYPE_CHECKING:
    import duckdb

#: Most events accepted in one request.
MAX_EVENTS = 1000
#: Largest request body accepted, in bytes.
MAX_BODY_BYTES = 4 * 1024 * 1024
#: Longest ``Idempotency-Key`` accepted.
MAX_IDEMPOTENCY_KEY_LENGTH = 255


@dataclass(frozen=True)
class EventError:
    """One refused event: its position in the request and ingest's reason."""

    index: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "reason": self.reason}


class InvalidUsageError(InputError):
    """A request holding invalid events: nothing was recorded."""

    code = "invalid_usage"

    def __init__(self, message: str, errors: Sequence[EventError] = ()) -> None:
        super().__init__(message)
        self.errors = list(errors)


@dataclass(frozen=True)
class PreparedUsage:
    """Validated events, ready to append: one JSON line, id and workspace per event."""

    lines: tuple[bytes, ...]
    ids: tuple[str, ...]
    workspaces: tuple[str, ...]


@dataclass(frozen=True)
class RecordedUsage:
    ids: tuple[str, ...]
    path: str  # the landing file (a local path, or an s3:// URL with [files] url)

    @property
    def accepted(self) -> int:
        return len(self.ids)


# --- parsing, token for token ------------------------------------------------------------
class _Number(str):
    """A JSON number (or NaN/Infinity) kept as the text it was sent as."""


class _Object(list[tuple[str, Any]]):
    """A JSON object as its (key, value) pairs, in order, duplicates kept."""

    def get(self, key: str) -> Any:
        for k, v in reversed(self):
            if k == key:
                return v
        return None

    def keys(self) -> list[str]:
        return [k for k, _ in self]


def _parse(body: bytes | str) -> Any:
    return json.loads(
        body,
        parse_float=_Number,
        parse_int=_Number,
        parse_constant=_Number,
        object_pairs_hook=_Object,
    )


def _encode(value: Any) -> str:
    if isinstance(value, _Number):
        return str.__str__(value)
    if isinstance(value, _Object):
        return "{" + ",".join(f"{_encode(k)}:{_encode(v)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    return dumps(value)  # strings, true/false/null


def _line(value: Any) -> bytes:
    # A lone surrogate (from a "\ud800" escape) cannot be UTF-8: write it back as the
    # escape it came from, so the line's text is what the producer sent.
    return _encode(value).encode("utf-8", "backslashreplace")


def split_events(body: bytes | str) -> tuple[list[Any], bool]:
    """The events of a request body: ``{"events": [...]}`` (a batch) or one event (any
    other JSON value, validated as a line). Returns (events, is_batch)."""
    if not body.strip():
        raise InputError('the request body is empty: send one event or {"events": [...]}')
    try:
        value = _parse(body)
    except (ValueError, RecursionError) as exc:
        raise InputError(f"the request body is not valid JSON: {exc}") from None
    if not (isinstance(value, _Object) and "events" in value.keys()):
        return [value], False
    extra = sorted({k for k in value.keys() if k != "events"})
    if extra:
        raise InputError(
            f"unknown field(s) {', '.join(map(repr, extra))} in the batch: "
            'send {"events": [...]} only'
        )
    events = value.get("events")
    if not isinstance(events, list) or isinstance(events, _Object):
        raise InputError('"events" must be an array of events')
    if not events:
        raise InputError('"events" is empty: a batch needs at least one event')
    if len(events) > MAX_EVENTS:
        raise InputError(f"a batch holds at most {MAX_EVENTS} events, got {len(events)}")
    return list(events), True


def _with_id(event: Any, index: int, idempotency_key: str | None) -> tuple[Any, str | None]:
    """The event with its id (kept, derived from the idempotency key, or new)."""
    if not isinstance(event, _Object):
        return event, None  # not an object: refused by the validation below
    current = event.get("id")
    if current is not None:  # kept as sent (the validation refuses a non-string id)
        return event, current if type(current) is str else None
    if idempotency_key is not None:
        workspace = event.get("workspaceId")
        event_id = stable_id("usg", _encode(workspace), idempotency_key, index)
    else:
        event_id = new_id("usg")
    pairs = [(k, v) for k, v in event if k != "id"]
    return _Object([("id", event_id), *pairs]), event_id


# --- validation: ingest's own query ----------------------------------------------------
_db_lock = threading.Lock()
_db: duckdb.DuckDBPyConnection | None = None


def _cursor() -> duckdb.DuckDBPyConnection:
    """A connection to a private in-memory DuckDB (no lake, no files): cheap per call."""
    import duckdb

    from ..storage.lake import memory_connection

    global _db
    with _db_lock:
        try:
            if _db is None:
                _db = memory_connection()
            return _db.cursor()
        except duckdb.Error as exc:
            raise LakeError(f"cannot start DuckDB to validate usage: {exc}") from exc


def _chunk(lines: Sequence[bytes]) -> Any:
    """The ``chunk`` table ``sql/ingest_validate.sql`` reads (its header states the
    contract): file_seq, line_no (the event's index), raw (the line with its newline),
    bad_utf8 (never: the lines are UTF-8 by construction)."""
    import pyarrow as pa

    n = len(lines)
    return pa.table(
        {
            "file_seq": pa.array([0] * n, type=pa.int32()),
            "line_no": pa.array(range(n), type=pa.int64()),
            "raw": pa.array([line.decode("utf-8") + "\n" for line in lines], pa.large_string()),
            "bad_utf8": pa.nulls(n, pa.bool_()),
        }
    )


def validate_lines(settings: Settings, lines: Sequence[bytes]) -> list[tuple[str | None, Any]]:
    """Run ingest's validation over ``lines`` (JSON texts without newlines): per line,
    (reason or None, workspace id when valid). The query and its parameters are ingest's
    own (``ingest.validation_params``), bound by ``sqlfiles.run_sql`` like every query file."""
    import duckdb

    from ..storage.sqlfiles import run_sql
    from .ingest import validation_params

    con = _cursor()
    try:
        con.register("chunk", _chunk(lines))
        cur = run_sql(con, "ingest_validate", validation_params(settings))
        columns = [d[0] for d in cur.description or []]
        rows = cur.fetchall()
    except duckdb.Error as exc:
        raise LakeError(f"usage validation failed: {exc}") from exc
    finally:
        con.close()
    at = {name: columns.index(name) for name in ("line_no", "reason", "workspace_id")}
    by_line = {int(r[at["line_no"]]): (r[at["reason"]], r[at["workspace_id"]]) for r in rows}
    if sorted(by_line) != list(range(len(lines))):
        raise LakeError(f"usage validation returned {len(rows)} rows for {len(lines)} events")
    return [by_line[i] for i in range(len(lines))]


def prepare_usage(
    settings: Settings, body: bytes | str, *, idempotency_key: str | None = None
) -> PreparedUsage:
    """Parse, identify and validate the events of a request body.

    Raises InputError for a body that is not one event nor a batch, and
    InvalidUsageError (listing every invalid event) when any event is invalid.
    """
    if idempotency_key is not None and not (
        0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY_LENGTH
        and idempotency_key.isprintable()
        and idempotency_key.isascii()
    ):
        raise InputError(
            f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters"
        )
    events, is_batch = split_events(body)
    with_ids = [_with_id(e, i, idempotency_key) for i, e in enumerate(events)]
    lines = [_line(e) for e, _ in with_ids]
    results = validate_lines(settings, lines)
    errors = [EventError(i, reason) for i, (reason, _) in enumerate(results) if reason]
    if errors:
        if not is_batch:
            message = f"invalid usage event: {errors[0].reason}"
        else:
            n = len(errors)
            message = (
                f"{n} of {len(events)} events {'is' if n == 1 else 'are'} invalid "
                f"(first: event {errors[0].index}: {errors[0].reason}); nothing was recorded"
            )
        raise InvalidUsageError(message, errors)
    ids = [event_id for _, event_id in with_ids]
    assert all(ids), "a valid event always has an id here"
    return PreparedUsage(
        lines=tuple(lines),
        ids=tuple(str(i) for i in ids),
        workspaces=tuple(str(ws) for _, ws in results),
    )


# --- the durable append ------------------------------------------------------------------
def landing_folder(settings: Settings, now: datetime) -> Path:
    return settings.landing_dir / "api" / now.astimezone(UTC).date().isoformat()


def append_usage(
    settings: Settings, prepared: PreparedUsage, *, now: datetime | None = None
) -> RecordedUsage:
    """Append the events to a new landing file, durably (see the module docstring)."""
    from ..storage.files import area  # here: the HTTP client imports this module's errors

    now = now or datetime.now(UTC)
    data = b"".join(line + b"\n" for line in prepared.lines)
    name = f"{new_id('rec')}.jsonl"
    landing = area(settings, "landing")
    if landing.remote:  # [files] url: one PUT of the whole object where the ingest lists
        day = now.astimezone(UTC).date().isoformat()
        return RecordedUsage(
            ids=prepared.ids, path=landing.write_many([(f"api/{day}/{name}", data)])[0]
        )
    folder = landing_folder(settings, now)
    make_dirs(folder)
    path = folder / name
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise LakeError(f"cannot write recorded usage to the landing zone: {exc}") from exc
    return RecordedUsage(ids=prepared.ids, path=str(path))


def record_usage(
    settings: Settings,
    body: bytes | str,
    *,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> RecordedUsage:
    """Validate the events of ``body`` and append them to the landing zone (all or none)."""
    return append_usage(
        settings, prepare_usage(settings, body, idempotency_key=idempotency_key), now=now
    )
