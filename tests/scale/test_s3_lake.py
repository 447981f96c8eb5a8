"""The lake's data on S3 (SeaweedFS): the secret comes from the settings, nothing by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
import s3fs

from billing_batch.config.settings import load_settings
from billing_batch.storage.analyst import open_analyst_session
from billing_batch.storage.lake import Lake, close_connections
from billing_batch.usage.ingest import ingest
from tests.conftest import random_events, write_log
from tests.scale.s3_fixtures import ACCESS_KEY, SECRET_KEY, SeaweedFS, s3_bucket, seaweedfs

__all__ = ["s3_bucket", "seaweedfs"]

pytestmark = pytest.mark.scale


def _fs(server: SeaweedFS) -> s3fs.S3FileSystem:
    return s3fs.S3FileSystem(
        key=ACCESS_KEY,
        secret=SECRET_KEY,
        client_kwargs={"endpoint_url": server.url},
        config_kwargs={"s3": {"addressing_style": "path"}},
        skip_instance_cache=True,
    )


def test_lake_data_path_on_s3_from_settings(
    tmp_path: Path, seaweedfs: SeaweedFS, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    env = {
        "BILLING_HOME": str(home),
        "BILLING_LAKE_DATA_PATH": f"s3://{s3_bucket}/lake/",
        # the URL style through DuckDB's own variable: honoured, not ignored
        "DUCKDB_S3_URL_STYLE": "path",
        "BILLING_S3_ENDPOINT": seaweedfs.endpoint,
        "BILLING_S3_USE_SSL": "false",
    }
    settings = load_settings(env=env)
    assert settings.s3.url_style == "path"
    events = list(random_events(500, seed=3))
    log = write_log(tmp_path / "in" / "a.jsonl", events)
    try:
        report = ingest(settings, [log])
        assert report.total("accepted") == 500
        con = Lake(settings).connect()
        try:
            (n,) = con.execute("SELECT count(*) FROM events").fetchone() or (0,)
            files = [
                str(r[0])
                for r in con.execute(
                    "SELECT data_file FROM ducklake_list_files('lake', 'events')"
                ).fetchall()
            ]
        finally:
            con.close()
        assert n == 500
        # every cursor writes S3 parts of ~5 MB, not DuckDB's 80 MB (31 day files at once
        # overran the 700 MB limit at 1M events)
        con = Lake(settings).connect()
        try:
            (size,) = con.execute(
                "SELECT current_setting('s3_uploader_max_filesize')"
            ).fetchone() or ("",)
        finally:
            con.close()
        assert size == "50GB"  # DuckDB's own default: 800GB
        analyst = open_analyst_session(settings)  # read-only, sandboxed: S3 still read
        try:
            assert analyst.execute("SELECT count(*) FROM events").fetchall() == [(500,)]
        finally:
            analyst.close()
        assert files and all(f.startswith(f"s3://{s3_bucket}/lake/") for f in files), files
    finally:
        close_connections()
    objects = _fs(seaweedfs).find(f"{s3_bucket}/lake/")
    assert any(o.endswith(".parquet") for o in objects), objects
    assert not list((home / "lake").rglob("*.parquet"))  # nothing on local disk


def test_wrong_credentials_fail_clearly_and_are_not_shown(
    tmp_path: Path, seaweedfs: SeaweedFS, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-xyz")
    env = {
        "BILLING_HOME": str(tmp_path / "home"),
        "BILLING_LAKE_DATA_PATH": f"s3://{s3_bucket}/lake/",
        **{k: v for k, v in seaweedfs.settings_env().items() if k.startswith("BILLING_")},
    }
    settings = load_settings(env=env)
    log = write_log(tmp_path / "in" / "a.jsonl", list(random_events(10, seed=4)))
    from billing_batch._core.errors import BillingError

    try:
        with pytest.raises(BillingError) as info:
            ingest(settings, [log])
    finally:
        close_connections()
    assert "not-the-secret-xyz" not in str(info.value)
