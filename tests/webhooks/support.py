"""Shared by the webhook tests: a real receiver on 127.0.0.1 that verifies every
request, settings written as an operator would, and events recorded as the state
changes record them."""

from __future__ import annotations

import base64
import json
import ssl
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from billing_batch._core.errors import WebhookVerificationError
from billing_batch.config.settings import Settings, load_settings
from billing_batch.storage import state as store
from billing_batch.webhooks import delivery, outbox
from billing_batch.webhooks.report import DeliveryReport
from billing_batch.webhooks.signing import verify

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
SECRET_A = "whsec_" + base64.b64encode(b"secret-a-" * 4).decode()
SECRET_B = "whsec_" + base64.b64encode(b"secret-b-" * 4).decode()


# --- a real receiver ---------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    error: str | None = None


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that checks every request with ``verify``.

    ``actions`` is a queue of answers: an int status code, or ``"hang"`` (wait until
    ``release`` is set, so the sender times out); ``path_actions`` the same per request
    path (first); when both are empty it answers 200.
    """

    secret: str
    port: int = 0
    now: datetime | None = None
    actions: list[int | str] = field(default_factory=list)
    path_actions: dict[str, list[int | str]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    scheme: str = "http"

    def url(self, path: str = "/hooks", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    @property
    def ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.received]


@contextmanager
def serve(tls: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    rcv = Receiver(secret=SECRET_A, scheme="https" if tls else "http")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                verify(headers, body, rcv.secret, now=rcv.now)
                verified, error = True, None
            except WebhookVerificationError as exc:
                verified, error = False, str(exc)
            with rcv.lock:
                rcv.received.append(Received(self.path, headers, body, verified, error))
                queue = rcv.path_actions.get(self.path) or rcv.actions
                action = queue.pop(0) if queue else 200
            if action == "hang":
                rcv.release.wait(10)
                return
            status = int(action) if verified else 400
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("location", "http://127.0.0.1:1/elsewhere")
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    rcv.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield rcv
    finally:
        rcv.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


# --- settings and events -----------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def make_settings(
    tmp_path: Path,
    endpoints: Sequence[dict[str, Any]],
    *,
    allow_private: bool = True,
    timeout: float = 5.0,
) -> Settings:
    """Settings from a TOML file in tmp_path, like an operator would write them."""
    lines = [
        "[webhooks]",
        f"allow_private_addresses = {_toml_value(allow_private)}",
        f"timeout_seconds = {timeout}",
    ]
    for ep in endpoints:
        lines.append("[[webhooks.endpoints]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in ep.items()]
    config = tmp_path / "billing.toml"
    config.write_text("\n".join(lines) + "\n")
    return load_settings(config, env={"BILLING_HOME": str(tmp_path / "home")})


def endpoint(
    id: str, url: str, secret_env: str = "WH_SECRET_A", events: Sequence[str] = ()
) -> dict[str, Any]:
    ep: dict[str, Any] = {"id": id, "url": url, "secret_env": secret_env}
    if events:
        ep["events"] = list(events)
    return ep


def record(
    settings: Settings,
    type_: str = "billing.invoice.paid",
    subject: str = "inv_1",
    at: datetime = T0,
    **data: Any,
) -> str:
    """A state change's event, written in its own transaction as the callers do."""
    with store.opened(settings) as con, store.transaction(con):
        return outbox.record_event(
            con,
            type_,
            subject_id=subject,
            data={"id": subject, **data},
            at=at,
            workspace_id="ws_123",
        )


def deliveries(settings: Settings) -> dict[tuple[str, str], dict[str, Any]]:
    with store.opened(settings) as con:
        rows = con.execute("SELECT * FROM webhook_deliveries").fetchall()
    return {(r["event_id"], r["endpoint_id"]): dict(r) for r in rows}


def attempts(settings: Settings) -> list[dict[str, Any]]:
    with store.opened(settings) as con:
        rows = con.execute("SELECT * FROM webhook_attempts ORDER BY seq").fetchall()
    return [dict(r) for r in rows]


def run(settings: Settings, receiver: Receiver | None, now: datetime) -> DeliveryReport:
    if receiver is not None:
        receiver.now = now
    return delivery.deliver(settings, now=now)
