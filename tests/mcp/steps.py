"""Small steps the MCP tests share: an admin creates clients through the API."""

from typing import Any

import httpx

from tests.factories import Account
from tests.fakes.mcp_servers import STDIO_COMMAND, stdio_args


async def create_client(client: httpx.AsyncClient, admin: Account, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/mcp-clients", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def remote_client(
    client: httpx.AsyncClient, admin: Account, url: str, *, name: str = "Orders API", **body: Any
) -> dict[str, Any]:
    body.setdefault("connectionType", "streamable_http")
    return await create_client(client, admin, name=name, connectionString=url, **body)


async def stdio_client(
    client: httpx.AsyncClient, admin: Account, *, name: str = "Local orders", **body: Any
) -> dict[str, Any]:
    body.setdefault("args", stdio_args("orders"))
    body.setdefault("command", STDIO_COMMAND)
    return await create_client(client, admin, name=name, connectionType="stdio", **body)
