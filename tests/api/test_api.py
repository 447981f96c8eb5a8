"""The HTTP API through the real app: every endpoint, auth and isolation, bad input, the
error format, the lake mirror, a schemathesis run, and one server on 127.0.0.1."""

from __future__ import annotations

import functools
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
import hypothesis
import pytest
import schemathesis
import uvicorn
from fastapi import FastAPI
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from billing_batch._core.errors import ConfigError, LakeError, LockedError
from billing_batch._core.jsonutil import loads
from billing_batch.api import create_app, models
from billing_batch.api.auth import KeyRing, hash_key
from billing_batch.api.deps import LakeMirror
from billing_batch.cli import main as cli_main
from billing_batch.config.settings import ApiKey, ApiSettings, Settings, load_settings
from billing_batch.invoicing import service as invoices
from billing_batch.storage.lake import Lake
from billing_batch.usage.ingest import ingest
from billing_batch.usage.recording import MAX_BODY_BYTES, MAX_EVENTS
from billing_batch.usage.rollup import refresh_rollup
from tests.conftest import event, write_log

ADMIN = "bbk_test_admin"
KEY_A = "bbk_test_ws_a"
KEY_B = "bbk_test_ws_b"
NO_KEY = ""


# --- fixtures -----------------------------------------------------------------------------
class AppClient:
    """A synchronous client over the ASGI app (httpx's ASGITransport on a portal thread):
    every request runs the real app, background tasks included, in process."""

    def __init__(self, app: FastAPI) -> None:
        self._portal_cm: AbstractContextManager[Any] = anyio.from_thread.start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        )

    def request(self, method: str, url: str, *, key: str = ADMIN, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if key:
            headers.setdefault("Authorization", f"Bearer {key}")
        call = functools.partial(self.http.request, method, url, headers=headers, **kwargs)
        response: httpx.Response = self._portal.call(call)
        return response

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        self._portal.call(self.http.aclose)
        self._portal_cm.__exit__(None, None, None)


def with_keys(settings: Settings) -> Settings:
    keys = (
        ApiKey(hash=hash_key(ADMIN), name="finance"),
        ApiKey(hash=hash_key(KEY_A), workspace="ws_a"),
        ApiKey(hash=hash_key(KEY_B), workspace="ws_b"),
    )
    return settings.model_copy(update={"api": ApiSettings(keys=keys)})


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return with_keys(settings)


@pytest.fixture
def client(api_settings: Settings) -> Iterator[AppClient]:
    c = AppClient(create_app(api_settings, mirror=False))
    yield c
    c.close()


def seed_usage(settings: Settings, tmp_path: Path) -> None:
    """January 2024: ws_a the seed's 45,000 api_calls and 100 contracts; ws_b a little."""
    lines = [
        event(id="a1", workspace="ws_a", quantity=1500, timestamp="2024-01-15T10:00:00Z"),
        event(id="a2", workspace="ws_a", quantity=2000, timestamp="2024-01-16T10:00:00Z"),
        event(id="a3", workspace="ws_a", quantity=41500, timestamp="2024-01-20T10:00:00Z"),
        event(id="a4", workspace="ws_a", metric="contracts", quantity=100),
        event(id="b1", workspace="ws_b", quantity=10, timestamp="2024-01-03T00:00:00Z"),
    ]
    ingest(settings, [write_log(tmp_path / "seed" / "jan.jsonl", lines)])
    refresh_rollup(settings)


def error(r: httpx.Response) -> dict[str, Any]:
    assert r.headers["content-type"].startswith("application/json"), r.text
    body = r.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str)
    err: dict[str, Any] = body["error"]
    return err


def usage_body(**kw: Any) -> dict[str, Any]:
    base = {
        "workspaceId": "ws_a",
        "metric": "api_calls",
        "quantity": 1000,
        "timestamp": "2024-01-15T10:00:00Z",
    }
    base.update(kw)
    return base


# --- the schema ---------------------------------------------------------------------------
def test_openapi_has_the_seed_endpoints_fields_and_examples(client: AppClient) -> None:
    r = client.get("/openapi.json", key=NO_KEY)  # public
    assert r.status_code == 200
    spec = r.json()
    paths = spec["paths"]
    for path, method in [
        ("/v1/billing/usage", "post"),
        ("/v1/billing/usage", "get"),
        ("/v1/billing/invoices", "post"),
        ("/v1/billing/invoices", "get"),
        ("/v1/billing/invoices/{invoice_id}", "get"),
        ("/v1/billing/invoices/{invoice_id}/pay", "post"),
        ("/v1/billing/invoices/{invoice_id}/pdf", "get"),
        ("/v1/billing/invoices/{invoice_id}/finalize", "post"),
        ("/v1/billing/invoices/{invoice_id}/void", "post"),
        ("/v1/billing/subscriptions", "post"),
        ("/v1/billing/subscriptions/{workspace_id}", "get"),
        ("/v1/billing/subscriptions/{workspace_id}/change", "post"),
        ("/v1/billing/subscriptions/{workspace_id}/cancel", "post"),
    ]:
        assert method in paths[path], (path, method)
    schemas = spec["components"]["schemas"]
    event_schema = schemas["UsageEvent"]
    assert set(event_schema["required"]) == {"workspaceId", "metric", "quantity", "timestamp"}
    assert event_schema["properties"]["metric"]["enum"] == [
        "api_calls",
        "contracts",
        "kyc_checks",
        "storage",
    ]
    assert event_schema["properties"]["quantity"]["type"] == "number"
    assert schemas["Invoice"]["properties"]["lineItems"]["items"]["$ref"].endswith("LineItem")
    assert schemas["Invoice"]["properties"]["total"]["type"] == "number"
    assert schemas["Invoice"]["examples"][0]["total"] == 550
    assert schemas["Usage"]["examples"][0]["breakdown"][0] == {
        "date": "2024-01-15",
        "quantity": 1500,
    }
    assert set(schemas["CreateInvoice"]["properties"]) == {"workspaceId", "period"}
    post_usage = paths["/v1/billing/usage"]["post"]["requestBody"]["content"]["application/json"]
    assert {"one", "batch"} <= set(post_usage["examples"])
    params = {p["name"] for p in paths["/v1/billing/usage"]["get"]["parameters"]}
    assert params == {"workspaceId", "metric", "startDate", "endDate"}
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "apiKey"}


