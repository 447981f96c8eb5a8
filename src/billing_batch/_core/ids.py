"""Identifiers: prefixed strings (``inv_``, ``evt_``, ``pay_``, ``sub_``, ``run_``), and
the one rule for workspace ids.

``new_id`` is time-ordered and random (for new records); ``stable_id`` is derived from
a key (for things that must keep their id when recomputed: webhook events, attempts).

**Workspace ids** (:func:`check_workspace_id`): 1 to 64 ASCII letters, digits, ``_``,
``-`` or ``.`` (:data:`WORKSPACE_ID_RULE`). This is the home of that rule: the CLI, the
HTTP API (its schema pattern is :data:`WORKSPACE_ID_PATTERN`) and the library's
services call it. ``sql/ingest_validate.sql`` states the same rule in SQL (it checks
each line's JSON text inside DuckDB); ``tests/_core/test_ids.py`` runs both on a
set of adversarial ids and asserts that they agree.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import threading
import time

from .errors import InputError

#: The workspace id rule, in words (error messages).
WORKSPACE_ID_RULE = "1-64 letters, digits, '_', '-' or '.'"
#: The same rule as an anchored regular expression (the HTTP API's schema ``pattern``).
WORKSPACE_ID_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"
_WORKSPACE_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}", re.ASCII)


def is_workspace_id(value: object) -> bool:
    """Whether ``value`` is a valid workspace id (a ``str`` following the rule)."""
    return isinstance(value, str) and _WORKSPACE_ID.fullmatch(value) is not None


def check_workspace_id(
    value: object, *, what: str = "workspace id", error: type[InputError] = InputError
) -> str:
    """``value`` when it is a valid workspace id; else ``error`` (an InputError) naming
    the value and the rule. Nothing is stripped or normalized: ``" ws_1"`` is refused."""
    if not is_workspace_id(value):
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise error(f"invalid {what} {shown}: expected {WORKSPACE_ID_RULE}")
    assert isinstance(value, str)
    return value


#: RFC 4648 base32 → Crockford's alphabet, whose ASCII order is the numeric order, so
#: that time-ordered ids also sort as strings.
_SORTABLE = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789abcdefghjkmnpqrstvwxyz")


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=").lower()


def _sortable_b32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=").translate(_SORTABLE)


_last: tuple[int, int] = (0, 0)
_last_guard = threading.Lock()


def new_id(prefix: str) -> str:
    """``inv_01j...``: 48-bit millisecond time + 80 random bits, base32; strictly
    increasing within a process (in the same millisecond, or if the clock steps back,
    the random part of the previous id plus one, as ULIDs do)."""
    global _last
    with _last_guard:
        ms = int(time.time() * 1000)
        last_ms, last_rand = _last
        if ms <= last_ms:
            ms, rand = last_ms, last_rand + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1  # room to count up
        _last = (ms, rand)
    return f"{prefix}_{_sortable_b32(ms.to_bytes(6, 'big') + rand.to_bytes(10, 'big'))}"


def stable_id(prefix: str, *parts: object) -> str:
    """The same parts always give the same id (SHA-256, 120 bits)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return f"{prefix}_{_b32(digest[:15])}"


__all__ = [
    "WORKSPACE_ID_PATTERN",
    "WORKSPACE_ID_RULE",
    "check_workspace_id",
    "is_workspace_id",
    "new_id",
    "stable_id",
]
