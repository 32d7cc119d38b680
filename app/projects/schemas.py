from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import ConfigDict, Field, StringConstraints

from app.core.schemas import InputSchema, Schema

Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=5000)]
Prompt = Annotated[str, StringConstraints(max_length=50_000)]
Llm = Annotated[str, StringConstraints(min_length=1, max_length=200)]
McpServerId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
OwnerStatus = Literal["draft", "in_development", "ready", "archived"]


class ProjectOut(Schema):
    """The seed's Project. ``files`` lists the knowledge files (filled by the files domain)."""

    id: UUID
    user_id: UUID
    name: str
    description: str
    prompt: str
    status: str
    llm: str | None = Field(description="Key of the project's model (`GET /api/llm/models`); null: `offline`")
    mcp_servers: list[str]
    files: list[Any] = Field(default_factory=list)
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class ProjectCreate(InputSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Support Copilot",
                    "description": "Answers from your help centre",
                    "prompt": "You are a support agent.",
                    "llm": "offline",
                    "mcpServers": [],
                }
            ]
        }
    )

    name: Name
    description: Description = ""
    prompt: Prompt = ""
    llm: Llm | None = None
    mcp_servers: Annotated[list[McpServerId], Field(max_length=50)] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)


class ProjectUpdate(InputSchema):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"prompt": "You are a concise support agent."}]}
    )

    name: Name | None = None
    description: Description | None = None
    prompt: Prompt | None = None
    llm: Llm | None = None
    mcp_servers: Annotated[list[McpServerId], Field(max_length=50)] | None = None
    metadata: dict[str, Any] | None = None


class ProjectStatusUpdate(InputSchema):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "in_development"}]})

    status: OwnerStatus
