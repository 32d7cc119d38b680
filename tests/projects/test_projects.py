"""Project journeys through the API: create, list, update, archive, delete, plan limits."""

from datetime import datetime
from uuid import UUID, uuid4

import httpx
import pytest

from app.core.db import commit, sessionmaker
from app.models import ProjectStatus
from app.projects.service import project_service
from tests.factories import Account, create_mcp_client, create_project, events_of, signed_in
from tests.llm.helpers import configure_model


async def move(client: httpx.AsyncClient, owner: Account, project: UUID | str, *statuses: str) -> None:
    for status in statuses:
        response = await client.put(
            f"/api/projects/{project}/status", json={"status": status}, headers=owner.headers
        )
        assert response.status_code == 200, response.text


async def marketplace(project: UUID | str, *statuses: ProjectStatus) -> None:
    async with sessionmaker()() as db:
        for status in statuses:
            await project_service.set_marketplace_status(db, uuid4(), UUID(str(project)), status)
        await commit(db)


async def names(client: httpx.AsyncClient, account: Account, path: str) -> list[str]:
    response = await client.get(path, headers=account.headers)
    assert response.status_code == 200, response.text
    return [item["name"] for item in response.json()["items"]]


async def test_builder_creates_a_draft_project_and_reads_it_back_in_camel_case(
    client: httpx.AsyncClient,
) -> None:
    builder = await signed_in(client, "builder")
    crm, calendar = await create_mcp_client("CRM"), await create_mcp_client("Calendar")
    body = {
        "name": "Support bot",
        "description": "Answers billing questions",
        "prompt": "You are a helpful support agent.",
        "llm": "offline",
        "mcpServers": [crm, calendar],
        "metadata": {"color": "teal", "tags": ["support"]},
    }

    created = await client.post("/api/projects", json=body, headers=builder.headers)

    assert created.status_code == 201, created.text
    project = created.json()
    assert set(project) == {
        "id",
        "userId",
        "name",
        "description",
        "prompt",
        "status",
        "llm",
        "mcpServers",
        "files",
        "metadata",
        "createdAt",
        "updatedAt",
    }
    assert {k: project[k] for k in body} == body
    assert project["status"] == "draft"
    assert project["userId"] == str(builder.id)
    assert project["files"] == []
    fetched = await client.get(f"/api/projects/{project['id']}", headers=builder.headers)
    assert fetched.json() == project
    [event] = await events_of("project.created")
    assert event["subject_id"] == project["id"]
    assert event["actor_id"] == builder.id
    assert event["payload"] == {
        "ownerId": str(builder.id),
        "name": "Support bot",
        "llm": "offline",
        "status": "draft",
    }


async def test_only_a_name_is_needed_to_create_a_project(client: httpx.AsyncClient) -> None:
    builder = await signed_in(client, "builder")

    created = await client.post("/api/projects", json={"name": "  Minimal  "}, headers=builder.headers)

    assert created.status_code == 201, created.text
    project = created.json()
    assert project["name"] == "Minimal"  # surrounding whitespace is trimmed
    assert (project["description"], project["prompt"], project["llm"]) == ("", "", None)
    assert (project["mcpServers"], project["metadata"]) == ([], {})


