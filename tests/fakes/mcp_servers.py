"""Real MCP servers (the ``mcp`` SDK's ``MCPServer``) for tests, over every transport we speak.

    with McpHttpServer("streamable_http") as server:   # or "sse"; token="..." requires a bearer
        server.url                                       # http://127.0.0.1:<port>/mcp (or /sse)
        server.requests                                  # (method, path, headers) of every request

    STDIO_COMMAND, stdio_args("orders")                  # run this file as a stdio MCP server

    with HangingHttpServer() as server:                  # accepts connections, never answers
        server.url                                       # (until server.release(): then 503s)

    with ErroringMcpServer(message) as server:           # answers every JSON-RPC call with an
        server.url                                       # error carrying ``message``

The tools are deterministic: ``lookup_order(order_id)``, ``slow(seconds)``, ``fail()``,
``big_output(n)`` and ``whoami()`` (the server's name, process id, how it was launched, argv and
``FAKE_MCP_*`` environment, so tests can see what a client substituted and whether the process is
gone). A server named ``hostile`` also offers ``odd_text``, whose description holds a NUL
character and runs past any sane length (``HOSTILE_DESCRIPTION``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.fakes.serving import HttpFake

ORDERS: dict[str, dict[str, Any]] = {
    "A-1001": {"status": "shipped", "total": "42.00 EUR", "items": 2},
    "A-1002": {"status": "processing", "total": "9.90 EUR", "items": 1},
}

STDIO_COMMAND = sys.executable
SCRIPT = os.path.abspath(__file__)
HOSTILE_DESCRIPTION = "Reads\x00odd text. " + "x" * 2000


def stdio_args(name: str = "orders", *extra: str) -> list[str]:
    """Arguments that run this file as a stdio MCP server named ``name``."""
    return [SCRIPT, "stdio", name, *extra]


def build_server(name: str = "orders") -> MCPServer:
    server = MCPServer(name, log_level="CRITICAL")

    @server.tool(description="Look up an order by its id (e.g. A-1001).")
    def lookup_order(order_id: str) -> str:
        order = ORDERS.get(order_id)
        if order is None:
            return f"No order {order_id}"
        return f"Order {order_id}: {order['status']}, {order['items']} items, total {order['total']}"

    @server.tool(description="Wait, then answer.")
    async def slow(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return f"done after {seconds}s"

    @server.tool(description="Always fails.")
    def fail() -> str:
        raise ToolError("the warehouse is on fire")

    @server.tool(description="n characters of text.")
    def big_output(n: int) -> str:
        return ("abcdefghij" * (n // 10 + 1))[:n]

    @server.tool(description="Who this server is and how it was started.")
    def whoami() -> str:
        env = {k: v for k, v in sorted(os.environ.items()) if k.startswith("FAKE_MCP_")}
        launched = sys.orig_argv[0]  # the program as the parent named it
        return f"name={name} pid={os.getpid()} launched={launched} argv={sys.argv[1:]} env={env}"

    if name == "hostile":

        @server.tool(description=HOSTILE_DESCRIPTION)
        def odd_text() -> str:
            return "odd"

    return server


@dataclass
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)


class _Recorder:
    """ASGI middleware: records requests and refuses those without the expected bearer token."""

    def __init__(self, app: ASGIApp, owner: _RecordingServer) -> None:
        self.app, self.owner = app, owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            self.owner.requests.append(SeenRequest(scope["method"], scope["path"], headers))
            token = self.owner.token
            if token is not None and headers.get("authorization") != f"Bearer {token}":
                await JSONResponse({"error": "unauthorized"}, status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _RecordingServer(HttpFake):
    """Serves ``endpoint()`` (with its lifespan) behind a ``_Recorder``; ``url`` is where a
    client connects."""

    path = ""
    token: str | None = None
    lifespan: Literal["on", "off"] = "on"

    def __init__(self) -> None:
        self.requests: list[SeenRequest] = []

    def endpoint(self) -> ASGIApp:
        raise NotImplementedError

    def app(self) -> ASGIApp:
        return _Recorder(self.endpoint(), self)

    @property
    def url(self) -> str:
        return f"{self.base_url}{self.path}"


class McpHttpServer(_RecordingServer):
    """The fake MCP server over streamable HTTP (``/mcp``) or the older SSE transport (``/sse``)."""

    def __init__(
        self,
        transport: Literal["streamable_http", "sse"] = "streamable_http",
        *,
        name: str = "orders",
        token: str | None = None,
    ) -> None:
        super().__init__()
        self.transport, self.name, self.token = transport, name, token
        self.path = "/mcp" if transport == "streamable_http" else "/sse"

    def endpoint(self) -> ASGIApp:
        server = build_server(self.name)
        # The tests reach it as 127.0.0.1 on a random port.
        security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
        if self.transport == "sse":
            return server.sse_app(transport_security=security)
        return server.streamable_http_app(transport_security=security)


class HangingHttpServer(_RecordingServer):
    """Accepts every request and answers none (until stopped), or, with ``release_after=n``,
    holds the first requests until ``n`` are waiting together, then answers them all 503."""

    path = "/mcp"

    def __init__(self, *, release_after: int | None = None) -> None:
        super().__init__()
        self.release_after = release_after
        self._release = threading.Event()

    def endpoint(self) -> ASGIApp:
        async def hang(request: Request) -> Response:
            if self.release_after is not None and len(self.requests) >= self.release_after:
                self._release.set()
            while not self._release.is_set():
                await asyncio.sleep(0.02)
            return Response(status_code=503)

        return Starlette(routes=[Route("/{path:path}", hang, methods=["GET", "POST", "DELETE"])])

    def release(self) -> None:
        """Answer every waiting and later request (503)."""
        self._release.set()

    def stop(self) -> None:
        self._release.set()
        super().stop()


class ErroringMcpServer(_RecordingServer):
    """Speaks JSON-RPC over HTTP (the streamable transport's JSON answers) and answers every
    request with the error ``message``, as a broken or hostile MCP server might."""

    path = "/mcp"

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message

    def endpoint(self) -> ASGIApp:
        async def answer(request: Request) -> Response:
            if request.method != "POST":
                return Response(status_code=405)
            call = json.loads(await request.body())
            if "id" not in call:  # a notification: nothing to answer
                return Response(status_code=202)
            error = {"code": -32603, "message": self.message}
            return JSONResponse({"jsonrpc": "2.0", "id": call["id"], "error": error})

        return Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST", "DELETE"])])


if __name__ == "__main__":
    # python mcp_servers.py stdio <name> [extra args...]: a stdio MCP server.
    if len(sys.argv) < 3 or sys.argv[1] != "stdio":
        raise SystemExit("usage: mcp_servers.py stdio <name> [args...]")
    build_server(sys.argv[2]).run("stdio")
