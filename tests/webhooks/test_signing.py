"""Standard Webhooks signing and verification: the spec's known-answer vector, tampering,
headers, tolerance, rotation, and the documentation's examples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing_batch._core.errors import ConfigError, WebhookVerificationError
from billing_batch.config.settings import PROJECT_ROOT
from billing_batch.webhooks import outbox, signing
from tests.webhooks.support import SECRET_A, SECRET_B

# The known-answer vector of the Standard Webhooks spec repository:
# github.com/standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py,
# test_sign_function (the same vector is used by the other languages' test suites).
KAT_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
KAT_MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
KAT_TIMESTAMP = 1614265330
KAT_PAYLOAD = b'{"test": 2432232314}'
KAT_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def kat_headers(**override: str) -> dict[str, str]:
    headers = {
        "webhook-id": KAT_MSG_ID,
        "webhook-timestamp": str(KAT_TIMESTAMP),
        "webhook-signature": KAT_SIGNATURE,
    }
    headers.update(override)
    return headers


KAT_NOW = datetime.fromtimestamp(KAT_TIMESTAMP, UTC)


def test_sign_matches_the_standard_webhooks_known_answer_vector() -> None:
    assert signing.sign(KAT_SECRET, KAT_MSG_ID, KAT_TIMESTAMP, KAT_PAYLOAD) == KAT_SIGNATURE
    # the whsec_ prefix is optional, as in the reference libraries
    bare = KAT_SECRET.removeprefix("whsec_")
    assert signing.sign(bare, KAT_MSG_ID, KAT_TIMESTAMP, KAT_PAYLOAD) == KAT_SIGNATURE


def test_verify_accepts_the_known_answer_vector_and_returns_the_payload() -> None:
    payload = signing.verify(kat_headers(), KAT_PAYLOAD, KAT_SECRET, now=KAT_NOW)
    assert payload == {"test": 2432232314}
    # header names are case-insensitive
    upper = {k.upper(): v for k, v in kat_headers().items()}
    assert signing.verify(upper, KAT_PAYLOAD, KAT_SECRET, now=KAT_NOW) == payload


def test_verify_accepts_any_of_several_signatures_and_ignores_other_versions() -> None:
    other = signing.sign(SECRET_B, KAT_MSG_ID, KAT_TIMESTAMP, KAT_PAYLOAD)
    header = f"v2,{KAT_SIGNATURE[3:]} {other} v1,not-base64! {KAT_SIGNATURE}"
    payload = signing.verify(
        kat_headers(**{"webhook-signature": header}), KAT_PAYLOAD, KAT_SECRET, now=KAT_NOW
    )
    assert payload == {"test": 2432232314}
    # a receiver in the middle of a rotation may pass both of its secrets
    both = f"{SECRET_B} {KAT_SECRET}"
    assert signing.verify(kat_headers(), KAT_PAYLOAD, both, now=KAT_NOW) == payload


@pytest.mark.parametrize(
    ("headers", "body", "message"),
    [
        (kat_headers(), b'{"test": 2432232315}', "no matching signature"),
        (kat_headers(), KAT_PAYLOAD + b" ", "no matching signature"),
        (kat_headers(**{"webhook-id": "msg_other"}), KAT_PAYLOAD, "no matching signature"),
        (kat_headers(**{"webhook-timestamp": str(KAT_TIMESTAMP + 1)}), KAT_PAYLOAD, "no matching"),
        (
            kat_headers(**{"webhook-signature": "v2," + KAT_SIGNATURE[3:]}),
            KAT_PAYLOAD,
            "no matching signature",
        ),
        (kat_headers(**{"webhook-timestamp": "hello"}), KAT_PAYLOAD, "not an integer"),
        (kat_headers(**{"webhook-signature": ""}), KAT_PAYLOAD, "webhook-signature"),
    ],
    ids=["tampered-body", "trailing-space", "other-id", "other-timestamp", "v2-only",
         "bad-timestamp", "empty-signature"],
)  # fmt: skip
def test_verify_rejects_tampering(headers: dict[str, str], body: bytes, message: str) -> None:
    with pytest.raises(WebhookVerificationError, match=message):
        signing.verify(headers, body, KAT_SECRET, now=KAT_NOW)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_verify_rejects_a_missing_header(missing: str) -> None:
    headers = kat_headers()
    del headers[missing]
    with pytest.raises(WebhookVerificationError, match=f"missing header.*{missing}"):
        signing.verify(headers, KAT_PAYLOAD, KAT_SECRET, now=KAT_NOW)


def test_verify_rejects_stale_and_future_timestamps_beyond_the_tolerance() -> None:
    h, body = kat_headers(), KAT_PAYLOAD
    # exactly at the 5-minute tolerance: still accepted, both ways
    signing.verify(h, body, KAT_SECRET, now=KAT_NOW + timedelta(seconds=300))
    signing.verify(h, body, KAT_SECRET, now=KAT_NOW - timedelta(seconds=300))
    with pytest.raises(WebhookVerificationError, match="too old"):
        signing.verify(h, body, KAT_SECRET, now=KAT_NOW + timedelta(seconds=301))
    with pytest.raises(WebhookVerificationError, match="future"):
        signing.verify(h, body, KAT_SECRET, now=KAT_NOW - timedelta(seconds=301))
    # and with the real clock, a 2021 timestamp is stale
    with pytest.raises(WebhookVerificationError, match="too old"):
        signing.verify(h, body, KAT_SECRET)
    # a custom tolerance
    signing.verify(h, body, KAT_SECRET, now=KAT_NOW + timedelta(hours=1), tolerance=3600)


def test_a_wrong_secret_fails_and_a_malformed_secret_is_a_config_error() -> None:
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        signing.verify(kat_headers(), KAT_PAYLOAD, SECRET_B, now=KAT_NOW)
    with pytest.raises(ConfigError):
        signing.verify(kat_headers(), KAT_PAYLOAD, "whsec_not base64!", now=KAT_NOW)
    with pytest.raises(ConfigError):
        signing.sign("whsec_", "msg_1", 1, b"{}")


def test_signature_header_signs_with_every_secret() -> None:
    header = signing.signature_header(f"{SECRET_A} {SECRET_B}", "msg_1", 1700000000, b"{}")
    assert header.split(" ") == [
        signing.sign(SECRET_A, "msg_1", 1700000000, b"{}"),
        signing.sign(SECRET_B, "msg_1", 1700000000, b"{}"),
    ]


# --- the documentation's examples ----------------------------------------------------------


def _doc_block(after: str, lang: str) -> str:
    text = (PROJECT_ROOT / "docs" / "webhooks.md").read_text()
    start = text.index(f"```{lang}\n", text.index(after)) + len(lang) + 4
    return text[start : text.index("```", start)]


def test_the_documented_example_request_verifies() -> None:
    lines = _doc_block("## The request", "").splitlines()
    blank = lines.index("")
    headers = dict(line.split(": ", 1) for line in lines[1:blank])
    body = "\n".join(lines[blank + 1 :]).strip().encode()
    stamp = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
    payload = signing.verify(headers, body, KAT_SECRET, now=stamp)
    assert payload["type"] == "billing.invoice.overdue"
    assert headers["webhook-id"] == outbox.event_id("billing.invoice.overdue", "inv_01jexample")


def test_the_documented_standalone_receiver_accepts_our_requests() -> None:
    namespace: dict[str, Any] = {}
    exec(_doc_block("### Without billing-batch", "python"), namespace)
    body = b'{"type": "billing.invoice.paid", "timestamp": "2026-03-02T09:30:00Z", "data": {}}'
    stamp = int(datetime.now(UTC).timestamp())
    headers = {
        "Webhook-Id": "evt_1",
        "Webhook-Timestamp": str(stamp),
        "Webhook-Signature": signing.signature_header([SECRET_A, SECRET_B], "evt_1", stamp, body),
    }
    assert namespace["verify"](headers, body, SECRET_B)["type"] == "billing.invoice.paid"
    with pytest.raises(ValueError):
        namespace["verify"](headers, body + b" ", SECRET_A)
