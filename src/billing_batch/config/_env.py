"""Where settings come from besides the defaults: the settings file's path, and the
environment's overrides (see :mod:`.settings` for the precedence)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._core.errors import ConfigError
from ._model import Model

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce_env(raw: str, annotation: Any) -> Any:
    """Turn an environment string into the value pydantic expects for a scalar field."""
    text = raw.strip()
    if annotation is bool:
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"not a boolean: {raw!r}")
    if annotation == tuple[int, ...]:
        return tuple(int(x) for x in text.replace(",", " ").split())
    return text


def env_overrides(
    env: Mapping[str, str],
    sections: Mapping[str, type[Model]],
    aliases: Mapping[tuple[str, str], tuple[str, ...]],
) -> dict[str, Any]:
    """``BILLING_<SECTION>_<KEY>`` (or a conventional alias) for every scalar key of each
    section, as TOML-shaped data; ``BILLING_PRICE_BOOK``."""
    out: dict[str, Any] = {}
    for section, model in sections.items():
        for name, field in model.model_fields.items():
            key = f"BILLING_{section.upper()}_{name.upper()}"
            if key not in env:
                key = next((a for a in aliases.get((section, name), ()) if a in env), key)
            if key in env:
                try:
                    value = _coerce_env(env[key], field.annotation)
                except (ConfigError, ValueError) as exc:
                    raise ConfigError(f"{key}: {exc}") from None
                out.setdefault(section, {})[name] = value
    if "BILLING_PRICE_BOOK" in env:
        out["price_book"] = env["BILLING_PRICE_BOOK"]
    return out


def merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` laid on ``base``, tables merged key by key."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def config_path_of(
    config: str | os.PathLike[str] | None, env: Mapping[str, str], home: Path
) -> Path | None:
    """The settings file: ``config``, else ``$BILLING_CONFIG``, else ``<home>/billing.toml``
    when it exists (None: no file)."""
    if config is not None:
        path = Path(config).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path
    if env.get("BILLING_CONFIG"):
        path = Path(env["BILLING_CONFIG"]).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"BILLING_CONFIG points to a missing file: {path}")
        return path
    candidate = home / "billing.toml"
    return candidate if candidate.is_file() else None


__all__ = ["config_path_of", "env_overrides", "merge"]