async def test_project_list_paginates_sorts_filters_and_searches(client: httpx.AsyncClient) -> None:
    owner = await signed_in(client, "builder")
    other = await signed_in(client, "builder")
    alpha = await create_project(owner, name="Alpha helper", description="Answers billing questions")
    beta = await create_project(owner, name="Beta bot", description="Support for returns")
    await create_project(owner, name="Gamma guide", description="BILLING FAQ")
    await create_project(other, name="Alpha of someone else", description="billing")
    await move(client, owner, beta, "in_development")

    first = await client.get("/api/projects?limit=2", headers=owner.headers)
    assert first.json()["pagination"] == {"total": 3, "page": 1, "limit": 2}
    assert [p["name"] for p in first.json()["items"]] == ["Gamma guide", "Beta bot"]  # newest first
    assert await names(client, owner, "/api/projects?limit=2&page=2") == ["Alpha helper"]
    beyond = await client.get("/api/projects?limit=2&page=3", headers=owner.headers)
    assert beyond.json() == {"items": [], "pagination": {"total": 3, "page": 3, "limit": 2}}

    assert await names(client, owner, "/api/projects?sort=name") == [
        "Alpha helper",
        "Beta bot",
        "Gamma guide",
    ]
    assert await names(client, owner, "/api/projects?sort=-name") == [
        "Gamma guide",
        "Beta bot",
        "Alpha helper",
    ]
    assert await names(client, owner, "/api/projects?sort=createdAt") == [
        "Alpha helper",
        "Beta bot",
        "Gamma guide",
    ]
    await client.put(f"/api/projects/{alpha}", json={"prompt": "Be brief."}, headers=owner.headers)
    assert (await names(client, owner, "/api/projects?sort=-updatedAt"))[0] == "Alpha helper"

    assert await names(client, owner, "/api/projects?status=in_development") == ["Beta bot"]
    assert await names(client, owner, "/api/projects?status=draft&sort=name") == [
        "Alpha helper",
        "Gamma guide",
    ]
    assert await names(client, owner, "/api/projects?status=published") == []

    # Search covers name and description, ignores case, and treats % and _ literally.
    assert await names(client, owner, "/api/projects?q=billing&sort=name") == ["Alpha helper", "Gamma guide"]
    assert await names(client, owner, "/api/projects?q=BOT") == ["Beta bot"]
    assert await names(client, owner, "/api/projects?q=%25") == []
    assert await names(client, owner, "/api/projects?q=_") == []
    searched = await client.get("/api/projects?q=billing&status=draft&limit=1", headers=owner.headers)
    assert searched.json()["pagination"] == {"total": 2, "page": 1, "limit": 1}


async def test_update_changes_only_the_given_fields_and_the_event_lists_them(
    client: httpx.AsyncClient,
) -> None:
    owner = await signed_in(client, "builder")
    for model in ("model-a", "model-b"):  # a project may only use a configured model
        await configure_model(model)
    crm, search = await create_mcp_client("CRM"), await create_mcp_client("Search")
    created = await client.post(
        "/api/projects",
        json={
            "name": "Original",
            "description": "Keeps",
            "prompt": "Old prompt",
            "llm": "model-a",
            "mcpServers": [crm],
            "metadata": {"a": 1},
        },
        headers=owner.headers,
    )
    before = created.json()

    response = await client.put(
        f"/api/projects/{before['id']}",
        json={"name": "Renamed", "prompt": "New prompt", "llm": "model-b", "mcpServers": [crm, search]},
        headers=owner.headers,
    )

    assert response.status_code == 200, response.text
    after = response.json()
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {"name", "prompt", "llm", "mcpServers", "updatedAt"}
    assert (after["name"], after["prompt"], after["llm"]) == ("Renamed", "New prompt", "model-b")
    assert after["mcpServers"] == [crm, search]
    assert datetime.fromisoformat(after["updatedAt"]) > datetime.fromisoformat(before["updatedAt"])
    [event] = await events_of("project.updated")
    # Field names in events are the API's camelCase ones (docs/events.md).
    assert event["payload"] == {"fields": ["llm", "mcpServers", "name", "prompt"]}
    assert event["actor_id"] == owner.id


async def test_update_with_nothing_new_changes_nothing_and_writes_no_event(client: httpx.AsyncClient) -> None:
    owner = await signed_in(client, "builder")
    await configure_model("model-a")  # a project may only use a configured model
    project = await create_project(owner, name="Same", llm="model-a", metadata={"a": 1})
    before = (await client.get(f"/api/projects/{project}", headers=owner.headers)).json()

    for body in [{}, {"name": "Same"}, {"name": None, "metadata": {"a": 1}}]:
        response = await client.put(f"/api/projects/{project}", json=body, headers=owner.headers)
        assert response.status_code == 200, response.text
        assert response.json() == before

    assert await events_of("project.updated") == []


