"""Files on object storage (SeaweedFS): landing claimed once by key+ETag, rejects,
quarantine and run summaries in the bucket, nothing on local disk."""

from __future__ import annotations

import gzip
import json
from datetime import date
from pathlib import Path

import pytest

from billing_batch._core.errors import StorageError
from billing_batch.config.settings import Settings, load_settings
from billing_batch.nightly.summary import new_run, read_summary, write_summary
from billing_batch.storage.files import FileArea, area
from billing_batch.storage.lake import Lake, close_connections
from billing_batch.usage.ingest import ingest
from tests.conftest import event, random_events
from tests.scale.s3_fixtures import SeaweedFS, s3_bucket, seaweedfs

__all__ = ["s3_bucket", "seaweedfs"]

pytestmark = pytest.mark.scale


def _settings(home: Path, server: SeaweedFS, bucket: str, lake: Path) -> Settings:
    env = {
        "BILLING_HOME": str(home),
        "BILLING_FILES_URL": f"s3://{bucket}/files",
        "BILLING_PATHS_LAKE": str(lake),  # one lake, as two machines would share it
        "BILLING_LAKE_MEMORY_LIMIT": "512MB",
        **{k: v for k, v in server.settings_env().items() if k.startswith("BILLING_")},
    }
    return load_settings(env=env)


def _jsonl(events: list[dict[str, object]]) -> bytes:
    return "".join(json.dumps(e) + "\n" for e in events).encode()


def _manifest(settings: Settings) -> list[tuple[object, ...]]:
    con = Lake(settings).connect()
    try:
        return con.execute(
            "SELECT source_file, size_bytes, source_etag, accepted, duplicates "
            "FROM ingest_manifest ORDER BY committed_at"
        ).fetchall()
    finally:
        con.close()


def test_area_round_trip_and_listing(seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path) -> None:
    s = _settings(tmp_path / "h", seaweedfs, s3_bucket, tmp_path / "lake")
    inv = area(s, "invoices")
    assert inv.remote and inv.root == f"s3://{s3_bucket}/files/invoices"
    locs = inv.write_many([("INV-1.json", b"{}"), ("INV-1.pdf", b"%PDF-1.7 x")])
    assert locs == [f"s3://{s3_bucket}/files/invoices/INV-1.{x}" for x in ("json", "pdf")]
    assert inv.read_bytes("INV-1.pdf") == b"%PDF-1.7 x" and inv.exists("INV-1.json")
    assert not inv.exists("INV-2.pdf")
    with pytest.raises(FileNotFoundError):
        inv.read_bytes("INV-2.pdf")
    listed = inv.list((".pdf",))
    assert [(e.name, e.size) for e in listed] == [("INV-1.pdf", 10)]
    assert listed[0].etag and len(listed[0].etag) >= 32
    with pytest.raises(StorageError, match="not a usable file name"):
        inv.location("../escape.pdf")
    assert not (tmp_path / "h" / "invoices").exists()


