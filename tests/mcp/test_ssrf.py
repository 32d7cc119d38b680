"""Remote MCP clients may only reach public addresses: when saved, and on every connection."""

import ipaddress
import socket
from typing import Any

import anyio
import httpx
import pytest

from app.mcp import ssrf
from tests.factories import events_of, signed_in
from tests.fakes.mcp_servers import McpHttpServer
from tests.matrix import assert_error_shape
from tests.mcp.conftest import LOCAL
from tests.mcp.steps import remote_client

GUARDED = {**LOCAL, "mcp_allow_private_networks": False}
PUBLIC = "93.184.216.34"


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-public"),  # carrier-grade NAT
        ("::ffff:127.0.0.1", "loopback address (inside an IPv6 address)"),
        ("::ffff:169.254.169.254", "link-local address (inside an IPv6 address)"),
        ("2002:c0a8:0101::1", "private address (inside an IPv6 address)"),  # 6to4 of 192.168.1.1
        ("64:ff9b::a00:1", "private address (inside an IPv6 address)"),  # NAT64 of 10.0.0.1
    ],
)
def test_non_public_addresses_are_refused_with_the_reason(address: str, reason: str) -> None:
    blocked = ssrf.blocked_reason(ipaddress.ip_address(address))

    assert blocked is not None
    assert blocked.startswith(reason)


@pytest.mark.parametrize("address", [PUBLIC, "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert ssrf.blocked_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("settings_changes", [GUARDED])
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/mcp",
        "http://localhost/mcp",
        "http://[::1]/mcp",
        "http://[::ffff:7f00:1]/mcp",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.5/mcp",
        "http://2130706433/mcp",  # 127.0.0.1 as one number
        "http://0x7f.1/mcp",  # 127.0.0.1 in hex shorthand
        "http://0.0.0.0:9000/mcp",
    ],
)
async def test_creating_a_client_for_an_internal_address_is_refused(
    client: httpx.AsyncClient, url: str
) -> None:
    admin = await signed_in(client, "super_admin")

    response = await client.post(
        "/api/mcp-clients",
        json={"name": "Internal", "connectionType": "http", "connectionString": url},
        headers=admin.headers,
    )

    assert response.status_code == 422, response.text
    error = assert_error_shape(response)
    assert error["code"] == "mcp_url_not_allowed"
    assert "not allowed" in error["message"]
    assert await events_of("mcp_client") == []


@pytest.mark.parametrize("settings_changes", [GUARDED])
async def test_a_variable_cannot_smuggle_an_internal_host_in(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    created = await remote_client(
        client, admin, "https://{{HOST}}/mcp", customVars={"HOST": PUBLIC}, connectionType="http"
    )

    response = await client.put(
        f"/api/mcp-clients/{created['id']}",
        json={"customVars": {"HOST": "169.254.169.254"}},
        headers=admin.headers,
    )

    assert response.status_code == 422, response.text
    assert assert_error_shape(response)["code"] == "mcp_url_not_allowed"
    assert "169.254.169.254" not in response.text, "a variable's value is never shown"
    assert await events_of("mcp_client.updated") == []


@pytest.mark.parametrize("settings_changes", [GUARDED])
async def test_a_host_that_does_not_resolve_is_refused(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")

    response = await client.post(
        "/api/mcp-clients",
        json={
            "name": "Nowhere",
            "connectionType": "sse",
            "connectionString": "https://no-such-host.invalid/sse",
        },
        headers=admin.headers,
    )

    assert response.status_code == 422
    assert assert_error_shape(response)["code"] == "mcp_url_not_allowed"
    assert "cannot be resolved" in response.json()["error"]["message"]


async def test_the_connection_is_checked_again_when_made(
    client: httpx.AsyncClient, streamable_server: McpHttpServer, settings: Any
) -> None:
    """Saved while private networks were allowed; the operator has turned that off since."""
    admin = await signed_in(client, "super_admin")
    created = await remote_client(client, admin, streamable_server.url)
    settings.mcp_allow_private_networks = False
    before = len(streamable_server.requests)

    response = await client.post(f"/api/mcp-clients/{created['id']}/test-connection", headers=admin.headers)

    check = response.json()
    assert check["status"] == "failed"
    assert "resolves to a loopback address (127.0.0.1), which is not allowed" in check["error"]
    assert len(streamable_server.requests) == before, "no request may reach the server"


@pytest.mark.parametrize("settings_changes", [GUARDED])
async def test_dns_rebinding_between_saving_and_connecting_is_caught(
    client: httpx.AsyncClient, streamable_server: McpHttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name resolves to a public address when saved and to loopback when connected to."""
    answers = iter([PUBLIC, "127.0.0.1", "127.0.0.1", "127.0.0.1"])
    real_getaddrinfo = anyio.getaddrinfo

    async def rebinding_dns(host: str, port: Any, **kwargs: Any) -> Any:
        if host != "rebind.example":
            return await real_getaddrinfo(host, port, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(ssrf.anyio, "getaddrinfo", rebinding_dns)
    admin = await signed_in(client, "super_admin")
    port = streamable_server.port
    created = await remote_client(client, admin, f"http://rebind.example:{port}/mcp", connectionType="http")
    before = len(streamable_server.requests)

    response = await client.post(f"/api/mcp-clients/{created['id']}/test-connection", headers=admin.headers)

    check = response.json()
    assert check["status"] == "failed"
    assert "'rebind.example' resolves to a loopback address (127.0.0.1)" in check["error"]
    assert len(streamable_server.requests) == before


async def test_the_guard_connects_to_the_address_it_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A resolver that would answer differently the second time is asked only once per connection."""
    calls: list[str] = []
    real_getaddrinfo = anyio.getaddrinfo

    async def counting_dns(host: str, port: Any, **kwargs: Any) -> Any:
        calls.append(host)
        return await real_getaddrinfo("127.0.0.1", port, **kwargs)

    monkeypatch.setattr(ssrf.anyio, "getaddrinfo", counting_dns)
    with McpHttpServer("streamable_http") as server:
        backend = ssrf.GuardedNetworkBackend(allow_private_networks=True)
        stream = await backend.connect_tcp("anything.example", server.port, timeout=5)
        await stream.write(b"GET /mcp HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        first_line = (await stream.read(100)).split(b"\r\n", 1)[0]
        await stream.aclose()

    assert calls == ["anything.example"]
    assert first_line.startswith(b"HTTP/1.1 ")