# --- authentication -----------------------------------------------------------------------
ROUTES = [
    ("POST", "/v1/billing/usage"),
    ("GET", "/v1/billing/usage?workspaceId=ws_a&startDate=2024-01-01&endDate=2024-01-31"),
    ("POST", "/v1/billing/invoices"),
    ("GET", "/v1/billing/invoices"),
    ("GET", "/v1/billing/invoices/inv_x"),
    ("GET", "/v1/billing/invoices/inv_x/pdf"),
    ("POST", "/v1/billing/invoices/inv_x/pay"),
    ("POST", "/v1/billing/invoices/inv_x/finalize"),
    ("POST", "/v1/billing/invoices/inv_x/void"),
    ("POST", "/v1/billing/subscriptions"),
    ("GET", "/v1/billing/subscriptions/ws_a"),
    ("POST", "/v1/billing/subscriptions/ws_a/change"),
    ("POST", "/v1/billing/subscriptions/ws_a/cancel"),
]


@pytest.mark.parametrize(("method", "url"), ROUTES)
def test_no_key_or_a_bad_key_is_401(client: AppClient, method: str, url: str) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer bbk_not_a_key"},
        {"X-API-Key": "bbk_not_a_key"},
        {"Authorization": f"Basic {ADMIN}"},
        {"Authorization": "Bearer "},
    ):
        r = client.request(method, url, key=NO_KEY, headers=headers, json={})
        assert r.status_code == 401, (headers, r.text)
        assert error(r)["code"] == "unauthorized"
        assert r.headers["www-authenticate"].startswith("Bearer")


def test_x_api_key_header_works_and_keys_are_not_stored(
    client: AppClient, api_settings: Settings
) -> None:
    r = client.get("/v1/billing/invoices", key=NO_KEY, headers={"X-API-Key": KEY_A})
    assert r.status_code == 200 and r.json() == {"data": [], "hasMore": False}
    dumped = api_settings.model_dump_json()
    assert ADMIN not in dumped and KEY_A not in dumped


def test_a_malformed_key_hash_is_a_config_error(settings: Settings) -> None:
    bad = settings.model_copy(
        update={"api": ApiSettings(keys=(ApiKey(hash="md5:abc", workspace="ws_a"),))}
    )
    with pytest.raises(ConfigError, match="sha256"):
        create_app(bad)
    ring = KeyRing([ApiKey(hash=hash_key("k").upper().replace("SHA256", "sha256"))])
    assert ring.lookup("k") is not None and ring.lookup("K") is None


def test_unknown_route_and_method_answer_json(client: AppClient) -> None:
    r = client.get("/v1/billing/nope")
    assert r.status_code == 404 and error(r)["code"] == "not_found"
    r = client.request("DELETE", "/v1/billing/invoices/inv_x")
    assert r.status_code == 405 and error(r)["code"] == "method_not_allowed"
    r = client.request("PUT", "/v1/billing/usage", key=NO_KEY)
    assert r.status_code == 405 and error(r)["code"] == "method_not_allowed"


# --- recording usage ----------------------------------------------------------------------
def landed(settings: Settings) -> list[dict[str, Any]]:
    files = sorted((settings.landing_dir / "api").rglob("*.jsonl"))
    return [json.loads(x) for f in files for x in f.read_text().splitlines()]


def test_record_one_event_and_a_batch(client: AppClient, api_settings: Settings) -> None:
    r = client.post("/v1/billing/usage", json=usage_body(), key=KEY_A)
    assert r.status_code == 202, r.text
    one = r.json()
    assert one["accepted"] == 1 and one["ids"][0].startswith("usg_")
    batch = {
        "events": [
            usage_body(id="evt_1", quantity=1500),
            usage_body(id="evt_2", metric="storage", quantity=12.5),
        ]
    }
    r = client.post("/v1/billing/usage", json=batch, key=KEY_A)
    assert r.status_code == 202 and r.json() == {"accepted": 2, "ids": ["evt_1", "evt_2"]}
    got = landed(api_settings)
    assert [e["id"] for e in got] == [one["ids"][0], "evt_1", "evt_2"]
    assert got[2]["quantity"] == 12.5
    day = datetime.now(UTC).date().isoformat()
    assert all(p.parent.name == day for p in (api_settings.landing_dir / "api").rglob("*.jsonl"))


def test_idempotency_key_gives_the_same_ids_on_retry(client: AppClient) -> None:
    body = {"events": [usage_body(), usage_body(quantity=2)]}
    first = client.post("/v1/billing/usage", json=body, headers={"Idempotency-Key": "r-1"})
    again = client.post("/v1/billing/usage", json=body, headers={"Idempotency-Key": "r-1"})
    other = client.post("/v1/billing/usage", json=body, headers={"Idempotency-Key": "r-2"})
    assert first.status_code == again.status_code == other.status_code == 202
    assert first.json()["ids"] == again.json()["ids"]
    assert not set(first.json()["ids"]) & set(other.json()["ids"])
    for bad_key in ("é".encode(), "k" * 256):
        r = client.post(
            "/v1/billing/usage", json=usage_body(), headers={"Idempotency-Key": bad_key}
        )
        assert r.status_code == 400 and "Idempotency-Key" in error(r)["message"]


