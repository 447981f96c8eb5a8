"""API keys: stored hashed in the settings, presented as ``Authorization: Bearer <key>``
(or ``X-API-Key: <key>``).

* ``[[api.keys]]`` entries hold ``hash = "sha256:<hex>"`` (the SHA-256 of the key) and
  the ``workspace`` the key acts for; no ``workspace`` means a finance/admin key. The
  keys themselves are never stored: ``billing-batch api-key create`` prints a new one
  once, with the line to put in ``billing.toml``.
* A presented key is hashed and looked up by its hash: the comparison never touches the
  key's bytes, so the time taken says nothing about how much of a key matched.
* Scope: a workspace key sees and acts on its own workspace only. Reading anything of
  another workspace answers 404, exactly as if it did not exist (an invoice, its PDF,
  usage, a subscription); a write naming another workspace (recording usage, creating an
  invoice) answers 403. Finalize, void and subscription changes need an admin key (403).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from .._core.errors import ConfigError, NotFoundError
from ..config.settings import ApiKey
from .errors import ApiError

KEY_PREFIX = "bbk_"
_HASH = re.compile(r"^sha256:([0-9a-f]{64})$")


def new_key() -> str:
    """A new random API key (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The ``sha256:<hex>`` form stored in the settings."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: a workspace key, or an admin key (``workspace`` None)."""

    name: str
    workspace: str | None

    @property
    def is_admin(self) -> bool:
        return self.workspace is None

    def sees(self, workspace_id: str) -> bool:
        return self.workspace is None or self.workspace == workspace_id

    def check_read(self, workspace_id: str, not_found: str) -> None:
        """Another workspace's data does not exist for this key: NotFoundError."""
        if not self.sees(workspace_id):
            raise NotFoundError(not_found)

    def check_write(self, workspace_id: str) -> None:
        if not self.sees(workspace_id):
            raise ApiError(
                403,
                "forbidden",
                f"this API key acts for workspace {self.workspace} only, not {workspace_id}",
            )

    def require_admin(self, action: str) -> None:
        if not self.is_admin:
            raise ApiError(403, "admin_required", f"{action} needs a finance/admin API key")


class KeyRing:
    """The configured keys, by hash."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._by_hash: dict[str, Principal] = {}
        for n, k in enumerate(keys, start=1):
            m = _HASH.match(k.hash.strip().lower())
            if not m:
                raise ConfigError(
                    f"api.keys[{n}] ({k.name or 'unnamed'}): hash must be 'sha256:<64 hex>'"
                )
            name = k.name or (f"workspace {k.workspace}" if k.workspace else "admin")
            self._by_hash[m.group(1)] = Principal(name=name, workspace=k.workspace)

    def __len__(self) -> int:
        return len(self._by_hash)

    def lookup(self, key: str) -> Principal | None:
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
        return self._by_hash.get(digest)


def authenticate(ring: KeyRing, bearer: str | None, x_api_key: str | None) -> Principal:
    """The principal for the presented key, or a 401 ApiError."""
    key = bearer if bearer else x_api_key
    challenge = {"WWW-Authenticate": 'Bearer realm="billing"'}
    if not key:
        raise ApiError(
            401,
            "unauthorized",
            "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            headers=challenge,
        )
    principal = ring.lookup(key.strip())
    if principal is None:
        raise ApiError(401, "unauthorized", "invalid API key", headers=challenge)
    return principal
