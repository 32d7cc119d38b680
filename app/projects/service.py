"""Projects: CRUD with ownership, plan limits and the explicit status state machine."""

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from pydantic.alias_generators import to_camel
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.permissions import Perm
from app.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from app.core.events import record_event
from app.core.pagination import PageParams, apply_sort, paginate
from app.core.principal import Principal
from app.llm.service import llm_service
from app.mcp.service import mcp_service
from app.models import Project, ProjectStatus
from app.projects.repository import project_repository
from app.projects.schemas import ProjectCreate, ProjectOut, ProjectStatusUpdate, ProjectUpdate
from app.projects.states import LISTED, marketplace_may_move, owner_may_move
from app.users.service import user_service


def _canonical_id(text: str) -> str:
    """A UUID in its one text form (MCP client ids are compared as text in ``mcp_servers``)."""
    try:
        return str(UUID(text))
    except ValueError:
        return text


_SORTABLE = {"createdAt": Project.created_at, "updatedAt": Project.updated_at, "name": Project.name}


class ProjectService:
    @staticmethod
    def out(project: Project) -> ProjectOut:
        return ProjectOut(
            id=project.id,
            user_id=project.user_id,
            name=project.name,
            description=project.description,
            prompt=project.prompt,
            status=project.status,
            llm=project.llm,
            mcp_servers=project.mcp_servers,
            metadata=project.metadata_,
            created_at=project.created_at,
            updated_at=project.updated_at,
        )

    async def list_visible(
        self,
        db: AsyncSession,
        actor: Principal,
        params: PageParams,
        *,
        owner_id: UUID | None = None,
        status: str | None = None,
        q: str | None = None,
    ) -> tuple[list[ProjectOut], int]:
        """Builders see their own projects; admins see all (optionally one owner's)."""
        if not actor.can(Perm.PROJECTS_READ_ANY):
            if owner_id is not None and owner_id != actor.user_id:
                raise NotFound("User not found", code="user_not_found")
            owner_id = actor.user_id
        stmt = project_repository.search(owner_id=owner_id, status=status, q=q)
        stmt = apply_sort(stmt, params.sort, _SORTABLE, default="-createdAt", tiebreak=Project.id)
        projects, total = await paginate(db, stmt, params)
        return [self.out(p) for p in projects], total

    async def get_visible(
        self, db: AsyncSession, actor: Principal, project_id: UUID, *, for_update: bool = False
    ) -> Project:
        project = await project_repository.get(db, project_id, for_update=for_update)
        # Someone else's project is reported missing rather than forbidden: ids do not leak.
        if project is None or (project.user_id != actor.user_id and not actor.can(Perm.PROJECTS_READ_ANY)):
            raise NotFound("Project not found", code="project_not_found")
        return project

    async def _get_changeable(self, db: AsyncSession, actor: Principal, project_id: UUID) -> Project:
        project = await self.get_visible(db, actor, project_id, for_update=True)
        if project.user_id != actor.user_id and not actor.can(Perm.PROJECTS_MANAGE_ANY):
            raise Forbidden("Only the owner may change this project")
        return project

    async def _check_project_limit(self, db: AsyncSession, owner_id: UUID) -> None:
        """The owner's plan caps their non-archived projects. The owner row is locked so two
        concurrent creates cannot both take the last slot."""
        owner = await user_service.get(db, owner_id, for_update=True)
        limits: dict[str, Any] = await user_service.plan_limits(db, owner.plan) if owner else {}
        max_projects = limits.get("maxProjects")
        if (
            isinstance(max_projects, int)
            and await project_repository.count_owned(db, owner_id) >= max_projects
        ):
            raise Forbidden(
                f"Your plan allows {max_projects} active projects; archive one or upgrade",
                code="plan_limit_reached",
                details={"limit": "maxProjects", "value": max_projects},
            )

    async def create(self, db: AsyncSession, actor: Principal, body: ProjectCreate) -> Project:
        await self._check_project_limit(db, actor.user_id)
        if body.llm is not None:
            await llm_service.ensure_selectable(db, body.llm)
        project = Project(
            user_id=actor.user_id,
            name=body.name,
            description=body.description,
            prompt=body.prompt,
            llm=body.llm,
            mcp_servers=await self._attachable_mcp_servers(db, body.mcp_servers),
            metadata_=body.metadata,
            status=ProjectStatus.DRAFT,
        )
        db.add(project)
        await db.flush()
        await record_event(
            db,
            "project.created",
            actor_id=actor.user_id,
            subject_id=project.id,
            payload={
                "ownerId": str(actor.user_id),
                "name": project.name,
                "llm": project.llm,
                "status": project.status,
            },
        )
        return project

    async def update(
        self, db: AsyncSession, actor: Principal, project_id: UUID, body: ProjectUpdate
    ) -> Project:
        project = await self._get_changeable(db, actor, project_id)
        if project.status == ProjectStatus.ARCHIVED:
            raise Conflict("Archived projects are read-only; restore to draft first", code="project_archived")
        changes = body.model_dump(exclude_unset=True)
        for explicit_null in [k for k, v in changes.items() if v is None and k != "llm"]:
            changes.pop(explicit_null)
        if changes.get("llm") is not None and changes["llm"] != project.llm:
            await llm_service.ensure_selectable(db, changes["llm"])
        if "mcp_servers" in changes:
            changes["mcp_servers"] = await self._attachable_mcp_servers(
                db, changes["mcp_servers"], attached=project.mcp_servers
            )
        fields = []
        for field, value in changes.items():
            attr = "metadata_" if field == "metadata" else field
            if getattr(project, attr) != value:
                setattr(project, attr, value)
                fields.append(to_camel(field))
        if fields:
            project.updated_at = datetime.now(UTC)
            await record_event(
                db,
                "project.updated",
                actor_id=actor.user_id,
                subject_id=project.id,
                payload={"fields": sorted(fields)},
            )
        await db.flush()
        return project

    @staticmethod
    async def _attachable_mcp_servers(
        db: AsyncSession, wanted: list[str], attached: list[str] | None = None
    ) -> list[str]:
        """``wanted`` without repeats, if every newly attached id is an active MCP client (one
        already attached may stay while its client is inactive: chats skip it)."""
        unique = list(dict.fromkeys(_canonical_id(client_id) for client_id in wanted))
        new = [client_id for client_id in unique if client_id not in (attached or [])]
        unusable = await mcp_service.unusable_ids(db, new)
        if unusable:
            raise ValidationFailed(
                "Only active MCP clients can be attached (GET /api/mcp-clients/active lists them)",
                code="mcp_clients_unavailable",
                details={"ids": unusable},
            )
        return unique

    async def detach_mcp_client(self, db: AsyncSession, actor_id: UUID, client_id: str) -> list[UUID]:
        """For the MCP domain, deleting a client: remove it from every project using it."""
        projects = await project_repository.using_mcp_client(db, client_id)
        for project in projects:
            project.mcp_servers = [other for other in project.mcp_servers if other != client_id]
            project.updated_at = datetime.now(UTC)
            await record_event(
                db,
                "project.updated",
                actor_id=actor_id,
                subject_id=project.id,
                payload={"fields": ["mcpServers"]},
            )
        return [project.id for project in projects]

    async def delete(self, db: AsyncSession, actor: Principal, project_id: UUID) -> None:
        project = await self._get_changeable(db, actor, project_id)
        if project.status in LISTED:
            raise Conflict(
                "Delist the project from the marketplace before deleting it", code="project_listed"
            )
        project.deleted_at = datetime.now(UTC)
        await record_event(
            db,
            "project.deleted",
            actor_id=actor.user_id,
            subject_id=project.id,
            payload={"status": project.status},
        )

    async def set_status(
        self, db: AsyncSession, actor: Principal, project_id: UUID, body: ProjectStatusUpdate
    ) -> Project:
        project = await self._get_changeable(db, actor, project_id)
        current, target = ProjectStatus(project.status), ProjectStatus(body.status)
        if current == target:
            return project
        if not owner_may_move(current, target):
            raise Conflict(
                f"A {current} project cannot move to {target}",
                code="invalid_status_transition",
                details={"from": current.value, "to": target.value},
            )
        if current == ProjectStatus.ARCHIVED:
            await self._check_project_limit(db, project.user_id)
        return await self._move(db, actor.user_id, project, target)

    async def set_marketplace_status(
        self, db: AsyncSession, actor_id: UUID, project_id: UUID, target: ProjectStatus
    ) -> Project:
        """For the marketplace domain: publish, hold, reinstate or delist a project."""
        project = await project_repository.get(db, project_id, for_update=True)
        if project is None:
            raise NotFound("Project not found", code="project_not_found")
        current = ProjectStatus(project.status)
        if not marketplace_may_move(current, target):
            raise Conflict(
                f"A {current} project cannot move to {target}",
                code="invalid_status_transition",
                details={"from": current.value, "to": target.value},
            )
        return await self._move(db, actor_id, project, target)

    async def sync_marketplace_status(
        self, db: AsyncSession, actor_id: UUID, project_id: UUID, target: ProjectStatus
    ) -> None:
        """Bring the project's status in line with its listing (no-op when it already is)."""
        project = await project_repository.get(db, project_id)
        if project is not None and project.status != target:
            await self.set_marketplace_status(db, actor_id, project_id, target)

    @staticmethod
    async def _move(db: AsyncSession, actor_id: UUID, project: Project, target: ProjectStatus) -> Project:
        previous = project.status
        project.status = target
        project.updated_at = datetime.now(UTC)
        await record_event(
            db,
            "project.status_changed",
            actor_id=actor_id,
            subject_id=project.id,
            payload={"from": previous, "to": target.value, "ownerId": str(project.user_id)},
        )
        await db.flush()
        return project


project_service = ProjectService()
