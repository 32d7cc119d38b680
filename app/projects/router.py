from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query, status

from app.auth.deps import CurrentPrincipal, ProjectCreator
from app.core.db import DB
from app.core.openapi import errors
from app.core.pagination import Pagination
from app.core.schemas import NO_NUL, Page, PaginationInfo
from app.files.service import file_service
from app.projects.schemas import ProjectCreate, ProjectOut, ProjectStatusUpdate, ProjectUpdate
from app.projects.service import project_service
from app.users.service import user_service

router = APIRouter(prefix="/api/projects", tags=["projects"])

StatusFilter = Literal["draft", "in_development", "ready", "published", "held", "archived"]


async def with_files(db: DB, projects: list[ProjectOut]) -> list[ProjectOut]:
    """``files``: a summary of each project's knowledge files (the files domain owns them)."""
    summaries = await file_service.summaries(db, [p.id for p in projects])
    return [p.model_copy(update={"files": summaries.get(p.id, [])}) for p in projects]


@router.get("", response_model=Page[ProjectOut], responses=errors(401))
async def list_projects(
    db: DB,
    principal: CurrentPrincipal,
    page: Pagination,
    status: StatusFilter | None = None,
    q: Annotated[
        str | None, Query(max_length=200, pattern=NO_NUL, description="Search name and description")
    ] = None,
    user_id: Annotated[UUID | None, Query(alias="userId", description="Owner (admins)")] = None,
) -> Page[ProjectOut]:
    """Your projects; admins see every builder's. Sort: `createdAt`, `updatedAt`, `name`."""
    items, total = await project_service.list_visible(
        db, principal, page, owner_id=user_id, status=status, q=q
    )
    return Page(
        items=await with_files(db, items),
        pagination=PaginationInfo(total=total, page=page.page, limit=page.limit),
    )


@router.post("", response_model=ProjectOut, status_code=status.HTTP_201_CREATED, responses=errors(401, 403))
async def create_project(body: ProjectCreate, db: DB, principal: ProjectCreator) -> ProjectOut:
    """Create a project in `draft`. Builder persona; limited by the plan's `maxProjects`."""
    return project_service.out(await project_service.create(db, principal, body))


@router.get("/user/{user_id}", response_model=Page[ProjectOut], responses=errors(401, 404))
async def list_projects_of_user(
    user_id: UUID, db: DB, principal: CurrentPrincipal, page: Pagination, status: StatusFilter | None = None
) -> Page[ProjectOut]:
    """Projects owned by a user: yourself, or anyone for admins. Unknown users are 404."""
    await user_service.get_visible(db, principal, user_id)
    items, total = await project_service.list_visible(db, principal, page, owner_id=user_id, status=status)
    return Page(
        items=await with_files(db, items),
        pagination=PaginationInfo(total=total, page=page.page, limit=page.limit),
    )


@router.get("/{project_id}", response_model=ProjectOut, responses=errors(401, 404))
async def get_project(project_id: UUID, db: DB, principal: CurrentPrincipal) -> ProjectOut:
    """A project: its owner, or admins. Others get 404."""
    [project] = await with_files(
        db, [project_service.out(await project_service.get_visible(db, principal, project_id))]
    )
    return project


@router.put("/{project_id}", response_model=ProjectOut, responses=errors(401, 403, 404, 409))
async def update_project(
    project_id: UUID, body: ProjectUpdate, db: DB, principal: CurrentPrincipal
) -> ProjectOut:
    """Edit name, description, prompt, llm, mcpServers, metadata. Owner or admins."""
    [project] = await with_files(
        db, [project_service.out(await project_service.update(db, principal, project_id, body))]
    )
    return project


@router.delete("/{project_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401, 403, 404, 409))
async def delete_project(project_id: UUID, db: DB, principal: CurrentPrincipal) -> None:
    """Delete a project (soft). Owner or admins; a listed project must be delisted first."""
    await project_service.delete(db, principal, project_id)


@router.put("/{project_id}/status", response_model=ProjectOut, responses=errors(401, 403, 404, 409))
async def set_project_status(
    project_id: UUID, body: ProjectStatusUpdate, db: DB, principal: CurrentPrincipal
) -> ProjectOut:
    """Move a project along its state machine (draft, in_development, ready, archived).

    `published` and `held` are set by the marketplace. Invalid moves are 409."""
    [project] = await with_files(
        db, [project_service.out(await project_service.set_status(db, principal, project_id, body))]
    )
    return project
