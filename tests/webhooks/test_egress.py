"""Outbound safety: the SSRF guard refuses non-public destinations without connecting,
and the request goes to the very address that was checked (Host, SNI and the
certificate check keep the name)."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from billing_batch.webhooks import delivery, egress
from tests.webhooks.support import (
    T0,
    Receiver,
    attempts,
    deliveries,
    endpoint,
    make_settings,
    record,
    run,
    serve,
)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("2002:a00:1::1", False),  # 6to4 around 10.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 around 169.254.169.254
        ("8.8.8.8", True),
        ("93.184.216.34", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:8.8.8.8", True),
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    assert egress.is_public_address(address) is public


def test_private_destinations_are_refused_without_any_connection(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = receiver.port
    urls = {
        "loopback": f"http://127.0.0.1:{port}/hooks",
        "private": "http://10.1.2.3/hooks",
        "v6-loopback": f"http://[::1]:{port}/hooks",
        "metadata": "http://169.254.169.254/latest/meta-data",
        "mapped": f"http://[::ffff:127.0.0.1]:{port}/hooks",
        "by-name": "https://hooks.internal.test/hooks",
    }
    resolved: list[str] = []

    def fake_resolve(host: str, port: int) -> list[str]:
        resolved.append(host)
        return ["93.184.216.34", "10.0.0.7"]  # one private answer is enough to refuse

    monkeypatch.setattr(egress, "_resolve", fake_resolve)
    settings = make_settings(
        tmp_path, [endpoint(k, v) for k, v in urls.items()], allow_private=False
    )
    assert settings.webhooks.allow_private_addresses is False
    eid = record(settings)
    sent: list[httpx.Request] = []

    def transport(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    with httpx.Client(transport=httpx.MockTransport(transport)) as client:
        report = delivery.deliver(settings, now=T0, client=client)

    assert sent == [] and receiver.received == []
    assert resolved == ["hooks.internal.test"]
    assert report.attempted == len(urls) and report.delivered == 0
    assert report.retry_scheduled == len(urls)
    for a in attempts(settings):
        assert a["status_code"] is None
        assert a["error"].startswith("destination refused"), a
    errors = {a["endpoint_id"]: a["error"] for a in attempts(settings)}
    assert "10.0.0.7" in errors["by-name"] and "93.184" not in errors["by-name"]
    assert "allow_private_addresses" in errors["metadata"]
    assert all(r["status"] == "pending" for r in deliveries(settings).values())
    assert {k[0] for k in deliveries(settings)} == {eid}


def test_the_connection_goes_to_the_address_that_was_checked(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name is resolved once, checked, and that very address is
    used; the Host header keeps the name. (The name below does not exist in DNS.)"""
    calls: list[tuple[str, int]] = []

    def fake_resolve(host: str, port: int) -> list[str]:
        calls.append((host, port))
        return ["127.0.0.1"]

    monkeypatch.setattr(egress, "_resolve", fake_resolve)
    url = f"http://hooks.example.invalid:{receiver.port}/hooks"
    settings = make_settings(tmp_path, [endpoint("crm", url)], allow_private=True)
    eid = record(settings)
    report = run(settings, receiver, T0)
    assert report.delivered == 1
    assert calls == [("hooks.example.invalid", receiver.port)]
    [got] = receiver.received
    assert got.headers["host"] == f"hooks.example.invalid:{receiver.port}"
    assert got.headers["webhook-id"] == eid and got.verified


def _self_signed(tmp_path: Path, name: str) -> tuple[Path, Path, str]:
    """A self-signed certificate for ``name`` (and not for 127.0.0.1)."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.now(UTC) - timedelta(days=1))
        .not_valid_after(datetime.now(UTC) + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_text(pem)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path, pem


def test_https_to_the_checked_address_keeps_sni_and_the_certificate_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key, pem = _self_signed(tmp_path, "hooks.example.test")
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    seen_sni: list[str | None] = []

    def remember_sni(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        seen_sni.append(name)

    server_tls.sni_callback = remember_sni
    monkeypatch.setattr(egress, "_resolve", lambda host, port: ["127.0.0.1"])

    with serve(server_tls) as rcv:
        settings = make_settings(
            tmp_path,
            [
                endpoint("good", rcv.url(host="hooks.example.test")),
                endpoint("wrong-name", rcv.url(host="other.example.test")),
            ],
        )
        eid = record(settings)
        rcv.now = T0
        trust = ssl.create_default_context(cadata=pem)
        with httpx.Client(verify=trust) as client:
            report = delivery.deliver(settings, now=T0, client=client)

        assert [r.headers["host"] for r in rcv.received] == [f"hooks.example.test:{rcv.port}"]
        assert rcv.received[0].verified and rcv.received[0].headers["webhook-id"] == eid
    assert "hooks.example.test" in seen_sni
    assert report.delivered == 1 and report.retry_scheduled == 1
    [wrong] = [r for r in report.results if r.endpoint_id == "wrong-name"]
    # the certificate is checked against the URL's host name, not the pinned IP
    assert "certificate" in (wrong.error or "").lower()
