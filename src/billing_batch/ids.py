"""Identifiers: prefixed strings (``inv_``, ``evt_``, ``pay_``, ``sub_``, ``run_``).

``new_id`` is time-ordered and random (for new records); ``stable_id`` is derived from
a key (for things that must keep their id when recomputed: webhook events, attempts).
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time


#: RFC 4648 base32 → Crockford's alphabet, whose ASCII order is the numeric order, so
#: that time-ordered ids also sort as strings.
_SORTABLE = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789abcdefghjkmnpqrstvwxyz"
)


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