BAD_EVENTS: list[tuple[Any, str]] = [
    (usage_body(workspaceId=""), "invalid workspaceId"),
    (usage_body(workspaceId="ws a"), "invalid workspaceId"),
    (usage_body(workspaceId=12), "invalid workspaceId"),
    ({k: v for k, v in usage_body().items() if k != "workspaceId"}, "missing field workspaceId"),
    (usage_body(metric="bandwidth"), 'unknown metric "bandwidth"'),
    (usage_body(metric=None), "missing field metric"),
    (usage_body(quantity="5"), "quantity must be a number, got"),
    (usage_body(quantity=True), "quantity must be a number, got true"),
    (usage_body(quantity=None), "missing field quantity"),
    (usage_body(quantity=-1), "quantity must not be negative, got -1"),
    (usage_body(quantity=1.5), 'quantity must be a whole number for metric "api_calls"'),
    (usage_body(metric="storage", quantity=0.1234567891), "more precision than 9 decimal"),
    (usage_body(quantity=10**40), "quantity too large"),
    (usage_body(quantity=[1]), "quantity must be a number"),
    (usage_body(timestamp="2024-01-15T10:00:00"), "timestamp has no time zone"),
    (usage_body(timestamp="2024-01-15"), "timestamp has no time zone"),
    (usage_body(timestamp="yesterday"), "not a valid ISO 8601"),
    (usage_body(timestamp="2024-02-30T10:00:00Z"), "not a valid ISO 8601"),
    (usage_body(timestamp=1705312800), "timestamp must be an ISO 8601 string"),
    (usage_body(timestamp=None), "missing field timestamp"),
    (usage_body(id=5), "id must be a non-empty string"),
    (usage_body(id=""), "id must be a non-empty string"),
    (usage_body(id="x" * 300), "id longer than 255"),
    (usage_body(properties=[1]), "properties must be a JSON object"),
    ([usage_body()], "not a JSON object (got array)"),
    ("just a string", "not a JSON object (got varchar)"),
]


@pytest.mark.parametrize(("bad", "reason"), BAD_EVENTS)
def test_bad_events_are_refused_with_ingest_reasons(
    client: AppClient, api_settings: Settings, bad: Any, reason: str
) -> None:
    r = client.post("/v1/billing/usage", json=bad)
    assert r.status_code == 400, r.text
    err = error(r)
    assert err["code"] == "invalid_usage"
    assert err["message"].startswith("invalid usage event: ")
    assert reason in err["errors"][0]["reason"] and err["errors"][0]["index"] == 0
    # in a batch: the whole batch is refused, the event named by its index
    r = client.post("/v1/billing/usage", json={"events": [usage_body(), bad]})
    assert r.status_code == 400
    err = error(r)
    assert [e["index"] for e in err["errors"]] == [1]
    assert reason in err["errors"][0]["reason"]
    assert "1 of 2 events is invalid" in err["message"]
    assert landed(api_settings) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"{nope", "not valid JSON"),
        (b'{"events": []}', "at least one event"),
        (b'{"events": null}', "must be an array"),
        (b'{"events": [], "source": "x"}', "unknown field(s) 'source'"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_bad_request_bodies(client: AppClient, content: bytes, message: str) -> None:
    r = client.post(
        "/v1/billing/usage", content=content, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    err = error(r)
    assert err["code"] == "invalid_input" and message in err["message"]


def test_batch_and_body_size_limits(client: AppClient, api_settings: Settings) -> None:
    too_many = {"events": [usage_body(id=f"e{i}") for i in range(MAX_EVENTS + 1)]}
    r = client.post("/v1/billing/usage", json=too_many)
    assert r.status_code == 400 and f"at most {MAX_EVENTS} events" in error(r)["message"]
    huge = usage_body(properties={"blob": "x" * MAX_BODY_BYTES})
    r = client.post("/v1/billing/usage", json=huge)
    assert r.status_code == 413 and error(r)["code"] == "payload_too_large"
    full = {"events": [usage_body(id=f"e{i}") for i in range(MAX_EVENTS)]}
    r = client.post("/v1/billing/usage", json=full)
    assert r.status_code == 202 and r.json()["accepted"] == MAX_EVENTS
    assert len(landed(api_settings)) == MAX_EVENTS


def test_unknown_event_fields_are_ignored_like_ingest(client: AppClient) -> None:
    r = client.post("/v1/billing/usage", json=usage_body(id="u1", comment="from the API"))
    assert r.status_code == 202 and r.json()["ids"] == ["u1"]


def test_workspace_keys_record_for_their_own_workspace_only(
    client: AppClient, api_settings: Settings
) -> None:
    r = client.post("/v1/billing/usage", json=usage_body(workspaceId="ws_b"), key=KEY_A)
    assert r.status_code == 403 and error(r)["code"] == "forbidden"
    batch = {"events": [usage_body(), usage_body(workspaceId="ws_b")]}
    r = client.post("/v1/billing/usage", json=batch, key=KEY_A)
    assert r.status_code == 403
    assert landed(api_settings) == []
    r = client.post("/v1/billing/usage", json=batch, key=ADMIN)
    assert r.status_code == 202


def test_recorded_usage_shows_in_get_usage_after_ingest(
    client: AppClient, api_settings: Settings
) -> None:
    url = (
        "/v1/billing/usage?workspaceId=ws_a&metric=api_calls"
        "&startDate=2024-01-01&endDate=2024-01-31"
    )
    r = client.get(url, key=KEY_A)
    assert r.status_code == 200 and r.json() == {
        "metric": "api_calls",
        "total": 0,
        "breakdown": [],
    }
    batch = {
        "events": [
            usage_body(quantity=1500),
            usage_body(quantity=2000, timestamp="2024-01-16T23:30:00-02:00"),  # 17th UTC
            usage_body(metric="storage", quantity=12.5),
        ]
    }
    assert client.post("/v1/billing/usage", json=batch, key=KEY_A).status_code == 202
    assert client.get(url, key=KEY_A).json()["total"] == 0  # not before the ingest
    report = ingest(api_settings)
    assert report.to_dict()["accepted"] == 3
    refresh_rollup(api_settings)
    r = client.get(url, key=KEY_A)
    assert r.status_code == 200
    assert loads(r.content) == {
        "metric": "api_calls",
        "total": 3500,
        "breakdown": [
            {"date": "2024-01-15", "quantity": 1500},
            {"date": "2024-01-17", "quantity": 2000},
        ],
    }
    r = client.get(url.replace("metric=api_calls&", ""), key=KEY_A)
    every = {m["metric"]: m for m in loads(r.content)["metrics"]}
    assert list(every) == ["api_calls", "contracts", "kyc_checks", "storage"]
    assert every["storage"]["breakdown"] == [{"date": "2024-01-15", "quantity": Decimal("12.5")}]


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("workspaceId=ws_a&startDate=2024-01-01", 422, "invalid_request"),
        ("workspaceId=ws_a&startDate=2024-1-1&endDate=2024-01-31", 422, "invalid_request"),
        ("workspaceId=ws_a&startDate=2024-01-01&endDate=2024-13-01", 422, "invalid_request"),
        ("workspaceId=ws_a&startDate=1969-12-31&endDate=2024-01-31", 422, "invalid_request"),
        ("workspaceId=ws_a&startDate=2024-01-01T00:00:00&endDate=2024-01-31", 422, None),
        ("workspaceId=ws%20a&startDate=2024-01-01&endDate=2024-01-31", 422, None),
        ("startDate=2024-01-01&endDate=2024-01-31", 422, None),
        ("workspaceId=ws_a&startDate=2024-02-01&endDate=2024-01-31", 400, "invalid_usage_query"),
        ("workspaceId=ws_a&startDate=2024-01-01&endDate=2025-01-31", 400, "invalid_usage_query"),
        (
            "workspaceId=ws_a&metric=bandwidth&startDate=2024-01-01&endDate=2024-01-31",
            400,
            "invalid_usage_query",
        ),
    ],
)
def test_get_usage_bad_input(client: AppClient, query: str, status: int, code: str | None) -> None:
    r = client.get(f"/v1/billing/usage?{query}")
    assert r.status_code == status, r.text
    assert error(r)["code"] == (code or "invalid_request")


