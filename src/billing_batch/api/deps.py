"""What the route handlers receive: the settings, the caller, and the lake mirror."""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import BackgroundTasks, Depends, FastAPI, Request, Response, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.background import BackgroundTask

from .._core.errors import BillingError
from ..config.settings import Settings
from ..storage import mirror
from ..storage.mirror import mirror_to_lake
from .auth import KeyRing, Principal, authenticate

log = logging.getLogger("billing_batch.api")

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="`Authorization: Bearer <key>`: an API key from `billing-batch api-key create`",
)
_api_key = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="apiKey",
    description="The same key in an `X-API-Key` header",
)


class LakeMirror:
    """Copies the state tables into the lake after state changes, off the request path.

    No route asks for it: :func:`install_mirror` looks after every response whether the
    state changed (``storage.mirror.pending``: a committed transaction notes it) and, if
    so, runs :meth:`request` as a background task. ``mirror_to_lake`` takes the lake
    write lock (it may wait for an ingest) and copies every state table, so it runs
    after the answer is sent, and concurrent requests coalesce: while one pass runs,
    further requests only mark
    the mirror dirty and the running pass goes round once more. A failure is logged
    (the nightly run mirrors again); it never turns an answered request into an error.
    """

    def __init__(self, settings: Settings, *, enabled: bool = True) -> None:
        self.settings = settings
        self.enabled = enabled
        self._running = threading.Lock()
        self._state = threading.Lock()
        self._reasons: list[str] = []
        self.passes = 0

    def request(self, reason: str) -> None:
        if not self.enabled:
            return
        with self._state:
            self._reasons.append(reason)
        while True:
            if not self._running.acquire(blocking=False):
                return  # the running pass picks our reason up
            try:
                self._drain()
            finally:
                self._running.release()
            with self._state:  # a reason added after our last look, before the release
                if not self._reasons:
                    return

    def _drain(self) -> None:
        while True:
            with self._state:
                reasons, self._reasons = self._reasons, []
            if not reasons:
                return
            message = "api: " + "; ".join(reasons[:5])
            if len(reasons) > 5:
                message += f" (+{len(reasons) - 5} more)"
            try:
                mirror_to_lake(self.settings, reason=message)
                self.passes += 1
            except BillingError:
                log.exception("mirroring the state into the lake failed (%s)", message)


def install_mirror(app: FastAPI) -> None:
    """After any response: when the request changed the state, copy it into the lake in
    a background task (coalesced by :class:`LakeMirror`)."""

    @app.middleware("http")
    async def mirror_changes(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        lake_mirror: LakeMirror = request.app.state.mirror
        if lake_mirror.enabled and mirror.pending(lake_mirror.settings):
            task = BackgroundTask(lake_mirror.request, f"{request.method} {request.url.path}")
            if response.background is None:
                response.background = task
            else:
                tasks = BackgroundTasks([response.background, task])
                response.background = tasks
        return response


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_principal(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    x_api_key: Annotated[str | None, Security(_api_key)],
) -> Principal:
    ring: KeyRing = request.app.state.keyring
    return authenticate(ring, bearer.credentials if bearer else None, x_api_key)


SettingsDep = Annotated[Settings, Depends(get_settings)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
