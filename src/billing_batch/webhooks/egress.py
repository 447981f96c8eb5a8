"""Outbound safety: the SSRF guard and the POST pinned to the address that was checked.

Only ``http``/``https``; unless ``allow_private_addresses``, the host is resolved and
every address must be public (no private, loopback, link-local, multicast, reserved,
shared or unspecified address, IPv4 or IPv6, including IPv4 embedded in IPv6). The
request is then sent to the address that was checked (the URL's host is replaced by the
IP, the ``Host`` header and TLS SNI/certificate check keep the name), so a DNS answer
that changes between the check and the connection (DNS rebinding) cannot redirect it.
Redirects are never followed; the caller's client ignores proxies from the environment.

:func:`post` never raises for the destination or the network: a refused destination,
a timeout, a connection or protocol error is an :class:`Answer` without a status code
(the delivery records it as a failed attempt and retries).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import httpx

from .._core.errors import ConfigError, WebhookError


class _Refused(Exception):
    """The destination may not (or cannot) be contacted; returned by :func:`post` as an
    answer without a status code, never raised out of this module."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


@dataclass(frozen=True)
class Answer:
    """What one POST got: a status code, or why there is none."""

    status_code: int | None
    #: Why nothing answered (refused destination, timeout, connection or protocol
    #: error); None when the receiver answered.
    error: str | None = None
    #: A connection-level failure (nothing reached the receiver's application).
    unreachable: bool = False
    #: The answer's ``Retry-After`` header, as sent (None when absent).
    retry_after: str | None = None
    #: Milliseconds from the start of :func:`post` (resolution included).
    duration_ms: int = 0


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    out: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        out.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        out.append(ip.sixtofour)
    if ip.teredo is not None:
        out.extend(ip.teredo)
    if ip in _NAT64:
        out.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return out


def is_public_address(address: str) -> bool:
    """True if ``address`` (an IPv4/IPv6 literal) is a public unicast address: not
    private, loopback, link-local, multicast, reserved, shared (CGNAT), unspecified or
    site-local, and not an IPv4 address of those kinds embedded in IPv6 (mapped,
    6to4, Teredo, NAT64)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return is_public_address(str(ip.ipv4_mapped))  # judged as the IPv4 it is
    bad = (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )
    if isinstance(ip, ipaddress.IPv6Address):
        bad = bad or ip.is_site_local or ip in _NAT64_LOCAL
        bad = bad or any(not is_public_address(str(v4)) for v4 in _embedded_ipv4(ip))
    return not bad


def _resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, in the resolver's order (no duplicates)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    out: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        addr = str(sockaddr[0])
        if addr not in out:
            out.append(addr)
    return out


@dataclass(frozen=True)
class _Target:
    #: The URLs to connect to, one per checked address (the host replaced by the IP), in
    #: the resolver's order: the next one is tried only when a connection fails.
    urls: tuple[httpx.URL, ...]
    host_header: str  # the original host[:port]
    sni: str | None  # TLS server name (and certificate name), for https to a host name


def check_url(url: str) -> httpx.URL:
    """The parsed URL; ConfigError unless it is ``http://`` or ``https://`` with a host."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"invalid webhook URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError("a webhook URL must be http:// or https:// with a host")
    return parsed


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _target(url: str, *, allow_private: bool) -> _Target:
    """Resolve and check the destination; raise _Refused if it may not be contacted.
    The returned URLs point at the very addresses that were checked."""
    parsed = check_url(url)
    host = parsed.host
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    is_literal = _is_ip_literal(host)
    if is_literal:
        addresses = [host]
    else:
        try:
            addresses = _resolve(host, port)
        except (OSError, UnicodeError) as exc:
            raise _Refused(f"cannot resolve {host!r}: {exc}", unreachable=True) from None
        if not addresses:
            raise _Refused(f"{host!r} resolves to no address", unreachable=True)
    if not allow_private:
        refused = [a for a in addresses if not is_public_address(a)]
        if refused:
            raise _Refused(
                f"destination refused: {host} is or resolves to non-public address(es) "
                f"{', '.join(refused)} (webhooks.allow_private_addresses is off)"
            )
    return _Target(
        urls=tuple(parsed.copy_with(host=a.split("%", 1)[0]) for a in addresses),
        host_header=parsed.netloc.decode("ascii"),
        sni=None if is_literal or parsed.scheme != "https" else host,
    )


def display_url(url: str) -> str:
    """The URL without any password in its userinfo (for output and logs)."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "<invalid URL>"
    if parsed.password:
        return str(parsed.copy_with(password="***"))
    return url


def post(
    client: httpx.Client,
    url: str,
    *,
    headers: Mapping[str, str],
    body: bytes,
    timeout: float,
    allow_private: bool,
) -> Answer:
    """POST ``body`` to ``url`` through the guard: resolve and check the destination,
    connect to a checked address (the next one only when a connection fails), never
    follow a redirect, never read the answer's body. ``headers`` get the ``Host`` of the
    URL. Every failure of the destination or the network is an :class:`Answer`.

    Raises WebhookError only for what is a bug here (an invalid URL built from a checked
    one, a stream misuse).
    """
    started = time.monotonic()
    try:
        target = _target(url, allow_private=allow_private)
    except _Refused as exc:
        answer = Answer(None, str(exc), unreachable=exc.unreachable)
    else:
        answer = _send_pinned(client, target, headers, body, httpx.Timeout(timeout))
    return replace(answer, duration_ms=int((time.monotonic() - started) * 1000))


def _send_pinned(
    client: httpx.Client,
    target: _Target,
    headers: Mapping[str, str],
    body: bytes,
    timeout: httpx.Timeout,
) -> Answer:
    """Send to the checked addresses in turn until one connects."""
    sent = {"host": target.host_header, **headers}
    extensions: dict[str, Any] = {}
    if target.sni:
        extensions["sni_hostname"] = target.sni
        # Connections are pooled by IP: never reuse a TLS connection whose certificate
        # was checked for another host name that happens to share the address.
        sent["connection"] = "close"
    errors: list[str] = []
    for connect_url in target.urls:
        try:
            request = client.build_request(
                "POST",
                connect_url,
                headers=sent,
                content=body,
                timeout=timeout,
                extensions=extensions,
            )
            response = client.send(request, follow_redirects=False, stream=True)
        except httpx.ConnectError as exc:
            # nothing was sent: try the next checked address, if any
            errors.append(f"{connect_url.host}: {str(exc) or type(exc).__name__}")
            continue
        except httpx.TimeoutException as exc:
            return Answer(None, f"timeout ({type(exc).__name__})", unreachable=True)
        except httpx.HTTPError as exc:
            return Answer(None, f"{type(exc).__name__}: {exc}")
        except (httpx.InvalidURL, httpx.StreamError) as exc:  # not expected: a bug
            raise WebhookError(f"cannot send webhook {headers.get('webhook-id')}: {exc}") from exc
        try:
            return Answer(response.status_code, retry_after=response.headers.get("retry-after"))
        finally:
            response.close()  # the body is not needed: never read a large answer
    return Answer(None, "connection error: " + "; ".join(errors), unreachable=True)


__all__ = ["Answer", "check_url", "display_url", "is_public_address", "post"]
