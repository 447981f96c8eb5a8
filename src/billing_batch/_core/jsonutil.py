"""Exact JSON: Decimals are written as plain JSON numbers (``550``, ``12.34``), never via
float; dates as ``YYYY-MM-DD``; datetimes as UTC ISO 8601 with ``Z``.

``loads`` parses numbers with a fraction as Decimal, so a document round-trips exactly.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import PurePath
from typing import Any

#: The C string encoder of the json module (``json.dumps(str, ensure_ascii=False)``).
_quote = json.encoder.encode_basestring


def decimal_text(value: Decimal) -> str:
    """``Decimal('550.00')`` → ``'550'``; ``Decimal('12.340')`` → ``'12.34'``; no exponent."""
    if not value.is_finite():
        raise ValueError(f"not a finite number: {value}")
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def datetime_text(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime in JSON output: {value!r}")
    text = value.astimezone(UTC).isoformat(timespec="microseconds")
    text = text.replace("+00:00", "Z")
    return text.replace(".000000Z", "Z")


def _encode(value: Any, indent: int | None, level: int) -> str:
    kind = type(value)
    # the common exact types first (a dict lookup beats a chain of isinstance checks)
    if kind is str:
        return _quote(value)
    if kind is Decimal:
        return decimal_text(value)
    if kind is dict:
        items = [_quote(str(k)) + ": " + _encode(v, indent, level + 1) for k, v in value.items()]
        return _wrap("{", "}", items, indent, level)
    if kind is list or kind is tuple:
        return _wrap("[", "]", [_encode(v, indent, level + 1) for v in value], indent, level)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if kind is int:
        return str(value)
    return _encode_other(value, indent, level)


def _encode_other(value: Any, indent: int | None, level: int) -> str:
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("NaN/Infinity cannot be written as JSON")
        return repr(value)
    if isinstance(value, str):
        return _quote(str(value))
    if isinstance(value, datetime):
        return _quote(datetime_text(value))
    if isinstance(value, date):
        return _quote(value.isoformat())
    if isinstance(value, Enum):
        return _encode(value.value, indent, level)
    if isinstance(value, PurePath):
        return _quote(str(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _encode(dataclasses.asdict(value), indent, level)
    if hasattr(value, "model_dump"):
        return _encode(value.model_dump(by_alias=True), indent, level)
    if isinstance(value, Mapping):
        items = [_quote(str(k)) + ": " + _encode(v, indent, level + 1) for k, v in value.items()]
        return _wrap("{", "}", items, indent, level)
    if isinstance(value, (list, tuple, set, frozenset)):
        seq = sorted(value) if isinstance(value, (set, frozenset)) else value
        return _wrap("[", "]", [_encode(v, indent, level + 1) for v in seq], indent, level)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _wrap(open_: str, close: str, items: list[str], indent: int | None, level: int) -> str:
    if not items:
        return open_ + close
    if indent is None:
        return open_ + ", ".join(items) + close
    pad = " " * (indent * (level + 1))
    end = " " * (indent * level)
    return open_ + "\n" + ",\n".join(pad + i for i in items) + "\n" + end + close


def dumps(value: Any, *, indent: int | None = None) -> str:
    """Serialize to exact JSON text."""
    return _encode(value, indent, 0)


def loads(text: str | bytes) -> Any:
    """Parse JSON; numbers with a fraction or exponent become Decimal."""
    return json.loads(text, parse_float=Decimal)