def test_bad_credentials_are_a_storage_error_without_the_secret(
    seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = _settings(tmp_path / "h", seaweedfs, s3_bucket, tmp_path / "lake")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-zzz")
    with pytest.raises(StorageError) as info:
        FileArea(f"s3://{s3_bucket}/files/x", s.s3).write_text("a.txt", "a")
    assert "wrong-secret-zzz" not in str(info.value)


def test_landing_object_is_claimed_once_across_machines(
    seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path
) -> None:
    lake = tmp_path / "shared-lake"
    a = _settings(tmp_path / "machine-a", seaweedfs, s3_bucket, lake)
    b = _settings(tmp_path / "machine-b", seaweedfs, s3_bucket, lake)
    landing = area(a, "landing")
    events = list(random_events(200, seed=7))
    landing.write_many([("2024-01/a.jsonl", _jsonl(events)), ("2024-01/.hidden.jsonl", b"x")])
    try:
        first = ingest(a)
        assert first.total("accepted") == 200 and not first.failed
        assert ingest(b).ingest_id is None  # machine B sees the same object: nothing new
        assert ingest(a).ingest_id is None
        rows = _manifest(a)
        assert len(rows) == 1
        source, size, etag, accepted, _ = rows[0]
        entry = landing.list((".jsonl",))[0]
        assert (source, size, etag) == (entry.location, entry.size, entry.etag)
        assert accepted == 200
        # the same key replaced by new content: a new ETag, a new file (ids dedupe it)
        more = [*events[:50], event(id="evt_new", workspace="ws_a")]
        landing.write_many([("2024-01/a.jsonl", _jsonl(more))])
        again = ingest(b)
        assert again.total("accepted") == 1 and again.total("duplicates") == 50
    finally:
        close_connections()
    assert not list((tmp_path / "machine-a").rglob("*.jsonl"))  # local copies removed
    assert not list((tmp_path / "machine-b").rglob("*.jsonl"))


def test_rejects_and_quarantine_on_object_storage(
    seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path
) -> None:
    s = _settings(tmp_path / "h", seaweedfs, s3_bucket, tmp_path / "lake")
    landing = area(s, "landing")
    good = _jsonl([event(id="e1"), event(id="e2", quantity=-5)])
    broken = gzip.compress(b'{"id": "x"}\n')[:-12]  # a truncated gzip: unreadable
    landing.write_many([("good.jsonl", good), ("bad.jsonl.gz", broken)])
    try:
        report = ingest(s)
    finally:
        close_connections()
    assert report.total("accepted") == 1 and report.total("rejected") == 1
    assert report.rejects_file == f"s3://{s3_bucket}/files/rejects/{report.ingest_id}.jsonl"
    kept = area(s, "rejects").read_bytes(f"{report.ingest_id}.jsonl").decode().splitlines()
    assert len(kept) == 1 and json.loads(kept[0])["line"] == 2
    (failed,) = report.failed
    assert failed.source_file == f"s3://{s3_bucket}/files/landing/bad.jsonl.gz"
    assert failed.quarantined_to == f"s3://{s3_bucket}/files/quarantine/bad.jsonl.gz"
    quarantine = area(s, "quarantine")
    assert quarantine.read_bytes("bad.jsonl.gz") == broken
    reason = json.loads(quarantine.read_bytes("bad.jsonl.gz.reason.json"))
    assert reason["file"] == failed.source_file and reason["reason"]
    assert [e.name for e in landing.list()] == ["good.jsonl"]  # moved out of landing
    assert not list((tmp_path / "h").rglob("*.jsonl*"))


def test_run_summary_on_object_storage(
    seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path
) -> None:
    s = _settings(tmp_path / "h", seaweedfs, s3_bucket, tmp_path / "lake")
    summary = new_run(date(2024, 2, 1), "run_test1")
    where = write_summary(s, summary)
    assert where == f"s3://{s3_bucket}/files/runs/2024-02-01-run_test1.json"
    back = read_summary(s, date(2024, 2, 1), "run_test1")
    assert back is not None and back["summaryFile"] == where
    assert back["runId"] == "run_test1" and back["runDate"] == "2024-02-01"
    assert read_summary(s, date(2024, 2, 1), "run_missing") is None


def test_usage_recorded_through_the_api_lands_in_the_bucket(
    seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path
) -> None:
    """With [files] url, recorded usage is one object in the bucket's landing area (never
    a local file the ingest would not list), and the next ingest counts it once."""
    from billing_batch.usage.recording import record_usage

    settings = _settings(tmp_path / "api-machine", seaweedfs, s3_bucket, tmp_path / "lake")
    body = json.dumps({"events": [event(id="rec_1", workspace="ws_r"), event(id="rec_2")]})
    try:
        rec = record_usage(settings, body)
        assert rec.path.startswith(f"s3://{s3_bucket}/files/") and "/api/" in rec.path
        assert not list((tmp_path / "api-machine").rglob("*.jsonl"))
        first = ingest(settings)
        assert first.total("accepted") == 2
        assert ingest(settings).ingest_id is None  # claimed once
    finally:
        close_connections()


def test_render_many_overlaps_uploads_and_keeps_each_error(
    seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path
) -> None:
    """To object storage, invoices upload while the next ones render: results stay in
    order, the objects hold the bytes a local render writes, and a failed render or a
    failed upload is that invoice's error only."""
    from billing_batch.documents import pool
    from tests.documents.samples import invoice

    s = _settings(tmp_path / "h", seaweedfs, s3_bucket, tmp_path / "lake")
    inv = area(s, "invoices")
    from tests.scale.s3_fixtures import _free_ports

    closed = s.s3.model_copy(update={"endpoint": f"http://127.0.0.1:{_free_ports(1)[0]}"})
    missing = FileArea(f"s3://{s3_bucket}/elsewhere", closed)  # nothing listens there
    items = [
        (invoice(id="inv_a"), inv, "A"),
        (invoice(tax=0.5), inv, "B"),  # a float amount: cannot render
        (invoice(id="inv_c"), missing, "C"),  # the upload fails
        (invoice(id="inv_d"), inv, "D"),
    ]
    results = pool.render_many(items, processes=1)
    assert [r.index for r in results] == [0, 1, 2, 3]
    assert [r.ok for r in results] == [True, False, False, True]
    assert results[0].pdf_path == f"s3://{s3_bucket}/files/invoices/A.pdf"
    assert "expected an exact number" in (results[1].error or "")
    assert "cannot write" in (results[2].error or "") and results[2].pdf_path is None
    local = pool.render_many([(invoice(id="inv_d"), tmp_path, "D")], processes=1)[0]
    assert inv.read_bytes("D.pdf") == Path(str(local.pdf_path)).read_bytes()
    assert inv.read_bytes("D.json") == Path(str(local.json_path)).read_bytes()
    assert not inv.exists("B.pdf") and not inv.exists("B.json")