async def test_llm_can_be_cleared_with_null_but_other_fields_ignore_null(client: httpx.AsyncClient) -> None:
    owner = await signed_in(client, "builder")
    await configure_model("model-a")  # a project may only use a configured model
    project = await create_project(owner, name="Keeps its name", llm="model-a")

    response = await client.put(
        f"/api/projects/{project}", json={"llm": None, "name": None, "prompt": None}, headers=owner.headers
    )

    assert response.status_code == 200
    assert (response.json()["llm"], response.json()["name"]) == (None, "Keeps its name")
    [event] = await events_of("project.updated")
    assert event["payload"] == {"fields": ["llm"]}


async def test_archived_project_is_read_only_until_restored_to_draft(client: httpx.AsyncClient) -> None:
    owner = await signed_in(client, "builder")
    project = await create_project(owner, name="Old app")
    await move(client, owner, project, "archived")

    refused = await client.put(f"/api/projects/{project}", json={"name": "Revived"}, headers=owner.headers)

    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "project_archived"
    assert (await client.get(f"/api/projects/{project}", headers=owner.headers)).json()["name"] == "Old app"
    assert await events_of("project.updated") == []

    await move(client, owner, project, "draft")
    allowed = await client.put(f"/api/projects/{project}", json={"name": "Revived"}, headers=owner.headers)
    assert allowed.status_code == 200
    assert allowed.json()["name"] == "Revived"


async def test_deleted_project_is_gone_for_owner_and_admin(client: httpx.AsyncClient) -> None:
    owner = await signed_in(client, "builder")
    admin = await signed_in(client, "super_admin")
    doomed = await create_project(owner, name="Doomed")
    await create_project(owner, name="Survivor")

    response = await client.delete(f"/api/projects/{doomed}", headers=owner.headers)

    assert response.status_code == 204
    assert response.content == b""
    for account in (owner, admin):
        gone = await client.get(f"/api/projects/{doomed}", headers=account.headers)
        assert gone.status_code == 404
        assert gone.json()["error"]["code"] == "project_not_found"
        assert await names(client, account, f"/api/projects?userId={owner.id}") == ["Survivor"]
    assert (await client.delete(f"/api/projects/{doomed}", headers=owner.headers)).status_code == 404
    assert (
        await client.put(f"/api/projects/{doomed}", json={"name": "Back"}, headers=owner.headers)
    ).status_code == 404
    [event] = await events_of("project.deleted")
    assert (event["subject_id"], event["actor_id"], event["payload"]) == (
        str(doomed),
        owner.id,
        {"status": "draft"},
    )


@pytest.mark.parametrize("listed", [[ProjectStatus.PUBLISHED], [ProjectStatus.PUBLISHED, ProjectStatus.HELD]])
async def test_listed_project_cannot_be_deleted_until_delisted(
    client: httpx.AsyncClient, listed: list[ProjectStatus]
) -> None:
    owner = await signed_in(client, "builder")
    project = await create_project(owner, name="On sale")
    await move(client, owner, project, "in_development", "ready")
    await marketplace(project, *listed)

    refused = await client.delete(f"/api/projects/{project}", headers=owner.headers)

    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "project_listed"
    still_there = await client.get(f"/api/projects/{project}", headers=owner.headers)
    assert still_there.json()["status"] == listed[-1]
    assert await events_of("project.deleted") == []

    await marketplace(project, ProjectStatus.READY)
    assert (await client.delete(f"/api/projects/{project}", headers=owner.headers)).status_code == 204


