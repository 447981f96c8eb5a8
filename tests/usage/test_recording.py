"""Recorded usage: ingest's validation, ids and idempotency, the durable landing file."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from billing_batch._core.errors import InputError
from billing_batch.config.settings import Settings
from billing_batch.storage.lake import Lake
from billing_batch.usage.ingest import ingest
from billing_batch.usage.recording import (
    MAX_EVENTS,
    InvalidUsageError,
    prepare_usage,
    record_usage,
    split_events,
)
from tests.conftest import event, write_log
from tests.usage.test_ingest import REJECTS

NOW = datetime(2024, 1, 20, 12, 0, tzinfo=UTC)


def body(value: Any) -> bytes:
    return (value if isinstance(value, str) else json.dumps(value)).encode()


def ingest_reasons(settings: Settings, tmp_path: Path, lines: list[Any]) -> list[str | None]:
    """What ingest says about each line (None: accepted or duplicate)."""
    f = write_log(tmp_path / "parity.jsonl", lines)
    ingest(settings, [f])
    con = Lake(settings).connect(read_only=True)
    try:
        got = dict(con.execute("SELECT line_no, reason FROM rejects").fetchall())
    finally:
        con.close()
    return [got.get(i) for i in range(1, len(lines) + 1)]


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def test_same_rules_and_messages_as_ingest(settings: Settings, tmp_path: Path) -> None:
    """Every JSON line of ingest's rejection table, plus numbers whose text matters, sent
    as one batch: the API's reasons are ingest's, word for word, line for line."""
    texts = [raw if isinstance(raw, str) else json.dumps(raw) for raw, _ in REJECTS]
    texts = [t for t in texts if _is_json(t)]
    texts += [
        '{"id": "big", "workspaceId": "ws_1", "metric": "api_calls", "quantity": 1e400, '
        '"timestamp": "2024-01-15T10:00:00Z"}',
        '{"id": "inf", "workspaceId": "ws_1", "metric": "api_calls", "quantity": -Infinity, '
        '"timestamp": "2024-01-15T10:00:00Z"}',
        '{"id": "prec", "workspaceId": "ws_1", "metric": "storage", '
        '"quantity": 0.12345678901, "timestamp": "2024-01-15T10:00:00Z"}',
        json.dumps(event(id="ok", quantity=-0.0)),
        "null",
        "12",
    ]
    with pytest.raises(InvalidUsageError) as info:
        prepare_usage(settings, '{"events": [' + ", ".join(texts) + "]}")
    api = {e.index: e.reason for e in info.value.errors}
    expected = ingest_reasons(settings, tmp_path, texts)
    assert [api.get(i) for i in range(len(texts))] == expected
    assert sum(r is None for r in expected) == 1  # only -0.0 (a valid zero) passes
    assert "quantity must be a finite number, got 1e400" in expected


def test_valid_edge_values_are_accepted_like_ingest(settings: Settings) -> None:
    events = [
        event(id="a", quantity=0),
        event(id="b", metric="storage", quantity=0.1),
        event(id="c", metric="storage", quantity=123456.123456789),
        event(id="d", quantity=1.0),
        event(id="e", quantity=10**18),
        event(id="f", timestamp="2024-01-15T10:00:00.123456+05:30"),
        event(id="g", timestamp="2024-01-15 10:00:00-0800"),
        event(id="h", timestamp="2024-01-15t10:00:00z"),
        event(id="i", workspace="A.b-c_9"),
        event(id="j", properties={"user": "u1"}),
        event(id='quote"and\\backslash'),
        event(id="k", unknownField=[1, 2]),  # ingest ignores unknown event fields
    ]
    prepared = prepare_usage(settings, body({"events": events}))
    assert prepared.ids == tuple(e["id"] for e in events)
    # the lines keep each number's text exactly (no float round trip)
    assert b'"quantity":123456.123456789' in prepared.lines[2]
    assert b'"quantity":1.0' in prepared.lines[3]
    assert b'"quantity":1000000000000000000' in prepared.lines[4]


def test_ids_kept_derived_from_the_idempotency_key_or_new(settings: Settings) -> None:
    batch = body({"events": [event(id=None), event(id="mine"), event(id=None, workspace="ws_9")]})
    a = prepare_usage(settings, batch, idempotency_key="req-1")
    again = prepare_usage(settings, batch, idempotency_key="req-1")
    other = prepare_usage(settings, batch, idempotency_key="req-2")
    assert a.ids == again.ids  # a retry: the same ids, de-duplicated by ingest
    assert a.ids[1] == "mine" and other.ids[1] == "mine"
    assert a.ids[0] != other.ids[0] and a.ids[0].startswith("usg_")
    assert len(set(a.ids)) == 3
    # the same key used by two workspaces never collides
    single_a = prepare_usage(settings, body(event(id=None)), idempotency_key="k")
    single_b = prepare_usage(settings, body(event(id=None, workspace="ws_b")), idempotency_key="k")
    assert single_a.ids != single_b.ids
    # no key: a new id every time (two identical requests are two events)
    n1 = prepare_usage(settings, body(event(id=None)))
    n2 = prepare_usage(settings, body(event(id=None)))
    assert n1.ids != n2.ids
    # "id": null counts as no id; the id goes first in the written line
    nul = prepare_usage(settings, body({**event(id=None), "id": None}), idempotency_key="z")
    assert nul.lines[0].startswith(b'{"id":"usg_')
    assert nul.lines[0].count(b'"id"') == 1
    assert nul.workspaces == ("ws_123",)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("{not json", "not valid JSON"),
        ('{"events": []}', "at least one event"),
        ('{"events": {"a": 1}}', "must be an array"),
        ('{"events": "x"}', "must be an array"),
        ('{"events": [], "extra": 1}', "unknown field(s) 'extra'"),
    ],
)
def test_bad_bodies(settings: Settings, raw: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        prepare_usage(settings, raw)


def test_batch_limits(settings: Settings) -> None:
    ok = {"events": [event(id=f"e{i}") for i in range(MAX_EVENTS)]}
    assert len(split_events(body(ok))[0]) == MAX_EVENTS
    too_many = {"events": [event(id=f"e{i}") for i in range(MAX_EVENTS + 1)]}
    with pytest.raises(InputError, match=f"at most {MAX_EVENTS} events"):
        prepare_usage(settings, body(too_many))
    with pytest.raises(InputError, match="Idempotency-Key"):
        prepare_usage(settings, body(event()), idempotency_key="x" * 256)
    with pytest.raises(InputError, match="Idempotency-Key"):
        prepare_usage(settings, body(event()), idempotency_key="bad\nkey")


def test_one_invalid_event_refuses_the_batch(settings: Settings) -> None:
    batch = {"events": [event(id="a"), event(id="b", quantity=-1), "x", event(id="c")]}
    with pytest.raises(InvalidUsageError) as info:
        record_usage(settings, body(batch), now=NOW)
    assert [(e.index, e.reason) for e in info.value.errors] == [
        (1, "quantity must not be negative, got -1"),
        (2, "not a JSON object (got varchar)"),
    ]
    assert "2 of 4 events are invalid" in info.value.message
    assert not settings.landing_dir.exists() or not any(settings.landing_dir.rglob("*"))
    with pytest.raises(InvalidUsageError, match="invalid usage event: unknown metric"):
        prepare_usage(settings, body(event(metric="bandwidth")))


def test_landing_file_is_durable_and_ingested_once(settings: Settings) -> None:
    rec = record_usage(
        settings,
        body({"events": [event(id=None), event(id=None, metric="contracts", quantity=3)]}),
        idempotency_key="retry-me",
        now=NOW,
    )
    assert rec.accepted == 2
    path = Path(rec.path)
    assert path.parent == settings.landing_dir / "api" / "2024-01-20"
    assert path.name.startswith("rec_") and path.suffix == ".jsonl"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp left
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["id"] for x in lines] == list(rec.ids)

    first = ingest(settings)
    assert first.to_dict()["accepted"] == 2
    # the client retries the same request: same ids, so ingest keeps the first ones only
    retry = record_usage(
        settings,
        body({"events": [event(id=None), event(id=None, metric="contracts", quantity=3)]}),
        idempotency_key="retry-me",
        now=NOW,
    )
    assert retry.ids == rec.ids and retry.path != rec.path
    second = ingest(settings).to_dict()
    assert (second["accepted"], second["duplicates"], second["conflicts"]) == (0, 2, 0)
    con = Lake(settings).connect(read_only=True)
    try:
        rows = con.execute("SELECT id, metric, quantity FROM events ORDER BY metric").fetchall()
    finally:
        con.close()
    assert [(r[0], r[1], int(r[2])) for r in rows] == [
        (rec.ids[0], "api_calls", 1000),
        (rec.ids[1], "contracts", 3),
    ]
