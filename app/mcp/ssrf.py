"""SSRF protection for remote MCP clients.

An admin types a URL; the platform then connects to it from inside our network. So a URL must be
http(s) without credentials in it, and every address its host resolves to must be a public one:
loopback, private, link-local (cloud metadata), multicast, reserved, unspecified, shared and
other non-global ranges are refused, also when hidden in an IPv6 form (IPv4-mapped, 6to4, Teredo,
NAT64). The check runs when the URL is saved and again on every TCP connection: the connection is
made to the very address that was checked, so a DNS answer that changes in between (rebinding)
cannot slip through.
"""

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import SplitResult, urlsplit

import anyio
import httpcore2

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class UnsafeUrl(ValueError):
    """The URL may not be reached; the message says why (safe to show to the admin)."""


def parse_remote_url(url: str) -> SplitResult:
    """The URL's parts, if its shape is acceptable (scheme, host, no credentials)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"Not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrl("Only http and https URLs are allowed")
    if not parts.hostname:
        raise UnsafeUrl("The URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("Credentials may not be part of the URL: use headers or custom variables")
    if port == 0:
        raise UnsafeUrl("The URL's port is invalid")
    return parts


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def blocked_reason(address: IPAddress) -> str | None:
    """Why the platform may not connect to ``address``, or None when it is a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            reason = blocked_reason(embedded)
            return f"{reason} (inside an IPv6 address)" if reason else None
    for reason, flag in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    ):
        if flag:
            return f"{reason} address"
    if not address.is_global:
        return "non-public address"
    return None


def _address(text: str) -> IPAddress:
    return ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone (fe80::1%eth0)


async def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnsafeUrl(f"The host {host!r} cannot be resolved") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise UnsafeUrl(f"The host {host!r} cannot be resolved")
    return addresses


def check_addresses(host: str, addresses: Iterable[str]) -> None:
    for text in addresses:
        reason = blocked_reason(_address(text))
        if reason:
            raise UnsafeUrl(f"The host {host!r} resolves to a {reason} ({text}), which is not allowed")


async def check_remote_url(url: str, *, allow_private_networks: bool) -> None:
    """Refuse (``UnsafeUrl``) a URL the platform may not connect to."""
    parts = parse_remote_url(url)
    if allow_private_networks:
        return
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    check_addresses(host, await resolve(host, port))


class GuardedNetworkBackend(httpcore2.AsyncNetworkBackend):
    """Resolves each connection's host itself, refuses it unless every address is public, and
    connects to a checked address (TLS still verifies the certificate against the host name)."""

    def __init__(self, *, allow_private_networks: bool) -> None:
        self._inner = httpcore2.AnyIOBackend()
        self._allow_private = allow_private_networks

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        try:
            addresses = await resolve(host, port)
            if not self._allow_private:
                check_addresses(host, addresses)
        except UnsafeUrl as exc:
            raise httpcore2.ConnectError(str(exc)) from exc
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise httpcore2.ConnectError("Unix sockets are not allowed for MCP clients")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
