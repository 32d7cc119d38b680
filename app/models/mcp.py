"""Platform MCP clients (servers the builders' projects may use) and their connection checks."""

import enum
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TimestampMixin, utcnow


class McpConnectionType(enum.StrEnum):
    STDIO = "stdio"
    SSE = "sse"
    STREAMABLE_HTTP = "streamable_http"
    HTTP = "http"  # streamable HTTP, falling back to SSE


class McpConnectionStatus(enum.StrEnum):
    CONNECTED = "connected"
    FAILED = "failed"


class McpCheckTrigger(enum.StrEnum):
    TEST = "test"
    HEALTH = "health"


class McpClient(IdMixin, TimestampMixin, Base):
    """An MCP server the platform can connect to. Headers and custom variables are Fernet
    tokens (``app.core.crypto``) of JSON objects; nothing else here is secret."""

    __tablename__ = "mcp_clients"

    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    connection_type: Mapped[str] = mapped_column(String(20))
    connection_string: Mapped[str | None] = mapped_column(String(2000))
    command: Mapped[str | None] = mapped_column(String(500))
    args: Mapped[list[str]] = mapped_column(JSONB, default=list)
    headers_encrypted: Mapped[str | None] = mapped_column(Text)
    custom_vars_encrypted: Mapped[str | None] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    __table_args__ = (
        CheckConstraint(
            "connection_type IN ('stdio', 'sse', 'streamable_http', 'http')", name="connection_type"
        ),
        # Names are unique regardless of case: builders pick clients by name.
        Index("uq_mcp_clients_lower_name", text("lower(name)"), unique=True),
    )


class McpConnection(IdMixin, Base):
    """One connection check of a client: connect, initialise, list the tools."""

    __tablename__ = "mcp_connections"

    client_id: Mapped[UUID] = mapped_column(ForeignKey("mcp_clients.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str] = mapped_column(String(16))
    transport: Mapped[str | None] = mapped_column(String(20))
    latency_ms: Mapped[int | None]
    tools: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    error: Mapped[str | None] = mapped_column(Text)
    actor_id: Mapped[UUID | None]
    checked_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    # The latest successful check up to this one (this one's time when it connected).
    last_connected_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint("status IN ('connected', 'failed')", name="status"),
        CheckConstraint("trigger IN ('test', 'health')", name="trigger"),
        Index("ix_mcp_connections_client_checked", "client_id", "checked_at"),
    )