def test_usage_of_another_workspace_is_404(
    client: AppClient, api_settings: Settings, tmp_path: Path
) -> None:
    seed_usage(api_settings, tmp_path)
    q = "metric=api_calls&startDate=2024-01-01&endDate=2024-01-31"
    r = client.get(f"/v1/billing/usage?workspaceId=ws_b&{q}", key=KEY_A)
    assert r.status_code == 404 and error(r)["code"] == "not_found"
    r = client.get(f"/v1/billing/usage?workspaceId=ws_nobody&{q}", key=KEY_A)
    assert r.status_code == 404  # the same answer whether the workspace exists or not
    assert client.get(f"/v1/billing/usage?workspaceId=ws_b&{q}", key=KEY_B).json()["total"] == 10
    assert client.get(f"/v1/billing/usage?workspaceId=ws_a&{q}").json()["total"] == 45000


# --- invoices -----------------------------------------------------------------------------
JAN = {"start": "2024-01-01", "end": "2024-01-31"}
FEB = {"start": "2024-02-01", "end": "2024-02-29"}


def test_invoice_lifecycle_over_the_api(
    client: AppClient, api_settings: Settings, tmp_path: Path
) -> None:
    seed_usage(api_settings, tmp_path)
    r = client.post("/v1/billing/invoices", json={"workspaceId": "ws_a", "period": JAN}, key=KEY_A)
    assert r.status_code == 201, r.text
    inv = loads(r.content)
    models.Invoice.model_validate(inv)  # the documented shape
    assert (inv["workspaceId"], inv["status"], inv["subtotal"], inv["tax"], inv["total"]) == (
        "ws_a",
        "draft",
        Decimal("500"),
        Decimal("50"),
        Decimal("550"),
    )
    assert [(x["description"], x["amount"]) for x in inv["lineItems"]] == [
        ("API Calls (45,000)", 450),
        ("Contracts (100)", 50),
    ]
    assert b'"total": 550' in r.content  # an exact JSON number, not "550.00" nor 550.0
    # the same period again: the draft is refreshed, same id
    again = client.post("/v1/billing/invoices", json={"workspaceId": "ws_a", "period": JAN})
    assert again.status_code == 200 and again.json()["id"] == inv["id"]

    assert client.get(f"/v1/billing/invoices/{inv['id']}", key=KEY_A).json()["id"] == inv["id"]
    pdf = client.get(f"/v1/billing/invoices/{inv['id']}/pdf", key=KEY_A)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")
    assert f'filename="{inv["id"]}.pdf"' in pdf.headers["content-disposition"]

    # finalize: admin only
    r = client.post(f"/v1/billing/invoices/{inv['id']}/finalize", key=KEY_A)
    assert r.status_code == 403 and error(r)["code"] == "admin_required"
    r = client.post(f"/v1/billing/invoices/{inv['id']}/finalize")
    assert r.status_code == 200, r.text
    final = r.json()
    assert final["status"] == "open" and final["number"].startswith("INV-")
    r = client.post(f"/v1/billing/invoices/{inv['id']}/finalize")
    assert r.status_code == 409 and error(r)["code"] == "invalid_state"
    # by number too; the original PDF is the one written at finalize
    by_number = client.get(f"/v1/billing/invoices/{final['number']}", key=KEY_A)
    assert by_number.json()["id"] == inv["id"]
    stored = invoices.get_invoice(api_settings, inv["id"])
    assert stored.pdf_path is not None
    pdf = client.get(f"/v1/billing/invoices/{final['number']}/pdf?copy=original", key=KEY_A)
    assert pdf.content == Path(stored.pdf_path).read_bytes()
    assert f'filename="{final["number"]}-original.pdf"' in pdf.headers["content-disposition"]
    current = client.get(f"/v1/billing/invoices/{final['number']}/pdf", key=KEY_A)
    assert current.headers["x-invoice-copy"] == "current"
    assert f'filename="{final["number"]}.pdf"' in current.headers["content-disposition"]
    # a finalized period cannot be drafted again
    r = client.post("/v1/billing/invoices", json={"workspaceId": "ws_a", "period": JAN})
    assert r.status_code == 409

    # list: a workspace key sees its own; admin sees all and filters
    client.post("/v1/billing/invoices", json={"workspaceId": "ws_b", "period": JAN})
    mine = client.get("/v1/billing/invoices", key=KEY_A).json()
    assert [i["id"] for i in mine["data"]] == [inv["id"]]
    assert len(client.get("/v1/billing/invoices").json()["data"]) == 2
    drafts = client.get("/v1/billing/invoices?status=draft").json()["data"]
    assert [i["workspaceId"] for i in drafts] == ["ws_b"]
    page = client.get("/v1/billing/invoices?limit=1").json()
    assert len(page["data"]) == 1 and page["hasMore"] is True
    r = client.get("/v1/billing/invoices?workspaceId=ws_b", key=KEY_A)
    assert r.status_code == 404
    r = client.get("/v1/billing/invoices?status=late")
    assert r.status_code == 422 and error(r)["code"] == "invalid_request"

    # void: admin only
    r = client.post(f"/v1/billing/invoices/{inv['id']}/void", json={"reason": "x"}, key=KEY_A)
    assert r.status_code == 403
    r = client.post(f"/v1/billing/invoices/{inv['id']}/void", json={"reason": "issued in error"})
    assert r.status_code == 200 and r.json()["status"] == "void"
    r = client.post(f"/v1/billing/invoices/{inv['id']}/void")
    assert r.status_code == 409


