from __future__ import annotations

from pathlib import Path

import pytest

from billing_batch._core.errors import ConfigError, InputError
from billing_batch.config.settings import load_settings, parse_date


def test_defaults_resolve_under_home(tmp_path: Path) -> None:
    s = load_settings(env={"BILLING_HOME": str(tmp_path / "h")})
    assert s.home == (tmp_path / "h").resolve()
    assert s.landing_dir == s.home / "landing"
    assert s.catalog_url == f"sqlite:{s.home / 'lake' / 'catalog.sqlite'}"
    assert set(s.metrics) == {"api_calls", "contracts", "kyc_checks", "storage"}
    assert s.metrics["storage"].aggregation == "gauge" and not s.metrics["storage"].whole


def test_toml_then_env(tmp_path: Path) -> None:
    home = tmp_path / "h"
    home.mkdir()
    (home / "billing.toml").write_text(
        '[paths]\nlanding = "/srv/in"\n[lake]\nmemory_limit = "2GB"\n'
        '[metrics.seats]\ndisplay_name = "Seats"\naggregation = "max"\n'
    )
    s = load_settings(env={"BILLING_HOME": str(home), "BILLING_LAKE_MEMORY_LIMIT": "3GB"})
    assert s.landing_dir == Path("/srv/in")
    assert s.lake.memory_limit == "3GB"  # env wins over the file
    assert s.metrics["seats"].aggregation == "max"
    assert "api_calls" in s.metrics  # the file extends the default catalogue


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[lake]\nmemory_limit = [1]\n")
    with pytest.raises(ConfigError, match="bad.toml"):
        load_settings(bad, env={"BILLING_HOME": str(tmp_path)})
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml", env={})
    with pytest.raises(ConfigError, match="BILLING_WEBHOOKS_ALLOW_PRIVATE_ADDRESSES"):
        load_settings(
            env={"BILLING_HOME": str(tmp_path), "BILLING_WEBHOOKS_ALLOW_PRIVATE_ADDRESSES": "maybe"}
        )


def test_parse_date() -> None:
    assert str(parse_date("2024-02-29")) == "2024-02-29"
    for bad in ("2024-02-30", "2024-1-5", "yesterday", ""):
        with pytest.raises(InputError):
            parse_date(bad)
