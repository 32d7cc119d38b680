from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import ConfigDict, Field, StringConstraints

from app.core.schemas import InputSchema, Schema

ConnectionType = Literal["stdio", "sse", "streamable_http", "http"]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=2000)]
Url = Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\s\x00]*$")]
Command = Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=r"^[^\x00]+$")]
Arg = Annotated[str, StringConstraints(max_length=2000, strip_whitespace=False)]
# RFC 9110 token characters.
HeaderName = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
]
HeaderValue = Annotated[
    str, StringConstraints(max_length=4000, pattern=r"^[^\r\n\x00]*$", strip_whitespace=False)
]
VariableName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
VariableValue = Annotated[str, StringConstraints(max_length=4000, strip_whitespace=False)]
Headers = Annotated[dict[HeaderName, HeaderValue], Field(max_length=50)]
Variables = Annotated[dict[VariableName, VariableValue], Field(max_length=50)]
Args = Annotated[list[Arg], Field(max_length=100)]

_SECRETS_DOC = (
    "Write-only: answers show `****` for each value. Send `****` as a value to keep the stored "
    "one; the object sent replaces the stored set."
)


class ToolSummary(Schema):
    name: str
    description: str


class ConnectionMetrics(Schema):
    latency_ms: int | None = Field(description="Connect, initialise and list tools, in ms")
    tool_count: int


class McpConnectionOut(Schema):
    """The seed's McpConnection: one connection check of a client."""

    id: UUID
    client_id: UUID
    status: Literal["connected", "failed"]
    trigger: Literal["test", "health"]
    transport: str | None = Field(description="What was used: `stdio`, `streamable_http` or `sse`")
    checked_at: datetime
    last_connected: datetime | None = Field(description="The latest successful check up to this one")
    metrics: ConnectionMetrics
    tools: list[ToolSummary]
    error: str | None


class McpClientOut(Schema):
    """The seed's McpClient. ``headers`` and ``customVars`` show names only (values `****`)."""

    id: UUID
    name: str
    description: str
    connection_string: str | None
    connection_type: ConnectionType
    command: str | None
    args: list[str]
    headers: dict[str, str]
    custom_vars: dict[str, str]
    is_active: bool
    created_at: datetime
    updated_at: datetime
    last_connection: McpConnectionOut | None


class McpClientCreate(InputSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Orders API",
                    "description": "Looks up orders and shipments",
                    "connectionType": "http",
                    "connectionString": "https://mcp.example.com/mcp",
                    "headers": {"Authorization": "Bearer {{ORDERS_TOKEN}}"},
                    "customVars": {"ORDERS_TOKEN": "s3cr3t-token"},
                },
                {
                    "name": "Filesystem",
                    "connectionType": "stdio",
                    "command": "npx",
                    "args": ["-y", "@modelcontextprotocol/server-filesystem", "/srv/docs"],
                },
            ]
        }
    )

    name: Name
    description: Description = ""
    connection_type: ConnectionType
    connection_string: Url | None = Field(
        None, description="Remote types: the server's http(s) URL; may use `{{NAME}}` variables"
    )
    command: Command | None = Field(
        None, description="stdio: the executable (must be on `MCP_STDIO_ALLOWED_COMMANDS`)"
    )
    args: Args = Field(default_factory=list, description="stdio: arguments; may use `{{NAME}}`")
    headers: Headers = Field(
        default_factory=dict,
        description=f"Remote types: HTTP headers; may use `{{{{NAME}}}}`. {_SECRETS_DOC}",
    )
    custom_vars: Variables = Field(
        default_factory=dict,
        description="Values for `{{NAME}}` in the URL, args and headers; for stdio also the server's "
        f"environment. {_SECRETS_DOC}",
    )
    is_active: bool = True


class McpClientUpdate(InputSchema):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"customVars": {"ORDERS_TOKEN": "rotated-token"}}]}
    )

    name: Name | None = None
    description: Description | None = None
    connection_type: ConnectionType | None = None
    connection_string: Url | None = None
    command: Command | None = None
    args: Args | None = None
    headers: Headers | None = None
    custom_vars: Variables | None = None
    is_active: bool | None = None


class McpClientStatusUpdate(InputSchema):
    model_config = ConfigDict(json_schema_extra={"examples": [{"isActive": False}]})

    is_active: bool