def test_another_workspaces_invoice_is_404_like_a_missing_one(
    client: AppClient, api_settings: Settings, tmp_path: Path
) -> None:
    seed_usage(api_settings, tmp_path)
    b = client.post("/v1/billing/invoices", json={"workspaceId": "ws_b", "period": JAN}).json()
    for suffix, method in (("", "GET"), ("/pdf", "GET"), ("/pay", "POST")):
        theirs = client.request(method, f"/v1/billing/invoices/{b['id']}{suffix}", key=KEY_A)
        missing = client.request(method, f"/v1/billing/invoices/inv_nothing{suffix}", key=KEY_A)
        assert theirs.status_code == missing.status_code == 404
        assert error(theirs)["message"] == f"no invoice {b['id']!r}"
        assert error(missing)["message"] == "no invoice 'inv_nothing'"
    r = client.post("/v1/billing/invoices", json={"workspaceId": "ws_b", "period": JAN}, key=KEY_A)
    assert r.status_code == 403 and error(r)["code"] == "forbidden"
    assert client.get(f"/v1/billing/invoices/{b['id']}", key=KEY_B).status_code == 200
    assert client.get(f"/v1/billing/invoices/{b['id']}").status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"workspaceId": "ws_a"}, 422, "period"),
        ({"workspaceId": "ws_a", "period": {"start": "2024-01-01"}}, 422, "period.end"),
        ({"workspaceId": "ws_a", "period": {**JAN, "end": "31/01/2024"}}, 422, "period.end"),
        ({"workspaceId": "ws_a", "period": {**JAN, "start": 20240101}}, 422, "period.start"),
        ({"workspaceId": "ws_a", "period": {**JAN, "start": "0001-01-01"}}, 422, "period.start"),
        ({"workspaceId": "ws a", "period": JAN}, 422, "workspaceId"),
        ({"workspaceId": 7, "period": JAN}, 422, "workspaceId"),
        ({"workspaceId": "ws_a", "period": JAN, "currency": "EUR"}, 422, "currency"),
        ({"workspaceId": "ws_a", "period": {**JAN, "x": 1}}, 422, "period.x"),
        ({"workspaceId": "ws_a", "period": {**JAN, "start": "2024-02-01"}}, 400, None),
        ({"workspaceId": "ws_a", "period": {**JAN, "end": "2025-06-30"}}, 400, None),
        ([], 422, None),
    ],
)  # fmt: skip
def test_create_invoice_bad_input(
    client: AppClient, body: Any, status: int, field: str | None
) -> None:
    r = client.post("/v1/billing/invoices", json=body)
    assert r.status_code == status, r.text
    err = error(r)
    if status == 422:
        assert err["code"] == "invalid_request"
        if field:
            assert field in [e["field"] for e in err["errors"]], err
    else:
        assert err["code"] == "invalid_input"


def test_invoice_path_and_body_limits(client: AppClient) -> None:
    assert client.get("/v1/billing/invoices/" + "x" * 200).status_code == 422
    r = client.post("/v1/billing/invoices/inv_x/pay", json={"paymentMethod": "pm bad"})
    assert r.status_code == 422 and error(r)["errors"][0]["field"] == "paymentMethod"
    r = client.post(
        "/v1/billing/invoices/inv_x/pay", json={"paymentMethod": "pm_card_visa", "x": 1}
    )
    assert r.status_code == 422
    r = client.post("/v1/billing/invoices/inv_x/void", json={"reason": 5})
    assert r.status_code == 422


# --- payments -----------------------------------------------------------------------------
def finalized_invoice(client: AppClient, settings: Settings, tmp_path: Path) -> dict[str, Any]:
    seed_usage(settings, tmp_path)
    inv = client.post("/v1/billing/invoices", json={"workspaceId": "ws_a", "period": JAN}).json()
    r = client.post(f"/v1/billing/invoices/{inv['id']}/finalize")
    assert r.status_code == 200
    out: dict[str, Any] = r.json()
    return out


