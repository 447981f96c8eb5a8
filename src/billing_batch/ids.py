"""Identifiers: prefixed strings (``inv_``, ``evt_``, ``pay_``, ``sub_``, ``run_``).

``new_id`` is time-ordered and random (for new records); ``stable_id`` is derived from
a key (for things that must keep their id when recomputed: webhook events, attempts).
"""

from __future__ import annotations

import base64
import hashlib
import os
import time


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=").lower()


def new_id(prefix: str) -> str:
    """``inv_01j...``: 48-bit millisecond time + 80 random bits, base32 (sortable)."""
    ms = int(time.time() * 1000).to_bytes(6, "big")
    return f"{prefix}_{_b32(ms + os.urandom(10))}"


def stable_id(prefix: str, *parts: object) -> str:
    """The same parts always give the same id (SHA-256, 120 bits)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return f"{prefix}_{_b32(digest[:15])}"
