"""LLM configuration: providers and models (administrators), what builders may choose, and the
route to call for a project's ``llm``."""

from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.crypto import mask, secret_box
from app.core.errors import Conflict, NotFound, ValidationFailed
from app.core.pagination import PageParams, apply_sort, paginate
from app.llm.providers import OFFLINE_KEY, OFFLINE_ROUTE, ModelRoute
from app.llm.repository import llm_repository
from app.llm.schemas import (
    LlmModelCreate,
    LlmModelOut,
    LlmModelUpdate,
    LlmProviderCreate,
    LlmProviderOut,
    LlmProviderUpdate,
)
from app.models import LlmModel, LlmProvider

_PROVIDER_SORTS = {"name": LlmProvider.name, "createdAt": LlmProvider.created_at}

OFFLINE_MODEL = LlmModelOut(
    id=None,
    key=OFFLINE_KEY,
    display_name=OFFLINE_ROUTE.display_name,
    provider_id=None,
    provider_name=OFFLINE_KEY,
    provider_kind="offline",
    model=OFFLINE_KEY,
    input_price_per_million_tokens=OFFLINE_ROUTE.input_price_per_mtok,
    output_price_per_million_tokens=OFFLINE_ROUTE.output_price_per_mtok,
    is_active=True,
    built_in=True,
)


def _model_not_found() -> NotFound:
    return NotFound("LLM model not found", code="llm_model_not_found")


def _provider_not_found() -> NotFound:
    return NotFound("LLM provider not found", code="llm_provider_not_found")


