"""The tools of a project's MCP clients for one chat turn (interface; the MCP domain implements it).

Usage::

    async with open_toolset(db, settings, project.mcp_servers) as toolset:
        specs = toolset.tools             # list[ToolSpec], names unique across clients
        result = await toolset.call(call) # ToolResult; errors and timeouts come back as
                                          # is_error results, never raised
"""

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.llm.types import ToolCall, ToolResult, ToolSpec


class Toolset:
    tools: list[ToolSpec]

    def __init__(self) -> None:
        self.tools = []

    async def call(self, call: ToolCall) -> ToolResult:
        return ToolResult(call_id=call.id, name=call.name, content="Unknown tool", is_error=True)


@asynccontextmanager
async def open_toolset(db: AsyncSession, settings: Settings, client_ids: Sequence[str]) -> AsyncIterator[Toolset]:
    """Connects to the active clients among ``client_ids`` (inactive or unreachable ones are
    skipped and logged) and closes every session on exit."""
    yield Toolset()