def test_pay_without_stripe_is_503_and_a_draft_stays_a_draft(
    client: AppClient, api_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    seed_usage(api_settings, tmp_path)
    draft = client.post("/v1/billing/invoices", json={"workspaceId": "ws_a", "period": JAN})
    r = client.post(
        f"/v1/billing/invoices/{draft.json()['id']}/pay",
        json={"paymentMethod": "pm_card_visa"},
        key=KEY_A,
    )
    assert r.status_code == 503 and error(r)["code"] == "stripe_not_configured"
    assert invoices.get_invoice(api_settings, draft.json()["id"]).status == "draft"
    final = client.post(f"/v1/billing/invoices/{draft.json()['id']}/finalize").json()
    r = client.post(
        f"/v1/billing/invoices/{final['id']}/pay", json={"paymentMethod": "pm_card_visa"}
    )
    assert r.status_code == 503
    assert error(r) == {
        "code": "stripe_not_configured",
        "message": "payments are not configured on this server",
    }


@pytest.fixture
def fake_stripe(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from tests.fake_stripe import FakeStripe, FakeStripeServer

    fake = FakeStripe(api_key="sk_test_fake")
    with FakeStripeServer(fake) as server:
        monkeypatch.setenv("STRIPE_API_KEY", "sk_test_fake")
        monkeypatch.setenv("STRIPE_API_BASE", server.url)
        yield fake


def test_pay_succeeds_and_declines_through_stripe(
    client: AppClient, api_settings: Settings, tmp_path: Path, fake_stripe: Any
) -> None:
    inv = finalized_invoice(client, api_settings, tmp_path)
    url = f"/v1/billing/invoices/{inv['id']}/pay"
    r = client.post(url, json={"paymentMethod": "pm_card_chargeDeclined"}, key=KEY_A)
    assert r.status_code == 402, r.text
    err = error(r)
    assert err["code"] == "payment_declined" and err["declineCode"] == "generic_decline"
    assert err["payment"]["status"] == "declined"
    r = client.post(url, json={"paymentMethod": "pm_card_visa"}, key=KEY_A)
    assert r.status_code == 200, r.text
    paid = loads(r.content)
    models.Payment.model_validate(paid)  # the documented shape
    assert paid["succeeded"] is True and paid["amount"] == 550
    assert paid["invoice"]["status"] == "paid"
    assert len(fake_stripe.charges) == 1
    r = client.post(url, json={"paymentMethod": "pm_card_visa"}, key=KEY_A)
    assert r.status_code == 409  # paid already; never charged twice
    assert len(fake_stripe.charges) == 1


# --- subscriptions ------------------------------------------------------------------------
def test_subscriptions_mirror_the_cli(client: AppClient) -> None:
    body = {"workspaceId": "ws_a", "plan": "growth", "start": "2024-01-01", "anchorDay": 15}
    r = client.post("/v1/billing/subscriptions", json=body, key=KEY_A)
    assert r.status_code == 403 and error(r)["code"] == "admin_required"
    r = client.post("/v1/billing/subscriptions", json=body)
    assert r.status_code == 201, r.text
    view = r.json()
    assert view["workspaceId"] == "ws_a" and view["current"]["plan"] == "growth"
    assert view["current"]["anchorDay"] == 15
    r = client.post("/v1/billing/subscriptions", json=body)
    assert r.status_code == 400 and error(r)["code"] == "invalid_subscription"

    assert client.get("/v1/billing/subscriptions/ws_a", key=KEY_A).status_code == 200
    r = client.get("/v1/billing/subscriptions/ws_a", key=KEY_B)
    assert r.status_code == 404
    assert error(r) == {"code": "not_found", "message": "workspace ws_a has no subscription"}
    r = client.get("/v1/billing/subscriptions/ws_a?on=2023-12-31")
    assert r.status_code == 200

    r = client.post(
        "/v1/billing/subscriptions/ws_a/change", json={"plan": "payg", "effective": "2024-03-15"}
    )
    assert r.status_code == 200 and [p["plan"] for p in r.json()["current"]["plans"]] == [
        "growth",
        "payg",
    ]
    r = client.post(
        "/v1/billing/subscriptions/ws_a/change", json={"plan": "nope", "effective": "2024-04-01"}
    )
    assert r.status_code == 400
    r = client.post(
        "/v1/billing/subscriptions/ws_a/cancel", json={"effective": "2024-06-01"}, key=KEY_A
    )
    assert r.status_code == 403
    r = client.post("/v1/billing/subscriptions/ws_a/cancel", json={"effective": "2024-06-01"})
    assert r.status_code == 200 and r.json()["current"]["canceledFrom"] == "2024-06-01"
    r = client.post("/v1/billing/subscriptions/ws_zz/cancel", json={"effective": "2024-06-01"})
    assert r.status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"workspaceId": "ws_a", "plan": "growth", "start": "2024-01-01", "anchorDay": 29},
        {"workspaceId": "ws_a", "plan": "growth", "start": "2024-01-01", "anchorDay": "1"},
        {"workspaceId": "ws_a", "plan": "growth", "start": "2024-01-01", "trialDays": -1},
        {"workspaceId": "ws_a", "plan": "growth"},
        {"workspaceId": "ws_a", "plan": "growth", "start": "Jan 1"},
        {"workspaceId": "ws_a", "plan": "", "start": "2024-01-01"},
        {"workspaceId": "ws_a", "plan": "growth", "start": "2024-01-01", "coupon": "x"},
    ],
)
def test_create_subscription_bad_input(client: AppClient, body: dict[str, Any]) -> None:
    r = client.post("/v1/billing/subscriptions", json=body)
    assert r.status_code == 422 and error(r)["code"] == "invalid_request"


