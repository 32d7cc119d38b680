"""Steps of the chat tests: a project on a model a fake LLM serves, and a question to it."""

from typing import Any
from uuid import UUID, uuid4

import httpx
from sqlalchemy import update

from app.core.db import sessionmaker
from app.models import Project
from tests.factories import Account, create_project
from tests.llm.helpers import configure_model


async def chat_project(
    owner: Account,
    base_url: str,
    *,
    prompt: str = "Be brief.",
    kind: str = "openai_compatible",
    input_price: str = "1",
    output_price: str = "2",
    provider_name: str | None = None,
    mcp_servers: list[str] | None = None,
    **fields: Any,
) -> UUID:
    """A project "Support" of ``owner``'s on a new model at ``base_url`` (prices in USD per
    million tokens), with ``mcp_servers`` written straight into the table: attaching is the
    projects domain's (it validates real client ids), tested there."""
    key = await configure_model(
        f"fake/m-{uuid4().hex[:6]}",
        base_url=base_url,
        kind=kind,
        input_price=input_price,
        output_price=output_price,
        provider_name=provider_name,
    )
    project = await create_project(owner, name="Support", prompt=prompt, llm=key, **fields)
    if mcp_servers:
        async with sessionmaker()() as db:
            await db.execute(update(Project).where(Project.id == project).values(mcp_servers=mcp_servers))
            await db.commit()
    return project


async def ask(
    client: httpx.AsyncClient, owner: Account, project: UUID, message: str, conversation: str | None = None
) -> httpx.Response:
    """A question to the project's studio chat (JSON answer), in ``conversation`` if given."""
    body: dict[str, Any] = {"message": message}
    if conversation:
        body["conversationId"] = conversation
    return await client.post(f"/api/projects/{project}/chat", json=body, headers=owner.headers)
