"""[s3] settings: environment aliases, and what DuckDB's secret and s3fs receive."""

from __future__ import annotations

from pathlib import Path

import pytest

from billing_batch._core.errors import ConfigError
from billing_batch.config.settings import load_settings
from billing_batch.storage.s3 import duckdb_secret_params, fsspec_options, is_remote


def test_duckdb_url_style_variable_is_honoured(tmp_path: Path) -> None:
    s = load_settings(env={"BILLING_HOME": str(tmp_path), "DUCKDB_S3_URL_STYLE": "path"})
    assert s.s3.url_style == "path"
    assert duckdb_secret_params(s.s3)["URL_STYLE"] == "path"
    assert fsspec_options(s.s3)["config_kwargs"]["s3"]["addressing_style"] == "path"


def test_billing_variable_wins_over_the_alias(tmp_path: Path) -> None:
    s = load_settings(
        env={
            "BILLING_HOME": str(tmp_path),
            "DUCKDB_S3_URL_STYLE": "path",
            "BILLING_S3_URL_STYLE": "vhost",
        }
    )
    assert s.s3.url_style == "vhost"


def test_bad_url_style_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="url_style"):
        load_settings(env={"BILLING_HOME": str(tmp_path), "DUCKDB_S3_URL_STYLE": "sideways"})


def test_endpoint_scheme_sets_ssl_and_credentials_come_from_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "billing.toml").write_text(
        '[s3]\nendpoint = "http://127.0.0.1:9000"\nregion = "eu-west-3"\n'
    )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    s = load_settings(env={"BILLING_HOME": str(tmp_path)})
    params = duckdb_secret_params(s.s3)
    assert params == {
        "REGION": "eu-west-3",
        "URL_STYLE": "vhost",
        "USE_SSL": False,
        "ENDPOINT": "127.0.0.1:9000",
        "KEY_ID": "AKIDEXAMPLE",
        "SECRET": "s3cr3t",
    }
    opts = fsspec_options(s.s3)
    assert opts["client_kwargs"]["endpoint_url"] == "http://127.0.0.1:9000"
    assert opts["key"] == "AKIDEXAMPLE"
    # credentials are not settings: the model never holds them
    assert "s3cr3t" not in s.model_dump_json()


def test_credentials_in_the_toml_file_are_refused(tmp_path: Path) -> None:
    (tmp_path / "billing.toml").write_text('[s3]\nsecret_access_key = "nope"\n')
    with pytest.raises(ConfigError):
        load_settings(env={"BILLING_HOME": str(tmp_path)})


def test_is_remote() -> None:
    assert is_remote("s3://b/p/") and not is_remote("/srv/lake/data/")