# --- error mapping, mirror ----------------------------------------------------------------
def test_internal_errors_are_generic_and_locks_are_409(
    client: AppClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def lake_down(*args: Any, **kwargs: Any) -> Any:
        raise LakeError("cannot attach /secret/path/catalog.sqlite: disk I/O error")

    monkeypatch.setattr(invoices, "get_invoice", lake_down)
    r = client.get("/v1/billing/invoices/inv_x")
    assert r.status_code == 500
    err = error(r)
    assert err["code"] == "lake_error" and "secret" not in r.text and "sqlite" not in r.text

    def locked(*args: Any, **kwargs: Any) -> Any:
        raise LockedError("another lake write is in progress (pid 42) (/srv/locks/lake.lock)")

    monkeypatch.setattr(invoices, "get_invoice", locked)
    r = client.get("/v1/billing/invoices/inv_x")
    assert r.status_code == 409 and error(r)["code"] == "locked"
    assert "/srv" not in r.text and r.headers["retry-after"] == "5"


def test_state_changes_are_mirrored_to_the_lake(api_settings: Settings, tmp_path: Path) -> None:
    seed_usage(api_settings, tmp_path)
    app = create_app(api_settings)  # mirror on
    c = AppClient(app)
    try:
        r = c.post("/v1/billing/invoices", json={"workspaceId": "ws_a", "period": JAN})
        assert r.status_code == 201
    finally:
        c.close()
    assert app.state.mirror.passes == 1
    con = Lake(api_settings).connect(read_only=True)
    try:
        rows = con.execute("SELECT id, status FROM invoices").fetchall()
    finally:
        con.close()
    assert rows == [(r.json()["id"], "draft")]


def test_mirror_requests_coalesce(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    entered = threading.Event()
    release = threading.Event()

    def slow_mirror(s: Settings, *, reason: str) -> int:
        calls.append(reason)
        entered.set()
        release.wait(5)
        return 1

    monkeypatch.setattr("billing_batch.api.deps.mirror_to_lake", slow_mirror)
    mirror = LakeMirror(settings)
    first = threading.Thread(target=mirror.request, args=("one",))
    first.start()
    assert entered.wait(5)
    for reason in ("two", "three"):
        mirror.request(reason)  # returns at once: the running pass takes them
    release.set()
    first.join(5)
    assert calls == ["api: one", "api: two; three"]
    assert mirror.passes == 2


# --- schemathesis: the app against its own schema -----------------------------------------
# The schema is loaded from an app built at import time (schemathesis collects one test per
# operation); each test then points that app at its own isolated, seeded home.
_PLACEHOLDER = with_keys(load_settings(env={"BILLING_HOME": "/nonexistent/billing-schema"}))
SCHEMA_APP = create_app(_PLACEHOLDER, mirror=False)
schema = schemathesis.openapi.from_asgi("/openapi.json", SCHEMA_APP)


@pytest.fixture(scope="module")
def schema_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """One seeded home for the whole run (seeding once keeps it fast)."""
    root = tmp_path_factory.mktemp("schema")
    s = with_keys(load_settings(env={"BILLING_HOME": str(root / "home")}))
    seed_usage(s, root)
    return s


@pytest.fixture
def schema_home(schema_settings: Settings) -> Iterator[Settings]:
    SCHEMA_APP.state.settings = schema_settings
    yield schema_settings
    SCHEMA_APP.state.settings = _PLACEHOLDER


@schema.parametrize()
@hypothesis.settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_no_server_error_against_the_own_schema(case: Any, schema_home: Settings) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Bearer {ADMIN}"},
        checks=[
            not_a_server_error,
            response_schema_conformance,
            status_code_conformance,
            content_type_conformance,
        ],
    )


# --- a real server on 127.0.0.1 -----------------------------------------------------------
@contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on an ephemeral 127.0.0.1 port, in a thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, ws="none", lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_over_real_http(api_settings: Settings, tmp_path: Path) -> None:
    seed_usage(api_settings, tmp_path)
    with live_server(create_app(api_settings, mirror=False)) as url:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY_A}"}) as http:
            r = http.post("/v1/billing/invoices", json={"workspaceId": "ws_a", "period": JAN})
            assert r.status_code == 201
            assert loads(r.content)["total"] == 550
            r = http.get(
                "/v1/billing/usage",
                params={"workspaceId": "ws_a", "metric": "contracts", "startDate": "2024-01-01",
                        "endDate": "2024-01-31"},
            )  # fmt: skip
            assert r.json()["total"] == 100
            r = http.get("/v1/billing/invoices/inv_missing")
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
            r = http.get("/v1/billing/invoices", headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 401


# --- the command line ---------------------------------------------------------------------
def test_api_key_create_prints_the_key_once_and_its_hash(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    assert cli_main(["--home", str(home), "api-key", "create", "--workspace", "ws_a"]) == 0
    out, err = capsys.readouterr()
    got = json.loads(out)
    assert got["key"].startswith("bbk_") and got["hash"] == hash_key(got["key"])
    assert f'hash = "{got["hash"]}"' in err and 'workspace = "ws_a"' in err
    # the printed entry, pasted into billing.toml, makes a working key
    (home / "billing.toml").write_text(got["toml"] + "\n")
    s = load_settings(env={"BILLING_HOME": str(home)})
    principal = KeyRing(s.api.keys).lookup(got["key"])
    assert principal is not None and principal.workspace == "ws_a"
    assert cli_main(["--home", str(home), "api-key", "create", "--admin", "--name", 'fin"x']) == 0
    admin = json.loads(capsys.readouterr()[0])
    assert admin["workspace"] is None and 'name = "fin\\"x"' in admin["toml"]
    assert cli_main(["--home", str(home), "api-key", "create", "--workspace", "bad ws"]) == 2


def test_serve_api_runs_uvicorn_on_the_configured_address(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def fake_run(app: Any, **kwargs: Any) -> None:
        seen.update(kwargs, app=app)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    assert cli_main(["--home", str(home), "serve-api"]) == 0
    assert (seen["host"], seen["port"]) == ("127.0.0.1", 8000)
    assert isinstance(seen["app"], FastAPI)
    assert cli_main(["--home", str(home), "serve-api", "--host", "0.0.0.0", "--port", "9001"]) == 0
    assert (seen["host"], seen["port"]) == ("0.0.0.0", 9001)


# --- issue 15: the seed's flows with a workspace key ----------------------------------------
def _pdf_text(data: bytes, tmp_path: Path) -> str:
    import subprocess

    path = tmp_path / "read-back.pdf"
    path.write_bytes(data)
    out = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    )
    return " ".join(out.stdout.split())


def test_the_seeds_flow_with_a_workspace_key(
    client: AppClient, api_settings: Settings, tmp_path: Path, fake_stripe: Any
) -> None:
    """The seed creates an invoice (draft) and pays it, with the workspace's own key:
    paying a draft finalizes it, then charges it (Stripe's convention). The seed's own
    pm_card_123 does not exist: 400 with Stripe's code, not 502."""
    seed_usage(api_settings, tmp_path)
    created = client.post(
        "/v1/billing/invoices", json={"workspaceId": "ws_a", "period": JAN}, key=KEY_A
    )
    assert created.status_code == 201 and created.json()["status"] == "draft"
    url = f"/v1/billing/invoices/{created.json()['id']}/pay"

    # another workspace's key: 404, as if it did not exist; nothing finalized
    r = client.post(url, json={"paymentMethod": "pm_card_visa"}, key=KEY_B)
    assert r.status_code == 404 and error(r)["code"] == "not_found"
    assert invoices.get_invoice(api_settings, created.json()["id"]).status == "draft"

    # the seed's payment method: unknown to Stripe, the caller's mistake
    r = client.post(url, json={"paymentMethod": "pm_card_123"}, key=KEY_A)
    assert r.status_code == 400, r.text
    err = error(r)
    assert err["code"] == "resource_missing" and err["param"] == "paymentMethod"
    assert err["type"] == "payment_refused" and "pm_card_123" in err["message"]
    assert err["payment"]["status"] == "failed" and err["payment"]["finalized"] is True
    assert fake_stripe.charges == []
    # finalized by that first pay (numbered, open), even though the charge was refused
    inv = invoices.get_invoice(api_settings, created.json()["id"])
    assert inv.status == "open" and inv.number

    r = client.post(url, json={"paymentMethod": "pm_card_visa"}, key=KEY_A)
    assert r.status_code == 200, r.text
    paid = loads(r.content)
    models.Payment.model_validate(paid)
    assert paid["succeeded"] is True and paid["amount"] == 550
    assert paid["invoice"]["status"] == "paid" and paid["invoice"]["number"] == inv.number
    assert len(fake_stripe.charges) == 1


def test_paying_a_draft_in_one_call(
    client: AppClient, api_settings: Settings, tmp_path: Path, fake_stripe: Any
) -> None:
    seed_usage(api_settings, tmp_path)
    draft = client.post(
        "/v1/billing/invoices", json={"workspaceId": "ws_a", "period": JAN}, key=KEY_A
    ).json()
    r = client.post(
        f"/v1/billing/invoices/{draft['id']}/pay", json={"paymentMethod": "pm_card_visa"}, key=KEY_A
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["finalized"] is True and body["invoice"]["status"] == "paid"
    assert body["invoice"]["number"].startswith("INV-")
    assert len(fake_stripe.charges) == 1


def test_pdf_states_the_current_status_and_keeps_the_original(
    client: AppClient, api_settings: Settings, tmp_path: Path, fake_stripe: Any
) -> None:
    """After payment the default PDF says Paid (like the CLI's re-render); the archival
    original, written at finalization, still says Open / awaiting payment, and says it
    is the original."""
    inv = finalized_invoice(client, api_settings, tmp_path)
    number = inv["number"]
    before = client.get(f"/v1/billing/invoices/{number}/pdf", key=KEY_A)
    assert before.headers["x-invoice-status"] == "open"
    assert "awaiting payment" in _pdf_text(before.content, tmp_path)
    r = client.post(
        f"/v1/billing/invoices/{number}/pay", json={"paymentMethod": "pm_card_visa"}, key=KEY_A
    )
    assert r.status_code == 200

    current = client.get(f"/v1/billing/invoices/{number}/pdf", key=KEY_A)
    assert current.status_code == 200 and current.headers["content-type"] == "application/pdf"
    assert (current.headers["x-invoice-copy"], current.headers["x-invoice-status"]) == (
        "current",
        "paid",
    )
    text = _pdf_text(current.content, tmp_path)
    assert "Status Paid" in text and "Payment status: paid on" in text
    assert "awaiting payment" not in text

    original = client.get(f"/v1/billing/invoices/{number}/pdf?copy=original", key=KEY_A)
    assert (original.headers["x-invoice-copy"], original.headers["x-invoice-status"]) == (
        "original",
        "open",
    )
    assert f'filename="{number}-original.pdf"' in original.headers["content-disposition"]
    otext = _pdf_text(original.content, tmp_path)
    assert "Status Open" in otext and "awaiting payment" in otext
    stored = invoices.get_invoice(api_settings, inv["id"])
    assert stored.pdf_path is not None
    assert original.content == Path(stored.pdf_path).read_bytes()  # unchanged since

    # the CLI hands out the same copies
    from billing_batch.cli import main

    home = ["--home", str(api_settings.home)]
    out = tmp_path / "cli.pdf"
    assert main([*home, "invoice", "get", number, "--pdf", str(out)]) == 0
    assert out.read_bytes() == current.content
    assert main([*home, "invoice", "get", number, "--pdf", str(out), "--copy", "original"]) == 0
    assert out.read_bytes() == original.content

    # the archived file missing: the original is rendered again from the frozen document
    Path(stored.pdf_path).unlink()
    again = client.get(f"/v1/billing/invoices/{number}/pdf?copy=original", key=KEY_A)
    assert again.content == original.content
    # a draft has no original; another workspace's PDF is 404; a bad copy is 422
    client.post("/v1/billing/invoices", json={"workspaceId": "ws_a", "period": FEB}, key=KEY_A)
    (draft,) = [i for i in invoices.list_invoices(api_settings, status="draft")]
    r = client.get(f"/v1/billing/invoices/{draft.id}/pdf?copy=original", key=KEY_A)
    assert r.status_code == 409 and error(r)["code"] == "invalid_state"
    assert client.get(f"/v1/billing/invoices/{number}/pdf", key=KEY_B).status_code == 404
    assert client.get(f"/v1/billing/invoices/{number}/pdf?copy=copy", key=KEY_A).status_code == 422


@pytest.mark.parametrize(
    "workspace", ["", "<script>", "x' OR 1=1 --", "ws 1", "ws_1\n", "w" * 65, "wś", "ws/1"]
)
def test_create_invoice_refuses_bad_workspace_ids(client: AppClient, workspace: str) -> None:
    r = client.post("/v1/billing/invoices", json={"workspaceId": workspace, "period": JAN})
    assert r.status_code == 422 and error(r)["errors"][0]["field"] == "workspaceId"