class LlmService:
    # --- providers --------------------------------------------------------------------------

    def provider_out(self, settings: Settings, provider: LlmProvider, model_count: int) -> LlmProviderOut:
        key = None
        if provider.api_key_encrypted is not None:
            try:
                key = mask(secret_box(settings).decrypt(provider.api_key_encrypted))
            except ValueError:
                key = mask("")  # set, but not readable with the current ENCRYPTION_KEY
        return LlmProviderOut(
            id=provider.id,
            name=provider.name,
            kind=provider.kind,
            base_url=provider.base_url,
            api_key=key,
            is_active=provider.is_active,
            model_count=model_count,
            created_at=provider.created_at,
            updated_at=provider.updated_at,
        )

    async def list_providers(
        self, db: AsyncSession, settings: Settings, params: PageParams
    ) -> tuple[list[LlmProviderOut], int]:
        stmt = apply_sort(llm_repository.providers(), params.sort, _PROVIDER_SORTS, "name", LlmProvider.id)
        providers, total = await paginate(db, stmt, params)
        counts = await llm_repository.model_counts(db, [p.id for p in providers])
        return [self.provider_out(settings, p, counts.get(p.id, 0)) for p in providers], total

    async def provider_with_count(
        self, db: AsyncSession, settings: Settings, provider_id: UUID
    ) -> LlmProviderOut:
        provider = await llm_repository.provider(db, provider_id)
        if provider is None:
            raise _provider_not_found()
        counts = await llm_repository.model_counts(db, [provider.id])
        return self.provider_out(settings, provider, counts.get(provider.id, 0))

    async def _check_name_free(self, db: AsyncSession, name: str, provider_id: UUID | None = None) -> None:
        existing = await llm_repository.provider_named(db, name)
        if existing is not None and existing.id != provider_id:
            raise Conflict(f"A provider named {name!r} exists", code="llm_provider_name_taken")

    async def create_provider(
        self, db: AsyncSession, settings: Settings, body: LlmProviderCreate
    ) -> LlmProvider:
        await self._check_name_free(db, body.name)
        provider = LlmProvider(
            name=body.name,
            kind=body.kind,
            base_url=body.base_url,
            api_key_encrypted=secret_box(settings).encrypt(body.api_key) if body.api_key else None,
            is_active=body.is_active,
        )
        db.add(provider)
        await db.flush()
        return provider

    async def update_provider(
        self, db: AsyncSession, settings: Settings, provider_id: UUID, body: LlmProviderUpdate
    ) -> LlmProvider:
        provider = await llm_repository.provider(db, provider_id, for_update=True)
        if provider is None:
            raise _provider_not_found()
        changes = body.model_dump(exclude_unset=True)
        if "name" in changes and changes["name"] is not None:
            await self._check_name_free(db, changes["name"], provider.id)
        for field, value in changes.items():
            if field == "api_key":
                provider.api_key_encrypted = secret_box(settings).encrypt(value) if value else None
            elif value is not None:
                setattr(provider, field, value)
        provider.updated_at = datetime.now(UTC)
        await db.flush()
        return provider

    async def delete_provider(self, db: AsyncSession, provider_id: UUID) -> None:
        provider = await llm_repository.provider(db, provider_id, for_update=True)
        if provider is None:
            raise _provider_not_found()
        models = (await llm_repository.model_counts(db, [provider.id])).get(provider.id, 0)
        if models:
            raise Conflict(
                f"The provider still has {models} model(s); delete them first",
                code="llm_provider_in_use",
                details={"models": models},
            )
        await db.delete(provider)
        await db.flush()

    # --- models -----------------------------------------------------------------------------

    @staticmethod
    def model_out(model: LlmModel, provider: LlmProvider) -> LlmModelOut:
        return LlmModelOut(
            id=model.id,
            key=model.key,
            display_name=model.display_name,
            provider_id=provider.id,
            provider_name=provider.name,
            provider_kind=provider.kind,
            model=model.model,
            input_price_per_million_tokens=model.input_price_per_mtok,
            output_price_per_million_tokens=model.output_price_per_mtok,
            is_active=model.is_active and provider.is_active,
            built_in=False,
        )

    async def list_models(
        self, db: AsyncSession, params: PageParams, *, include_unusable: bool
    ) -> tuple[list[LlmModelOut], int]:
        """``offline`` first, then the configured models by key. Few enough to page in memory."""
        rows = await llm_repository.models_with_providers(db, usable_only=not include_unusable)
        models = [OFFLINE_MODEL, *(self.model_out(m, p) for m, p in rows)]
        return models[params.offset : params.offset + params.limit], len(models)

    async def model_with_provider(self, db: AsyncSession, model_id: UUID) -> LlmModelOut:
        model = await llm_repository.model(db, model_id)
        if model is None:
            raise _model_not_found()
        provider = await llm_repository.provider(db, model.provider_id)
        assert provider is not None  # foreign key
        return self.model_out(model, provider)

    async def _check_key_free(self, db: AsyncSession, key: str, model_id: UUID | None = None) -> None:
        if key == OFFLINE_KEY:
            raise ValidationFailed(
                f"{OFFLINE_KEY!r} is the built-in model's key", code="llm_model_key_reserved"
            )
        existing = await llm_repository.model_keyed(db, key)
        if existing is not None and existing.id != model_id:
            raise Conflict(f"A model with key {key!r} exists", code="llm_model_key_taken")

    async def _known_provider(self, db: AsyncSession, provider_id: UUID) -> LlmProvider:
        provider = await llm_repository.provider(db, provider_id)
        if provider is None:
            raise ValidationFailed(
                "No LLM provider has this id",
                code="unknown_llm_provider",
                details={"providerId": str(provider_id)},
            )
        return provider

    async def create_model(self, db: AsyncSession, body: LlmModelCreate) -> LlmModel:
        await self._check_key_free(db, body.key)
        await self._known_provider(db, body.provider_id)
        model = LlmModel(
            key=body.key,
            provider_id=body.provider_id,
            model=body.model,
            display_name=body.display_name or body.key,
            input_price_per_mtok=body.input_price_per_million_tokens,
            output_price_per_mtok=body.output_price_per_million_tokens,
            is_active=body.is_active,
        )
        db.add(model)
        await db.flush()
        return model

    async def _check_unused(self, db: AsyncSession, model: LlmModel, doing: str) -> None:
        projects = await llm_repository.projects_using(db, model.key)
        if projects:
            raise Conflict(
                f"{projects} project(s) use {model.key!r}; move them to another model before you {doing}",
                code="llm_model_in_use",
                details={"projects": projects},
            )

    async def update_model(self, db: AsyncSession, model_id: UUID, body: LlmModelUpdate) -> LlmModel:
        model = await llm_repository.model(db, model_id, for_update=True)
        if model is None:
            raise _model_not_found()
        changes = body.model_dump(exclude_unset=True)
        if changes.get("key") is not None and changes["key"] != model.key:
            await self._check_key_free(db, changes["key"], model.id)
            await self._check_unused(db, model, "rename it")
        if changes.get("provider_id") is not None:
            await self._known_provider(db, changes["provider_id"])
        columns = {
            "input_price_per_million_tokens": "input_price_per_mtok",
            "output_price_per_million_tokens": "output_price_per_mtok",
        }
        for field, value in changes.items():
            if field in columns:
                setattr(model, columns[field], value)  # null: price unknown
            elif value is not None:
                setattr(model, field, value)
        model.updated_at = datetime.now(UTC)
        await db.flush()
        return model

    async def delete_model(self, db: AsyncSession, model_id: UUID) -> None:
        model = await llm_repository.model(db, model_id, for_update=True)
        if model is None:
            raise _model_not_found()
        await self._check_unused(db, model, "delete it")
        await db.delete(model)
        await db.flush()

    # --- what projects use ------------------------------------------------------------------

    async def ensure_selectable(self, db: AsyncSession, key: str) -> None:
        """For the projects domain: a project's ``llm`` must be an active model (or ``offline``)."""
        if key == OFFLINE_KEY:
            return
        found = await llm_repository.model_with_provider(db, key)
        if found is None or not (found[0].is_active and found[1].is_active):
            raise ValidationFailed(
                f"{key!r} is not an available LLM model; GET /api/llm/models lists them",
                code="unknown_llm",
                details={"llm": key},
            )

    async def route(self, db: AsyncSession, settings: Settings, key: str | None) -> ModelRoute:
        """How to call the model a project chose (``None``: the offline model). A model removed
        or switched off since is a 409: the project needs another one."""
        if key is None or key == OFFLINE_KEY:
            return OFFLINE_ROUTE
        found = await llm_repository.model_with_provider(db, key)
        if found is None or not (found[0].is_active and found[1].is_active):
            raise Conflict(
                f"The project's model {key!r} is not available any more; choose another one",
                code="llm_model_unavailable",
                details={"llm": key},
            )
        model, provider = found
        try:
            api_key = (
                secret_box(settings).decrypt(provider.api_key_encrypted)
                if provider.api_key_encrypted is not None
                else None
            )
        except ValueError as exc:
            raise Conflict(
                f"The API key of provider {provider.name!r} cannot be decrypted; an administrator "
                "must set it again",
                code="llm_provider_misconfigured",
            ) from exc
        return ModelRoute(
            key=model.key,
            display_name=model.display_name,
            provider_name=provider.name,
            kind=provider.kind,  # type: ignore[arg-type]
            model=model.model,
            base_url=provider.base_url,
            api_key=api_key,
            input_price_per_mtok=model.input_price_per_mtok,
            output_price_per_mtok=model.output_price_per_mtok,
        )


llm_service = LlmService()
