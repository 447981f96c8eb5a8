from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import subprocess
import sys
from datetime import UTC
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from billing_batch._core.errors import IngestError
from billing_batch.cli import main as cli_main
from billing_batch.config.settings import Settings
from billing_batch.storage.lake import Lake
from billing_batch.usage.ingest import ingest
from tests.conftest import event, random_events, write_log


def q(settings: Settings, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    con = Lake(settings).connect(read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def accounted(report: Any) -> None:
    d = report.to_dict()
    assert d["accepted"] + d["duplicates"] + d["rejected"] == d["lines"]


def test_seed_event_lands_typed_and_partitioned(settings: Settings, tmp_path: Path) -> None:
    f = write_log(tmp_path / "in" / "a.jsonl", [event()])
    r = ingest(settings, [f])
    assert r.to_dict()["accepted"] == 1
    rows = q(settings, "SELECT id, workspace_id, metric, quantity, day, line_no FROM events")
    assert rows == [("evt_1", "ws_123", "api_calls", Decimal("1000"), rows[0][4], 1)]
    assert str(rows[0][4]) == "2024-01-15"
    files = list((settings.lake_dir / "data" / "main" / "events").rglob("*.parquet"))
    assert files and all("day=2024-01-15" in str(p) for p in files)
    manifest = q(
        settings, "SELECT source_sha256, lines, accepted, snapshot_id FROM ingest_manifest"
    )
    assert manifest[0][1:3] == (1, 1)
    assert manifest[0][3] == r.snapshot_id


REJECTS = [
    ("not json at all", "invalid JSON"),
    ('{"id": "x", "workspaceId": "ws_1"', "invalid JSON"),
    ("[1, 2]", "not a JSON object (got array)"),
    ('"just a string"', "not a JSON object (got varchar)"),
    (event(id="r1", workspace=""), "invalid workspaceId"),
    (event(id="r2", workspace="ws 123"), "invalid workspaceId"),
    (event(id="r3", workspace="w" * 65), "invalid workspaceId"),
    (event(id="r4", workspace=123), "invalid workspaceId"),
    (
        {"id": "r5", "metric": "api_calls", "quantity": 1, "timestamp": "2024-01-15T10:00:00Z"},
        "missing field workspaceId",
    ),
    (event(id="r6", metric="bandwidth"), 'unknown metric "bandwidth"'),
    (
        {"id": "r7", "workspaceId": "ws_1", "quantity": 1, "timestamp": "2024-01-15T10:00:00Z"},
        "missing field metric",
    ),
    (
        {
            "id": "r8",
            "workspaceId": "ws_1",
            "metric": "api_calls",
            "timestamp": "2024-01-15T10:00:00Z",
        },
        "missing field quantity",
    ),
    (event(id="r9", quantity="5"), "quantity must be a number"),
    (event(id="r10", quantity=True), "quantity must be a number"),
    (event(id="r11", quantity=-1), "quantity must not be negative"),
    (event(id="r12", quantity=1.5), 'quantity must be a whole number for metric "api_calls"'),
    (event(id="r13", metric="storage", quantity=1.1234567891), "more precision than 9 decimal"),
    (
        '{"id": "r14", "workspaceId": "ws_1", "metric": "api_calls", "quantity": NaN, '
        '"timestamp": "2024-01-15T10:00:00Z"}',
        "quantity must be a finite number",
    ),
    (event(id="r15", quantity=10**40), "quantity too large"),
    (
        {"id": "r16", "workspaceId": "ws_1", "metric": "api_calls", "quantity": 1},
        "missing field timestamp",
    ),
    (event(id="r17", timestamp="2024-01-15T10:00:00"), "timestamp has no time zone"),
    (event(id="r18", timestamp="2024-01-15"), "timestamp has no time zone"),
    (event(id="r19", timestamp="yesterday"), "not a valid ISO 8601"),
    (event(id="r20", timestamp="2024-02-30T10:00:00Z"), "not a valid ISO 8601"),
    (event(id="r21", timestamp="2024-01-15T10:00:00+99:00"), "not a valid ISO 8601"),
    (event(id="r22", timestamp=1705312800), "timestamp must be an ISO 8601 string"),
    (event(id=5), "id must be a non-empty string"),
    (event(id=""), "id must be a non-empty string"),
    (event(id="x" * 300), "id longer than 255"),
    (event(id="r23", properties=[1]), "properties must be a JSON object"),
]


def test_each_rejection_reason(settings: Settings, tmp_path: Path) -> None:
    lines = [x for x, _ in REJECTS]
    f = write_log(tmp_path / "bad.jsonl", lines)
    r = ingest(settings, [f])
    d = r.to_dict()
    assert d["rejected"] == len(REJECTS) and d["accepted"] == 0
    got = dict(q(settings, "SELECT line_no, reason FROM rejects ORDER BY line_no"))
    for i, (_, expected) in enumerate(REJECTS, start=1):
        assert expected in got[i], (i, got[i])
    # the rejects file: file, line, reason and the raw text, exactly
    assert r.rejects_file is not None
    out = [json.loads(x) for x in Path(r.rejects_file).read_text().splitlines()]
    assert [o["line"] for o in out] == list(range(1, len(REJECTS) + 1))
    assert out[0]["raw"] == "not json at all"
    assert out[0]["source_file"] == str(f.resolve())
    assert out[4]["raw"] == json.dumps(REJECTS[4][0])


def test_valid_edge_values_are_accepted(settings: Settings, tmp_path: Path) -> None:
    f = write_log(
        tmp_path / "ok.jsonl",
        [
            event(id="a", quantity=0),
            event(id="b", metric="storage", quantity=0.1),
            event(id="c", metric="storage", quantity=123456.123456789),
            event(id="d", quantity=1.0),  # whole, written with a fraction
            event(id="e", quantity=10**18),
            event(id="f", timestamp="2024-01-15T10:00:00.123456+05:30"),
            event(id="g", timestamp="2024-01-15 10:00:00-0800"),
            event(id="h", timestamp="2024-01-15t10:00:00z"),
            event(id="i", workspace="A.b-c_9"),
            event(id="j", properties={"user": "u1"}),
            event(id='quote"and\\backslash'),
            event(id=None),
        ],
    )
    r = ingest(settings, [f])
    assert r.to_dict()["accepted"] == 12, q(settings, "SELECT line_no, reason FROM rejects")
    got = dict(q(settings, "SELECT coalesce(id, '-'), quantity FROM events"))
    assert got["b"] == Decimal("0.1") and got["c"] == Decimal("123456.123456789")
    assert got["e"] == Decimal(10**18)
    assert 'quote"and\\backslash' in got


def test_blank_lines_are_skipped_and_crlf_is_fine(settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "crlf.jsonl"
    f.write_bytes(
        (json.dumps(event(id="a")) + "\r\n\r\n   \n" + json.dumps(event(id="b"))).encode()
    )  # no newline at the end either
    r = ingest(settings, [f])
    d = r.to_dict()
    assert (d["lines"], d["blank_lines"], d["accepted"]) == (2, 2, 2)
    assert q(settings, "SELECT line_no FROM events ORDER BY line_no") == [(1,), (4,)]


def test_invalid_utf8_is_rejected_and_kept(settings: Settings, tmp_path: Path) -> None:
    f = tmp_path / "bytes.jsonl"
    f.write_bytes(json.dumps(event(id="a")).encode() + b"\n\xff\xfe oops\n")
    r = ingest(settings, [f])
    assert r.to_dict()["rejected"] == 1
    assert q(settings, "SELECT reason, raw FROM rejects") == [
        ("not valid UTF-8", "\\xff\\xfe oops")
    ]


def test_dedupe_within_file_across_files_and_runs(settings: Settings, tmp_path: Path) -> None:
    a = write_log(tmp_path / "in" / "a.jsonl", [event(id="e1"), event(id="e2"), event(id="e1")])
    b = write_log(tmp_path / "in" / "b.jsonl", [event(id="e2"), event(id="e3")])
    r1 = ingest(settings, [tmp_path / "in"])
    d1 = r1.to_dict()
    assert (d1["accepted"], d1["duplicates"], d1["conflicts"]) == (3, 2, 0)
    c = write_log(tmp_path / "c.jsonl", [event(id="e3"), event(id="e4")])
    r2 = ingest(settings, [c])
    assert (r2.to_dict()["accepted"], r2.to_dict()["duplicates"]) == (1, 1)
    assert q(settings, "SELECT count(*), count(DISTINCT id) FROM events") == [(4, 4)]
    dups = q(
        settings,
        "SELECT source_file, line_no, id, first_source_file, first_line_no FROM duplicates "
        "ORDER BY detected_at, source_file, line_no",
    )
    assert dups == [
        (str(a.resolve()), 3, "e1", str(a.resolve()), 1),
        (str(b.resolve()), 1, "e2", str(a.resolve()), 2),
        (str(c.resolve()), 1, "e3", str(b.resolve()), 2),
    ]
    for r in (r1, r2):
        accounted(r)


def test_ids_are_scoped_to_their_workspace(settings: Settings, tmp_path: Path) -> None:
    # one workspace's producer (or API key) can never make another's events duplicates
    f = write_log(
        tmp_path / "a.jsonl", [event(id="e1", workspace="ws_a"), event(id="e1", workspace="ws_b")]
    )
    r = ingest(settings, [f])
    assert (r.to_dict()["accepted"], r.to_dict()["duplicates"]) == (2, 0)
    g = write_log(
        tmp_path / "b.jsonl",
        [event(id="e1", workspace="ws_b", quantity=5), event(id="e1", workspace="ws_c")],
    )
    r2 = ingest(settings, [g])
    assert (r2.to_dict()["accepted"], r2.to_dict()["duplicates"], r2.to_dict()["conflicts"]) == (
        1,
        1,
        1,
    )
    assert q(settings, "SELECT workspace_id FROM events ORDER BY 1") == [
        ("ws_a",),
        ("ws_b",),
        ("ws_c",),
    ]


def test_conflicting_duplicate_first_stands(settings: Settings, tmp_path: Path) -> None:
    f = write_log(
        tmp_path / "a.jsonl",
        [event(id="e1", quantity=10), event(id="e1", quantity=99), event(id="e1", quantity=10)],
    )
    r = ingest(settings, [f])
    assert (r.to_dict()["duplicates"], r.to_dict()["conflicts"]) == (2, 1)
    assert q(settings, "SELECT quantity FROM events") == [(Decimal(10),)]
    assert q(settings, "SELECT line_no, conflict, quantity FROM duplicates ORDER BY line_no") == [
        (2, True, Decimal(99)),
        (3, False, Decimal(10)),
    ]
    # across runs too
    g = write_log(tmp_path / "b.jsonl", [event(id="e1", quantity=7)])
    r2 = ingest(settings, [g])
    assert (r2.to_dict()["duplicates"], r2.to_dict()["conflicts"]) == (1, 1)
    assert q(settings, "SELECT quantity FROM events") == [(Decimal(10),)]


def test_idless_identical_lines_both_count(settings: Settings, tmp_path: Path) -> None:
    same = event(id=None, quantity=5)
    f = write_log(tmp_path / "a.jsonl", [same, same])
    r = ingest(settings, [f])
    assert r.to_dict()["accepted"] == 2
    assert q(settings, "SELECT sum(quantity) FROM events") == [(Decimal(10),)]


def test_same_file_under_another_name_adds_nothing(settings: Settings, tmp_path: Path) -> None:
    lines = [event(id=None, quantity=5), event(id=None, quantity=5), event(id="x1")]
    a = write_log(tmp_path / "a.jsonl", lines)
    ingest(settings, [a])
    b = tmp_path / "copy" / "renamed.jsonl.gz"
    b.parent.mkdir()
    b.write_bytes(gzip.compress(a.read_bytes()))  # same content, other name, gzipped
    r = ingest(settings, [b])
    d = r.to_dict()
    assert (d["accepted"], d["duplicates"]) == (0, 3)
    assert q(settings, "SELECT count(*), sum(quantity) FROM events") == [(3, Decimal(1010))]
    # and both names in one call: the second is a duplicate of the first
    settings2_home = tmp_path / "home2"
    from billing_batch.config.settings import load_settings

    s2 = load_settings(env={"BILLING_HOME": str(settings2_home)})
    r2 = ingest(s2, [a, b])
    assert (r2.to_dict()["accepted"], r2.to_dict()["duplicates"]) == (3, 3)


def test_gzip_and_sorted_order(settings: Settings, tmp_path: Path) -> None:
    write_log(tmp_path / "in" / "2.jsonl.gz", [event(id="e1", quantity=2)], gz=True)
    write_log(tmp_path / "in" / "1.jsonl", [event(id="e1", quantity=1)])
    r = ingest(settings, [tmp_path / "in"])
    assert [Path(f.source_file).name for f in r.files] == ["1.jsonl", "2.jsonl.gz"]
    assert q(settings, "SELECT quantity FROM events") == [(Decimal(1),)]  # sorted: 1 first


def test_offsets_crossing_midnight_and_month_end(settings: Settings, tmp_path: Path) -> None:
    f = write_log(
        tmp_path / "tz.jsonl",
        [
            event(id="a", timestamp="2024-01-31T23:30:00-01:00"),  # Feb 1st UTC
            event(id="b", timestamp="2024-02-01T00:30:00+02:00"),  # Jan 31st UTC
            event(id="c", timestamp="2023-12-31T23:59:59.999-00:30"),  # Jan 1st 2024 UTC
            event(id="d", timestamp="2024-03-01T04:59:59+05:00"),  # Feb 29th (leap) UTC
        ],
    )
    ingest(settings, [f])
    got = {r[0]: str(r[1]) for r in q(settings, "SELECT id, day FROM events")}
    assert got == {"a": "2024-02-01", "b": "2024-01-31", "c": "2024-01-01", "d": "2024-02-29"}


def test_missing_path_and_corrupt_gzip(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="no such file"):
        ingest(settings, [tmp_path / "nope.jsonl"])
    good = write_log(tmp_path / "in" / "a.jsonl", [event(id="ok")])
    bad = tmp_path / "in" / "b.jsonl.gz"
    bad.write_bytes(gzip.compress(b'{"x": 1}\n' * 1000)[:-30])  # truncated
    r = ingest(settings, [tmp_path / "in"])
    assert len(r.failed) == 1 and "corrupt gzip" in (r.failed[0].error or "")
    assert str(bad.resolve()) in (r.failed[0].error or "")
    assert r.to_dict()["accepted"] == 1  # the good file still landed
    assert good.exists()
    assert q(settings, "SELECT count(*) FROM ingest_manifest") == [(1,)]


def test_landing_folder_only_new_files(settings: Settings) -> None:
    landing = settings.landing_dir
    write_log(landing / "day1.jsonl", [event(id="a")])
    assert ingest(settings).to_dict()["files"] == 1
    assert ingest(settings).to_dict()["files"] == 0
    write_log(landing / "day2.jsonl", [event(id="b")])
    r = ingest(settings)
    assert r.to_dict()["files"] == 1 and r.to_dict()["accepted"] == 1
    # where the time went, the landing's listing (from object storage: downloads) first
    assert list(r.timings)[::2] == ["find", "stage", "dedupe", "commit", "publish"]
    assert all(v >= 0 for v in r.timings.values())


def test_every_line_accounted_for_on_a_sample(settings: Settings, tmp_path: Path) -> None:
    from billing_batch.usage.sample import generate

    rep = generate(tmp_path / "s", workspaces=5, events=20_000, seed=3, bad_lines=7)
    r = ingest(settings, [tmp_path / "s"])
    d = r.to_dict()
    assert d["lines"] == rep.lines
    assert d["rejected"] == 7
    assert d["duplicates"] == rep.duplicate_lines
    assert d["accepted"] == rep.events
    accounted(r)
    totals = q(
        settings,
        "SELECT sum(lines), sum(accepted), sum(duplicates), sum(rejected) FROM ingest_manifest",
    )
    assert totals == [(d["lines"], d["accepted"], d["duplicates"], d["rejected"])]


def test_small_chunks_give_the_same_result(settings: Settings, tmp_path: Path) -> None:
    lines = list(random_events(2000, seed=5)) + ["garbage"]
    f = write_log(tmp_path / "a.jsonl", lines)
    small = settings.model_copy(
        update={"ingest": settings.ingest.model_copy(update={"chunk_bytes": 1000})}
    )
    r = ingest(small, [f])
    assert r.to_dict()["accepted"] == 2000 and r.to_dict()["rejected"] == 1
    assert q(settings, "SELECT max(line_no), count(DISTINCT line_no) FROM events") == [(2000, 2000)]


_CRASH = """
import os, sys
import billing_batch.usage.ingest as m
from billing_batch.config import load_settings
real = m.run_sql
def crashing(con, name, params=None, **kw):
    if name == sys.argv[2]:
        os._exit(9)  # a hard crash: no cleanup, no rollback
    return real(con, name, params, **kw)
m.run_sql = crashing
m.ingest(load_settings(), [sys.argv[1]])
"""


@pytest.mark.parametrize("crash_at", ["ingest_commit_rejects", "ingest_commit_manifest"])
def test_crash_mid_write_then_rerun(settings: Settings, tmp_path: Path, crash_at: str) -> None:
    f = write_log(tmp_path / "a.jsonl", [*random_events(500, seed=9), "bad line"])
    env = {**os.environ, "BILLING_HOME": str(settings.home)}
    proc = subprocess.run([sys.executable, "-c", _CRASH, str(f), crash_at], env=env)
    assert proc.returncode == 9
    assert q(settings, "SELECT count(*) FROM events") == [(0,)]  # nothing half-visible
    assert q(settings, "SELECT count(*) FROM ingest_manifest") == [(0,)]
    r = ingest(settings, [f])
    assert (r.to_dict()["accepted"], r.to_dict()["rejected"]) == (500, 1)
    r2 = ingest(settings, [f])
    assert r2.to_dict()["accepted"] == 0
    assert q(settings, "SELECT count(*) FROM events") == [(500,)]
    assert q(settings, "SELECT count(*) FROM rejects") == [(1,)]


def _ingest_in_process(home: str, path: str) -> dict[str, Any]:
    from billing_batch.config.settings import load_settings as ls

    return ingest(ls(env={"BILLING_HOME": home}), [path]).to_dict()


def test_two_ingests_at_once_do_not_double_count(settings: Settings, tmp_path: Path) -> None:
    f = write_log(tmp_path / "a.jsonl", list(random_events(3000, seed=11)))
    g = write_log(tmp_path / "b.jsonl", list(random_events(3000, seed=11)))  # same ids
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.starmap(
            _ingest_in_process, [(str(settings.home), str(f)), (str(settings.home), str(g))]
        )
    assert sorted(r["accepted"] for r in results) == [0, 3000]
    assert q(settings, "SELECT count(*) FROM events") == [(3000,)]


def test_cli_prints_counts_and_exit_codes(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = write_log(tmp_path / "a.jsonl", [event(id="a"), event(id="a"), "junk", ""])
    assert cli_main(["--home", str(settings.home), "ingest", str(f)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {k: out[k] for k in ("files", "lines", "accepted", "duplicates", "rejected")} == {
        "files": 1,
        "lines": 3,
        "accepted": 1,
        "duplicates": 1,
        "rejected": 1,
    }
    assert cli_main(["--home", str(settings.home), "ingest", str(tmp_path / "missing")]) == 2
    assert "no such file" in capsys.readouterr().err


# --- the validation fast path gives the rule chain's answers ----------------------------
def _adversarial_lines() -> list[str]:
    """Lines around every edge of the fast path: timestamps field by field, quantities,
    ids, workspaces, metrics, properties, and random mixes of them."""
    import random

    ts_ok = ["2024-01-15T10:20:30Z", "2024-01-15T10:20:30+05:30", "2024-01-15T10:20:30-08:00"]
    ts_other = [
        "2024-01-15T10:20:30.123Z",
        "2024-01-15T10:20:30.1234567891Z",
        "2024-01-15t10:20:30z",
        "2024-01-15 10:20:30Z",
        "2024-01-15T10:20:30+0530",
        "2024-01-15T10:20:30+05",
        "2024-01-15T10:20:30",
        "2024-01-15",
        "1969-12-31T23:59:59Z",
        "1969-12-31T23:30:00-01:00",
        "1900-03-01T00:00:00+01:00",
        "2024-02-29T23:59:59+00:00",
        "2023-02-29T10:00:00Z",
        "2024-01-15T10:20:30.Z",
        "2024-01-15T10:20:30Zjunk",
        "２０２４-01-15T10:20:30Z",
    ]
    fields = {11: "hh", 14: "mi", 17: "ss", 20: "oh", 23: "om", 5: "mo", 8: "dd"}
    values = ["00", "09", "19", "23", "24", "29", "59", "60", "99", " 0", "0 ", "0.", "a1", "+1"]
    for base in ("2024-01-15T10:20:30+05:30", "2024-01-15T10:20:30-05:30"):
        for pos in fields:
            ts_other += [base[:pos] + v + base[pos + 2 :] for v in values]
    for pos in (11, 14, 17, 5, 8):
        base = "2024-01-15T10:20:30Z"
        ts_other += [base[:pos] + v + base[pos + 2 :] for v in values]
    quantities: list[Any] = [0, 1, 7, 10**18, 2**64 - 1, 2**64, -1, 1.0, 1.5, 1e3, 0.1]
    quantities += [1.1234567891, 123456.123456789, 1e40, "5", True, None, [1], {"a": 1}]
    raw_quantities = ["-0", "1E3", "NaN", "Infinity", "-Infinity", "00", "0.0", "-0.0"]
    ids: list[Any] = ["a", "", 5, None, True, "x" * 255, "x" * 256, "ü" * 128, "é" * 200]
    ids += ['q"uote', "back\\slash", "tab\tid", "ω", "evt_1"]
    workspaces: list[Any] = ["ws_1", "", "ws 1", "w" * 64, "w" * 65, 123, True, None, "ü", "a.-_9"]
    metrics: list[Any] = ["api_calls", "storage", "kyc_checks", "bandwidth", "API_CALLS", 1, None]
    props: list[Any] = [None, {}, {"a": 1}, [], "x", 1]
    rng = random.Random(20240115)
    lines = [json.dumps(event(id=f"t{i}", timestamp=t)) for i, t in enumerate(ts_ok + ts_other)]
    for q in quantities:
        for metric in ("api_calls", "storage"):
            lines.append(json.dumps(event(id=f"q{len(lines)}", metric=metric, quantity=q)))
    for rq in raw_quantities:
        for metric in ("api_calls", "storage"):
            lines.append(
                f'{{"id": "r{len(lines)}", "workspaceId": "ws_1", "metric": "{metric}", '
                f'"quantity": {rq}, "timestamp": "2024-01-15T10:00:00Z"}}'
            )
    for _ in range(1500):
        e: dict[str, Any] = {}
        if rng.random() < 0.9:
            e["id"] = rng.choice(ids)
        e["workspaceId"] = rng.choice(workspaces)
        e["metric"] = rng.choice(metrics)
        e["quantity"] = rng.choice(quantities)
        e["timestamp"] = rng.choice(ts_ok * 5 + ts_other)
        if rng.random() < 0.3:
            e["properties"] = rng.choice(props)
        if rng.random() < 0.05:
            del e[rng.choice(list(e))]
        keys = list(e)
        rng.shuffle(keys)
        sep = rng.choice([", ", ",", " , "])
        lines.append("{" + sep.join(f"{json.dumps(k)}: {json.dumps(e[k])}" for k in keys) + "}")
    lines += [x if isinstance(x, str) else json.dumps(x) for x, _ in REJECTS]
    lines += ["", "   ", "{", "null", "[]", '{"id": "a"}', "\r", '{"id": "z"}\r']
    return lines


def _staged(settings: Settings, path: Path, fast: bool) -> list[tuple[Any, ...]]:
    """Every line of ``path`` as staged: through DuckDB's reader (``fast``) or through
    the rule chain alone (its own in-SQL fast path off too)."""
    from billing_batch.usage.ingest_stage import drop_staging, stage, validation_params

    con = Lake(settings).connect()
    try:
        params = {**validation_params(settings), "fast": fast}
        stage(con, settings, [path], fast=fast, params=params)
        return con.execute(
            "SELECT line_no, NULL AS reason, id, id_hash, workspace_id, metric, quantity, ts, "
            "day, CAST(properties AS VARCHAR), NULL AS raw FROM temp.staged UNION ALL "
            "SELECT line_no, reason, id, id_hash, workspace_id, metric, quantity, ts, day, "
            "CAST(properties AS VARCHAR), raw FROM temp.ingest_lines WHERE reason IS NOT NULL "
            "ORDER BY line_no"
        ).fetchall()
    finally:
        drop_staging(con)
        con.close()


def test_fast_path_agrees_with_the_rule_chain(settings: Settings, tmp_path: Path) -> None:
    lines = _adversarial_lines()
    f = tmp_path / "adversarial.jsonl"
    f.write_bytes(("\n".join(lines) + "\n").encode() + b'{"id": "\xff"}\n')
    fast, slow = _staged(settings, f, True), _staged(settings, f, False)
    assert len(fast) == len(slow) > 1500
    for a, b in zip(fast, slow, strict=True):
        assert a == b, (lines[a[0] - 1] if a[0] <= len(lines) else "bytes", a, b)
    accepted = [r for r in fast if r[1] is None]
    assert 100 < len(accepted) < len(fast) - 1000  # both kinds well represented
    for r in accepted:  # the day is the UTC date of ts, before 1970 too
        assert r[8] == r[7].astimezone(UTC).date(), r
        assert (r[2] is None) == (r[3] is None)


def test_large_ingest_paths_give_the_same_result(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hash buckets for the dedupe and several INSERTs (day groups), as a large ingest
    uses them, give exactly the counts and rows of the one-shot path."""
    import billing_batch.usage.ingest as m

    a = write_log(tmp_path / "in" / "a.jsonl", list(random_events(400, seed=21)))
    b = write_log(
        tmp_path / "in" / "b.jsonl",
        [*random_events(150, seed=21), *random_events(300, seed=22), event(id=None)],
    )
    one = ingest(settings, [a, b]).to_dict()
    monkeypatch.setattr(m, "_HASH_BUCKET_ROWS", 37)
    monkeypatch.setattr(m, "_INSERT_ROWS", 50)
    from billing_batch.config.settings import load_settings

    s2 = load_settings(env={"BILLING_HOME": str(tmp_path / "home2")})
    two = ingest(s2, [a, b]).to_dict()
    keys = ("lines", "accepted", "duplicates", "conflicts", "rejected", "days")
    assert {k: one[k] for k in keys} == {k: two[k] for k in keys}
    assert (one["accepted"], one["duplicates"]) == (701, 150)
    sql = "SELECT id, workspace_id, quantity, ts, day, line_no FROM events ORDER BY ALL"
    assert q(settings, sql) == q(s2, sql)
    # every file lies in one day partition, and every day has its file
    for s in (settings, s2):
        files = [r[0] for r in q(s, "SELECT data_file FROM ducklake_list_files('lake', 'events')")]
        days = {f.split("day=")[1].split("/")[0] for f in files}
        assert days == set(one["days"])


def test_duckdb_progress_bar_is_off_in_library_connections(settings: Settings) -> None:
    """A bar DuckDB draws on a long query would land in the CLI's JSON and the logs."""
    from billing_batch.storage.lake import memory_connection

    for con in (Lake(settings).connect(), memory_connection()):
        try:
            assert con.execute("SELECT current_setting('enable_progress_bar')").fetchall() == [
                (False,)
            ]
        finally:
            con.close()
