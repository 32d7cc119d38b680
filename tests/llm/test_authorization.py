"""Who may call what under ``/api/llm``: every route against every persona, as one table.

Any signed-in user may list the models to choose from; only administrators configure providers
and models. Each case gets a fresh world: a provider with a model (``{model}``, ``{provider}``)
and a provider without models (``{spare}``, deletable).

Personas (the columns): ``anonymous``, ``end_user``, ``owner`` (a builder with a project on the
model), ``other_builder``, ``super_admin``.
"""

from dataclasses import dataclass
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.core.db import sessionmaker
from app.models import LlmModel, LlmProvider
from tests.factories import Account, create_project, signed_in
from tests.llm.helpers import configure_model
from tests.matrix import (
    actor_for,
    assert_error_shape,
    assert_matrix_covers,
    matrix_cases,
    module_app,
    module_client,
)

# fmt: off
MATRIX: dict[str, tuple[int, int, int, int, int]] = {
    #                                       anonymous  end_user  owner  other_builder  admin
    "GET /api/llm/models":                  (401,       200,      200,   200,           200),
    "POST /api/llm/models":                 (401,       403,      403,   403,           201),
    "PUT /api/llm/models/{model}":          (401,       403,      403,   403,           200),
    "DELETE /api/llm/models/{model}":       (401,       403,      403,   403,           409),
    "GET /api/llm/providers":               (401,       403,      403,   403,           200),
    "POST /api/llm/providers":              (401,       403,      403,   403,           201),
    "PUT /api/llm/providers/{provider}":    (401,       403,      403,   403,           200),
    "DELETE /api/llm/providers/{spare}":    (401,       403,      403,   403,           204),
}
# fmt: on

CODES = {403: "permission_denied", 401: "not_authenticated", 409: "llm_model_in_use"}


@dataclass
class World:
    model: str
    provider: str
    spare: str
    actor: Account | None


app = module_app()
client = module_client()


async def make_world(client: httpx.AsyncClient, persona: str) -> World:
    owner = await signed_in(client, "builder")
    key = await configure_model(f"m-{uuid4().hex[:8]}")
    await configure_model(f"spare-{uuid4().hex[:8]}")
    async with sessionmaker()() as db:
        model = (await db.execute(select(LlmModel).where(LlmModel.key == key))).scalar_one()
        spare = LlmProvider(name=f"spare-{uuid4().hex[:8]}", kind="openai_compatible", base_url="http://x")
        db.add(spare)
        await db.commit()
    # The owner's project uses the model, so deleting it is refused even for admins.
    await create_project(owner, name="On the model", llm=key)
    actor = await actor_for(client, persona, owner=owner)
    return World(model=str(model.id), provider=str(model.provider_id), spare=str(spare.id), actor=actor)


def body_for(endpoint: str, world: World) -> dict[str, object] | None:
    unique = uuid4().hex[:8]
    return {
        "POST /api/llm/models": {"key": f"new-{unique}", "providerId": world.provider, "model": "m"},
        "PUT /api/llm/models/{model}": {"displayName": "Renamed"},
        "POST /api/llm/providers": {
            "name": f"p-{unique}",
            "kind": "anthropic",
            "baseUrl": "https://a.example",
        },
        "PUT /api/llm/providers/{provider}": {"isActive": False},
    }.get(endpoint)


async def counts() -> tuple[int, int, list[str]]:
    async with sessionmaker()() as db:
        providers = (await db.execute(select(func.count()).select_from(LlmProvider))).scalar_one()
        models = (await db.execute(select(func.count()).select_from(LlmModel))).scalar_one()
        names = list((await db.execute(select(LlmModel.display_name).order_by(LlmModel.key))).scalars())
    return providers, models, names


@pytest.mark.parametrize(("endpoint", "persona", "expected"), matrix_cases(MATRIX))
async def test_persona_gets_the_status_the_matrix_promises(
    client: httpx.AsyncClient, endpoint: str, persona: str, expected: int
) -> None:
    world = await make_world(client, persona)
    method, template = endpoint.split()
    path = template.format(model=world.model, provider=world.provider, spare=world.spare)
    before = await counts()

    response = await client.request(
        method, path, json=body_for(endpoint, world), headers=world.actor.headers if world.actor else {}
    )

    assert response.status_code == expected, response.text
    if expected >= 400:
        assert assert_error_shape(response)["code"] == CODES[expected]
        assert await counts() == before, "a refused request must change nothing"
    if method == "GET":
        assert await counts() == before


def test_matrix_covers_every_llm_route(app: FastAPI) -> None:
    assert_matrix_covers(app, MATRIX, lambda path: path.startswith("/api/llm"))