async def test_free_plan_allows_three_active_projects(client: httpx.AsyncClient) -> None:
    builder = await signed_in(client, "builder")
    first, second, _ = [
        (await client.post("/api/projects", json={"name": f"App {n}"}, headers=builder.headers)).json()["id"]
        for n in range(3)
    ]

    fourth = await client.post("/api/projects", json={"name": "App 4"}, headers=builder.headers)

    assert fourth.status_code == 403
    assert fourth.json()["error"] == {
        "code": "plan_limit_reached",
        "message": fourth.json()["error"]["message"],
        "details": {"limit": "maxProjects", "value": 3},
    }
    assert len(await events_of("project.created")) == 3
    # Archived and deleted projects do not count.
    await move(client, builder, first, "archived")
    assert (
        await client.post("/api/projects", json={"name": "App 4"}, headers=builder.headers)
    ).status_code == 201
    await client.delete(f"/api/projects/{second}", headers=builder.headers)
    assert (
        await client.post("/api/projects", json={"name": "App 5"}, headers=builder.headers)
    ).status_code == 201
    assert (
        await client.post("/api/projects", json={"name": "App 6"}, headers=builder.headers)
    ).status_code == 403


async def test_paid_plan_raises_the_project_limit(client: httpx.AsyncClient) -> None:
    builder = await signed_in(client, "builder")
    admin = await signed_in(client, "super_admin")
    for n in range(3):
        await create_project(builder, name=f"App {n}")
    upgrade = await client.put(
        f"/api/users/{builder.id}/subscription", json={"plan": "pro"}, headers=admin.headers
    )
    assert upgrade.status_code == 200

    response = await client.post("/api/projects", json={"name": "App 4"}, headers=builder.headers)

    assert response.status_code == 201


async def test_restoring_an_archived_project_respects_the_plan_limit(client: httpx.AsyncClient) -> None:
    builder = await signed_in(client, "builder")
    archived = await create_project(builder, name="Archived")
    await move(client, builder, archived, "archived")
    for n in range(3):
        await create_project(builder, name=f"Active {n}")

    restore = await client.put(
        f"/api/projects/{archived}/status", json={"status": "draft"}, headers=builder.headers
    )

    assert restore.status_code == 403, "a fourth active project on the free plan"
    assert restore.json()["error"]["code"] == "plan_limit_reached"


@pytest.mark.parametrize("path", ["/api/projects/user/{user}", "/api/users/{user}/projects"])
async def test_a_users_projects_are_listed_for_them_and_for_admins(
    client: httpx.AsyncClient, path: str
) -> None:
    owner = await signed_in(client, "builder")
    other = await signed_in(client, "builder")
    admin = await signed_in(client, "super_admin")
    await create_project(owner, name="First")
    second = await create_project(owner, name="Second")
    await create_project(other, name="Not theirs")
    await move(client, owner, second, "in_development")
    url = path.format(user=owner.id)

    assert await names(client, owner, url) == ["Second", "First"]
    assert await names(client, admin, url) == ["Second", "First"]
    assert await names(client, admin, url + "?sort=name&limit=1&page=2") == ["Second"]
    denied = await client.get(path.format(user=other.id), headers=owner.headers)
    assert denied.status_code == 404
    paged = await client.get(url + "?limit=1", headers=owner.headers)
    assert paged.json()["pagination"] == {"total": 2, "page": 1, "limit": 1}


async def test_projects_of_a_user_filter_by_status(client: httpx.AsyncClient) -> None:
    owner = await signed_in(client, "builder")
    await create_project(owner, name="Draft one")
    ready = await create_project(owner, name="Ready one")
    await move(client, owner, ready, "in_development", "ready")

    assert await names(client, owner, f"/api/projects/user/{owner.id}?status=ready") == ["Ready one"]
    assert await names(client, owner, f"/api/projects/user/{owner.id}?status=draft") == ["Draft one"]


async def test_admin_listing_projects_of_an_unknown_user_gets_404(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    for path in (f"/api/projects/user/{uuid4()}", f"/api/users/{uuid4()}/projects"):
        response = await client.get(path, headers=admin.headers)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "user_not_found"


async def test_sort_takes_one_leading_dash_only(client: httpx.AsyncClient) -> None:
    owner = await signed_in(client, "builder")
    for name in ("Beta", "Alpha"):
        await create_project(owner, name=name)
    assert await names(client, owner, "/api/projects?sort=-name") == ["Beta", "Alpha"]
    response = await client.get("/api/projects?sort=--name", headers=owner.headers)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_sort"
