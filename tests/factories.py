"""Small factory helpers: create accounts and projects through the real services, log in
through the real API."""

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import httpx

from app.core.db import commit, sessionmaker
from app.core.principal import Principal
from app.models import User
from app.projects.schemas import ProjectCreate
from app.projects.service import project_service
from app.users.schemas import UserCreate
from app.users.service import bootstrap_admin, user_service

PASSWORD = "correct-horse-battery"

_counter = 0


def unique_email(prefix: str = "user") -> str:
    global _counter
    _counter += 1
    return f"{prefix}{_counter}@example.com"


@dataclass
class Account:
    id: UUID
    email: str
    persona: str
    access_token: str = ""
    refresh_token: str = ""
    personas: list[str] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def _system_admin() -> Principal:
    async with sessionmaker()() as db:
        perms = await user_service.permissions_of(db, "super_admin")
    return Principal(
        user_id=UUID(int=0),
        session_id=UUID(int=0),
        persona="super_admin",
        personas=("super_admin",),
        permissions=frozenset(perms),
    )


async def create_user(
    persona: str = "builder",
    *,
    personas: list[str] | None = None,
    email: str | None = None,
    password: str = PASSWORD,
) -> User:
    email = email or unique_email(persona.replace("_", ""))
    async with sessionmaker()() as db:
        if persona == "super_admin" and not personas:
            user, _ = await bootstrap_admin(db, email=email, password=password, name="Admin")
        else:
            body = UserCreate(
                email=email,
                password=password,
                name=f"{persona} user",
                persona=persona,  # type: ignore[arg-type]
                personas=personas,  # type: ignore[arg-type]
            )
            user = await user_service.create(db, await _system_admin(), body)
        await commit(db)
    return user


async def login(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD, persona: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"email": email, "password": password}
    if persona:
        body["persona"] = persona
    response = await client.post("/api/auth/login", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def signed_in(
    client: httpx.AsyncClient, persona: str = "builder", *, personas: list[str] | None = None
) -> Account:
    user = await create_user(persona, personas=personas)
    tokens = await login(client, user.email, persona=persona)
    return Account(
        id=user.id,
        email=user.email,
        persona=persona,
        access_token=tokens["accessToken"],
        refresh_token=tokens["refreshToken"],
        personas=tokens["user"]["personas"],
    )


async def create_project(owner: Account, **fields: Any) -> UUID:
    async with sessionmaker()() as db:
        perms = await user_service.permissions_of(db, "builder")
        actor = Principal(
            user_id=owner.id,
            session_id=owner.id,
            persona="builder",
            personas=("builder",),
            permissions=frozenset(perms),
        )
        body = ProjectCreate(name=fields.pop("name", "Test project"), **fields)
        project = await project_service.create(db, actor, body)
        await commit(db)
    return project.id


async def create_mcp_client(name: str | None = None, *, is_active: bool = True, **fields: Any) -> str:
    """An MCP client made by a new super admin through the real service; its id as text (the
    form projects keep in ``mcp_servers``). Defaults to a remote client at a public address."""
    from app.core.runtime import runtime
    from app.mcp.schemas import McpClientCreate
    from app.mcp.service import mcp_service

    admin = await create_user("super_admin")
    async with sessionmaker()() as db:
        perms = await user_service.permissions_of(db, "super_admin")
        actor = Principal(
            user_id=admin.id,
            session_id=admin.id,
            persona="super_admin",
            personas=("super_admin",),
            permissions=frozenset(perms),
        )
        fields.setdefault("connection_type", "streamable_http")
        fields.setdefault("connection_string", "https://93.184.216.34/mcp")
        body = McpClientCreate(name=name or unique_email("mcp"), is_active=is_active, **fields)
        created = await mcp_service.create(db, runtime().settings, actor, body)
        await commit(db)
    return str(created.id)


async def events_of(type_prefix: str = "") -> list[dict[str, Any]]:
    from sqlalchemy import select

    from app.models import OutboxEvent

    async with sessionmaker()() as db:
        stmt = (
            select(OutboxEvent).where(OutboxEvent.type.startswith(type_prefix)).order_by(OutboxEvent.event_id)
        )
        rows = (await db.execute(stmt)).scalars().all()
    return [
        {
            "event_id": r.event_id,
            "type": r.type,
            "actor_id": r.actor_id,
            "subject_id": r.subject_id,
            "payload": r.payload,
            "schema_version": r.schema_version,
        }
        for r in rows
    ]
