from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, status

from app.auth.deps import CurrentPrincipal, require_permission
from app.auth.permissions import Perm
from app.core.db import DB
from app.core.errors import Forbidden
from app.core.openapi import errors
from app.core.pagination import Pagination
from app.core.principal import Principal
from app.core.runtime import runtime
from app.core.schemas import Page, PaginationInfo
from app.llm.schemas import (
    LlmModelCreate,
    LlmModelOut,
    LlmModelUpdate,
    LlmProviderCreate,
    LlmProviderOut,
    LlmProviderUpdate,
)
from app.llm.service import llm_service

router = APIRouter(prefix="/api/llm", tags=["llm"])

Admin = Annotated[Principal, Depends(require_permission(Perm.PLATFORM_ADMIN))]


@router.get("/models", response_model=Page[LlmModelOut], responses=errors(401, 403))
async def list_models(
    db: DB,
    principal: CurrentPrincipal,
    page: Pagination,
    include_unavailable: Annotated[
        bool, Query(alias="includeUnavailable", description="Admins: also switched-off models")
    ] = False,
) -> Page[LlmModelOut]:
    """The models a builder may choose as a project's `llm` (by `key`): `offline` (built in) first,
    then the active models of active providers. Any signed-in user."""
    if include_unavailable and not principal.can(Perm.PLATFORM_ADMIN):
        raise Forbidden("Only administrators see switched-off models", code="permission_denied")
    items, total = await llm_service.list_models(db, page, include_unusable=include_unavailable)
    return Page(items=items, pagination=PaginationInfo(total=total, page=page.page, limit=page.limit))


@router.post(
    "/models",
    response_model=LlmModelOut,
    status_code=status.HTTP_201_CREATED,
    responses=errors(401, 403, 409),
)
async def create_model(body: LlmModelCreate, db: DB, _: Admin) -> LlmModelOut:
    """Admins: offer a provider's model under a `key` (what projects store), with its prices in USD
    per million tokens (used for `costUsd` in usage)."""
    model = await llm_service.create_model(db, body)
    return await llm_service.model_with_provider(db, model.id)


@router.put("/models/{model_id}", response_model=LlmModelOut, responses=errors(401, 403, 404, 409))
async def update_model(model_id: UUID, body: LlmModelUpdate, db: DB, _: Admin) -> LlmModelOut:
    """Admins: change a model. Renaming the key of a model that projects use is a 409."""
    model = await llm_service.update_model(db, model_id, body)
    return await llm_service.model_with_provider(db, model.id)


@router.delete(
    "/models/{model_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401, 403, 404, 409)
)
async def delete_model(model_id: UUID, db: DB, _: Admin) -> None:
    """Admins: remove a model. A model that projects use is a 409 (switch it off instead)."""
    await llm_service.delete_model(db, model_id)


@router.get("/providers", response_model=Page[LlmProviderOut], responses=errors(401, 403))
async def list_providers(db: DB, _: Admin, page: Pagination) -> Page[LlmProviderOut]:
    """Admins: the configured providers, API keys masked. Sort: `name` (default), `createdAt`."""
    items, total = await llm_service.list_providers(db, runtime().settings, page)
    return Page(items=items, pagination=PaginationInfo(total=total, page=page.page, limit=page.limit))


@router.post(
    "/providers",
    response_model=LlmProviderOut,
    status_code=status.HTTP_201_CREATED,
    responses=errors(401, 403, 409),
)
async def create_provider(body: LlmProviderCreate, db: DB, _: Admin) -> LlmProviderOut:
    """Admins: add an `openai_compatible` (OpenAI, Ollama, vLLM, OpenRouter: `baseUrl` up to `/v1`)
    or `anthropic` (`https://api.anthropic.com`) provider. The API key is stored encrypted and
    never shown again."""
    settings = runtime().settings
    provider = await llm_service.create_provider(db, settings, body)
    return await llm_service.provider_with_count(db, settings, provider.id)


@router.put("/providers/{provider_id}", response_model=LlmProviderOut, responses=errors(401, 403, 404, 409))
async def update_provider(provider_id: UUID, body: LlmProviderUpdate, db: DB, _: Admin) -> LlmProviderOut:
    """Admins: change a provider; `apiKey: null` removes its key. Switching it off makes its
    models unavailable to projects."""
    settings = runtime().settings
    provider = await llm_service.update_provider(db, settings, provider_id, body)
    return await llm_service.provider_with_count(db, settings, provider.id)


@router.delete(
    "/providers/{provider_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401, 403, 404, 409)
)
async def delete_provider(provider_id: UUID, db: DB, _: Admin) -> None:
    """Admins: remove a provider without models (delete its models first: 409 otherwise)."""
    await llm_service.delete_provider(db, provider_id)
