from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, status

from app.core.db import DB
from app.core.openapi import errors
from app.core.pagination import Pagination
from app.core.runtime import runtime
from app.core.schemas import NO_NUL, Page, PaginationInfo
from app.mcp.deps import McpAdmin, McpReader
from app.mcp.schemas import (
    ConnectionType,
    McpClientCreate,
    McpClientOut,
    McpClientStatusUpdate,
    McpClientUpdate,
    McpConnectionOut,
)
from app.mcp.service import mcp_service

router = APIRouter(prefix="/api/mcp-clients", tags=["mcp"])


@router.get("", response_model=Page[McpClientOut], responses=errors(401, 403))
async def list_clients(
    db: DB,
    _: McpReader,
    page: Pagination,
    is_active: Annotated[bool | None, Query(alias="isActive")] = None,
    connection_type: Annotated[ConnectionType | None, Query(alias="connectionType")] = None,
    q: Annotated[
        str | None, Query(max_length=200, pattern=NO_NUL, description="Search name and description")
    ] = None,
) -> Page[McpClientOut]:
    """MCP clients with their last connection check. Builders and admins; headers and custom
    variables show `****`. Sort: `name` (default), `createdAt`, `updatedAt`."""
    items, total = await mcp_service.list_visible(
        db, runtime().settings, page, is_active=is_active, connection_type=connection_type, q=q
    )
    return Page(items=items, pagination=PaginationInfo(total=total, page=page.page, limit=page.limit))


@router.post(
    "", response_model=McpClientOut, status_code=status.HTTP_201_CREATED, responses=errors(401, 403, 409)
)
async def create_client(body: McpClientCreate, db: DB, principal: McpAdmin) -> McpClientOut:
    """Super admins: add an MCP server. stdio commands must be on `MCP_STDIO_ALLOWED_COMMANDS`;
    remote URLs must reach public addresses (SSRF protection). Secrets go in `headers` and
    `customVars` (`{{NAME}}` in the URL, args and header values), encrypted at rest."""
    return await mcp_service.create(db, runtime().settings, principal, body)


@router.get("/active", response_model=Page[McpClientOut], responses=errors(401, 403))
async def list_active_clients(db: DB, _: McpReader, page: Pagination) -> Page[McpClientOut]:
    """The active MCP clients: the ones a builder can attach to a project (`mcpServers`)."""
    items, total = await mcp_service.list_visible(db, runtime().settings, page, is_active=True)
    return Page(items=items, pagination=PaginationInfo(total=total, page=page.page, limit=page.limit))


@router.get("/{client_id}", response_model=McpClientOut, responses=errors(401, 403, 404))
async def get_client(client_id: UUID, db: DB, _: McpReader) -> McpClientOut:
    """An MCP client and its last connection check (`lastConnection`, null before the first)."""
    return await mcp_service.get(db, runtime().settings, client_id)


@router.put("/{client_id}", response_model=McpClientOut, responses=errors(401, 403, 404, 409))
async def update_client(client_id: UUID, body: McpClientUpdate, db: DB, principal: McpAdmin) -> McpClientOut:
    """Super admins: change any field. `headers` and `customVars` replace the stored sets; a
    value of `****` keeps the stored one. Changing `connectionType` drops the fields the new
    transport does not use."""
    return await mcp_service.update(db, runtime().settings, principal, client_id, body)


@router.delete("/{client_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401, 403, 404))
async def delete_client(client_id: UUID, db: DB, principal: McpAdmin) -> None:
    """Super admins: delete an MCP client and its checks. Projects using it are detached from it
    (each records `project.updated`)."""
    await mcp_service.delete(db, principal, client_id)


@router.post("/{client_id}/test-connection", response_model=McpConnectionOut, responses=errors(401, 403, 404))
async def test_connection(client_id: UUID, db: DB, principal: McpAdmin) -> McpConnectionOut:
    """Super admins: connect, initialise and list the tools now, within `MCP_CALL_TIMEOUT_SECONDS`.
    Always 200 with the stored check: `status` is `connected` (with `tools`) or `failed` (with
    `error`). Works on inactive clients too."""
    return await mcp_service.test_connection(db, runtime().settings, principal, client_id)


@router.put("/{client_id}/status", response_model=McpClientOut, responses=errors(401, 403, 404))
async def set_client_status(
    client_id: UUID, body: McpClientStatusUpdate, db: DB, principal: McpAdmin
) -> McpClientOut:
    """Super admins: switch a client on or off. Inactive clients cannot be attached to projects
    and are skipped by chats (projects keep them attached)."""
    return await mcp_service.set_status(db, runtime().settings, principal, client_id, body)
