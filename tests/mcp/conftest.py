"""MCP tests run the fake MCP servers of ``tests/fakes/mcp_servers.py`` on 127.0.0.1, so their
apps allow private networks and the fake's stdio command (SSRF tests turn that off again)."""

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.mcp_servers import STDIO_COMMAND, HangingHttpServer, McpHttpServer

LOCAL = {"mcp_allow_private_networks": True, "mcp_stdio_allowed_commands": [STDIO_COMMAND]}
TOKEN = "orders-token-4f9a2c"


@pytest.fixture
def settings_changes() -> dict[str, Any]:
    return dict(LOCAL)


@pytest.fixture(scope="session")
def streamable_server() -> Iterator[McpHttpServer]:
    with McpHttpServer("streamable_http", name="orders") as server:
        yield server


@pytest.fixture(scope="session")
def sse_server() -> Iterator[McpHttpServer]:
    with McpHttpServer("sse", name="legacy") as server:
        yield server


@pytest.fixture(scope="session")
def protected_server() -> Iterator[McpHttpServer]:
    """Answers only with ``Authorization: Bearer <TOKEN>``."""
    with McpHttpServer("streamable_http", name="private", token=TOKEN) as server:
        yield server


@pytest.fixture(scope="session")
def hanging_server() -> Iterator[HangingHttpServer]:
    with HangingHttpServer() as server:
        yield server
