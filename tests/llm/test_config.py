"""Administrators configure LLM providers and models; builders choose among the active ones."""

import httpx
from sqlalchemy import select

from app.core.db import sessionmaker
from app.models import LlmProvider
from tests.factories import Account, create_project, signed_in

OPENAI = {
    "name": "openai",
    "kind": "openai_compatible",
    "baseUrl": "https://api.openai.com/v1/",
    "apiKey": "sk-live-secret-abcdefgh1234",
}


async def add_provider(client: httpx.AsyncClient, admin: Account, **changes: object) -> dict[str, object]:
    response = await client.post("/api/llm/providers", json={**OPENAI, **changes}, headers=admin.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def add_model(
    client: httpx.AsyncClient, admin: Account, provider_id: object, key: str, **changes: object
) -> dict[str, object]:
    body = {"key": key, "providerId": provider_id, "model": key.rsplit("/", 1)[-1], **changes}
    response = await client.post("/api/llm/models", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def keys(client: httpx.AsyncClient, account: Account, query: str = "") -> list[str]:
    response = await client.get(f"/api/llm/models?limit=100{query}", headers=account.headers)
    assert response.status_code == 200, response.text
    return [m["key"] for m in response.json()["items"]]


async def test_api_key_is_stored_encrypted_and_only_ever_shown_masked(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")

    created = await add_provider(client, admin)

    assert created["apiKey"] == "****1234"
    assert created["baseUrl"] == "https://api.openai.com/v1"
    assert (created["kind"], created["isActive"], created["modelCount"]) == ("openai_compatible", True, 0)
    listed = (await client.get("/api/llm/providers", headers=admin.headers)).json()
    assert listed["items"] == [created]
    assert listed["pagination"] == {"total": 1, "page": 1, "limit": 20}
    async with sessionmaker()() as db:
        stored = (await db.execute(select(LlmProvider.api_key_encrypted))).scalar_one()
    assert "sk-live-secret" not in stored


async def test_provider_key_can_be_replaced_or_removed(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    provider = await add_provider(client, admin)
    path = f"/api/llm/providers/{provider['id']}"

    replaced = await client.put(path, json={"apiKey": "sk-other-key-zzzz9876"}, headers=admin.headers)
    renamed = await client.put(path, json={"name": "openai-eu"}, headers=admin.headers)
    removed = await client.put(path, json={"apiKey": None}, headers=admin.headers)

    assert replaced.json()["apiKey"] == "****9876"
    assert (renamed.json()["name"], renamed.json()["apiKey"]) == ("openai-eu", "****9876")
    assert removed.json()["apiKey"] is None


async def test_invalid_provider_configuration_is_refused_and_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    admin = await signed_in(client, "super_admin")
    await add_provider(client, admin)
    bad = {
        "ftp base url": ({**OPENAI, "name": "x", "baseUrl": "ftp://example.com"}, 422),
        "no host": ({**OPENAI, "name": "x", "baseUrl": "https://"}, 422),
        "credentials in url": ({**OPENAI, "name": "x", "baseUrl": "https://u:p@example.com/v1"}, 422),
        "unknown kind": ({**OPENAI, "name": "x", "kind": "cohere"}, 422),
        "unknown field": ({**OPENAI, "name": "x", "region": "eu"}, 422),
        "empty name": ({**OPENAI, "name": ""}, 422),
        "taken name": (OPENAI, 409),
    }
    for case, (body, status) in bad.items():
        response = await client.post("/api/llm/providers", json=body, headers=admin.headers)
        assert response.status_code == status, (case, response.text)
        assert set(response.json()) == {"error"}, case

    listed = (await client.get("/api/llm/providers", headers=admin.headers)).json()
    assert listed["pagination"]["total"] == 1


async def test_builders_see_offline_and_the_active_models_only(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    builder = await signed_in(client, "builder")
    openai = await add_provider(client, admin)
    local = await add_provider(client, admin, name="ollama", baseUrl="http://127.0.0.1:11434/v1", apiKey=None)
    await add_model(
        client,
        admin,
        openai["id"],
        "openai/gpt-4o-mini",
        displayName="GPT-4o mini",
        inputPricePerMillionTokens="0.15",
        outputPricePerMillionTokens=0.6,
    )
    retired = await add_model(client, admin, openai["id"], "openai/gpt-3.5", isActive=False)
    await add_model(client, admin, local["id"], "ollama/llama3")
    switched_off = await client.put(
        f"/api/llm/providers/{local['id']}", json={"isActive": False}, headers=admin.headers
    )
    assert switched_off.status_code == 200

    assert await keys(client, builder) == ["offline", "openai/gpt-4o-mini"]
    assert await keys(client, admin, "&includeUnavailable=true") == [
        "offline",
        "ollama/llama3",
        "openai/gpt-3.5",
        "openai/gpt-4o-mini",
    ]
    refused = await client.get("/api/llm/models?includeUnavailable=true", headers=builder.headers)
    assert refused.status_code == 403
    listed = (await client.get("/api/llm/models", headers=builder.headers)).json()["items"]
    assert listed[0]["builtIn"] is True
    assert listed[0]["providerKind"] == "offline"
    assert listed[1]["inputPricePerMillionTokens"] == "0.15"
    assert listed[1]["outputPricePerMillionTokens"] == "0.6"
    assert listed[1]["displayName"] == "GPT-4o mini"
    assert retired["isActive"] is False


async def test_model_validation(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    provider = await add_provider(client, admin)
    await add_model(client, admin, provider["id"], "openai/gpt-4o")
    base = {"providerId": provider["id"], "model": "gpt-4o"}
    bad = {
        "reserved key": ({**base, "key": "offline"}, 422, "llm_model_key_reserved"),
        "taken key": ({**base, "key": "openai/gpt-4o"}, 409, "llm_model_key_taken"),
        "spaces in key": ({**base, "key": "my model"}, 422, "validation_error"),
        "negative price": ({**base, "key": "k", "inputPricePerMillionTokens": -1}, 422, "validation_error"),
        "unknown provider": (
            {**base, "key": "k", "providerId": "00000000-0000-7000-8000-000000000000"},
            422,
            "unknown_llm_provider",
        ),
    }
    for case, (body, status, code) in bad.items():
        response = await client.post("/api/llm/models", json=body, headers=admin.headers)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), case


async def test_a_project_may_only_use_an_available_model(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    builder = await signed_in(client, "builder")
    provider = await add_provider(client, admin)
    await add_model(client, admin, provider["id"], "openai/gpt-4o-mini")
    off = await add_model(client, admin, provider["id"], "openai/off", isActive=False)
    assert off["isActive"] is False

    for llm in ("openai/gpt-4o-mini", "offline", None):
        created = await client.post("/api/projects", json={"name": "P", "llm": llm}, headers=builder.headers)
        assert created.status_code == 201, created.text
        assert created.json()["llm"] == llm
    project = created.json()["id"]
    for llm in ("gpt-5-imaginary", "openai/off"):
        refused = await client.put(f"/api/projects/{project}", json={"llm": llm}, headers=builder.headers)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "unknown_llm"
        assert refused.json()["error"]["details"] == {"llm": llm}
    assert (await client.get(f"/api/projects/{project}", headers=builder.headers)).json()["llm"] is None
    archived = await client.put(
        f"/api/projects/{project}/status", json={"status": "archived"}, headers=builder.headers
    )
    assert archived.status_code == 200
    refused = await client.post("/api/projects", json={"name": "P", "llm": "nope"}, headers=builder.headers)
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "unknown_llm")


async def test_a_model_in_use_cannot_be_deleted_or_renamed(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    builder = await signed_in(client, "builder")
    provider = await add_provider(client, admin)
    model = await add_model(client, admin, provider["id"], "openai/gpt-4o-mini")
    project = await create_project(builder, name="Uses it", llm="openai/gpt-4o-mini")
    path = f"/api/llm/models/{model['id']}"

    deleted = await client.delete(path, headers=admin.headers)
    renamed = await client.put(path, json={"key": "openai/mini"}, headers=admin.headers)
    provider_deleted = await client.delete(f"/api/llm/providers/{provider['id']}", headers=admin.headers)

    assert (deleted.status_code, deleted.json()["error"]["code"]) == (409, "llm_model_in_use")
    assert deleted.json()["error"]["details"] == {"projects": 1}
    assert (renamed.status_code, renamed.json()["error"]["code"]) == (409, "llm_model_in_use")
    assert (provider_deleted.status_code, provider_deleted.json()["error"]["code"]) == (
        409,
        "llm_provider_in_use",
    )
    repriced = await client.put(path, json={"outputPricePerMillionTokens": "0.55"}, headers=admin.headers)
    assert repriced.json()["outputPricePerMillionTokens"] == "0.55"

    moved = await client.put(f"/api/projects/{project}", json={"llm": "offline"}, headers=builder.headers)
    assert moved.status_code == 200
    assert (await client.delete(path, headers=admin.headers)).status_code == 204
    assert (
        await client.delete(f"/api/llm/providers/{provider['id']}", headers=admin.headers)
    ).status_code == 204
    assert await keys(client, admin, "&includeUnavailable=true") == ["offline"]
