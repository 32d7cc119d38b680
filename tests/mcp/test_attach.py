"""Builders attach active MCP clients to their projects (``mcpServers``); deleting a client
detaches it from every project."""

import httpx

from tests.factories import create_project, events_of, signed_in
from tests.matrix import assert_error_shape
from tests.mcp.steps import remote_client

URL = "https://93.184.216.34/mcp"


async def test_a_builder_attaches_active_clients_only_and_is_told_which_ids_are_not(
    client: httpx.AsyncClient,
) -> None:
    admin = await signed_in(client, "super_admin")
    builder = await signed_in(client, "builder")
    active = await remote_client(client, admin, URL, name="Active")
    inactive = await remote_client(client, admin, URL, name="Inactive", isActive=False)
    unknown = "0b4d5f3c-2a1e-4c6b-9d8e-7f6a5b4c3d2e"

    refused = await client.post(
        "/api/projects",
        json={"name": "Bot", "mcpServers": [active["id"], inactive["id"], unknown, "crm"]},
        headers=builder.headers,
    )
    created = await client.post(
        "/api/projects",
        json={"name": "Bot", "mcpServers": [active["id"].upper(), active["id"]]},
        headers=builder.headers,
    )

    assert refused.status_code == 422, refused.text
    error = assert_error_shape(refused)
    assert error["code"] == "mcp_clients_unavailable"
    assert error["details"] == {"ids": [inactive["id"], unknown, "crm"]}
    assert created.status_code == 201, created.text
    assert created.json()["mcpServers"] == [active["id"]]  # one canonical id, once
    assert len(await events_of("project.created")) == 1


async def test_a_client_switched_off_after_attaching_may_stay_but_cannot_be_added_again(
    client: httpx.AsyncClient,
) -> None:
    admin = await signed_in(client, "super_admin")
    builder = await signed_in(client, "builder")
    first = await remote_client(client, admin, URL, name="First")
    second = await remote_client(client, admin, URL, name="Second")
    project = await create_project(builder, name="Bot", mcp_servers=[first["id"]])
    await client.put(
        f"/api/mcp-clients/{first['id']}/status", json={"isActive": False}, headers=admin.headers
    )
    path = f"/api/projects/{project}"

    # The form sends the whole list back: the switched-off client is already there, so it stays.
    kept = await client.put(path, json={"mcpServers": [first["id"], second["id"]]}, headers=builder.headers)
    dropped = await client.put(path, json={"mcpServers": [second["id"]]}, headers=builder.headers)
    readded = await client.put(
        path, json={"mcpServers": [second["id"], first["id"]]}, headers=builder.headers
    )

    assert kept.status_code == 200, kept.text
    assert kept.json()["mcpServers"] == [first["id"], second["id"]]
    assert dropped.json()["mcpServers"] == [second["id"]]
    assert readded.status_code == 422
    assert assert_error_shape(readded)["details"] == {"ids": [first["id"]]}
    current = await client.get(path, headers=builder.headers)
    assert current.json()["mcpServers"] == [second["id"]]


async def test_deleting_a_client_detaches_it_from_every_project_and_records_it(
    client: httpx.AsyncClient,
) -> None:
    admin = await signed_in(client, "super_admin")
    alice = await signed_in(client, "builder")
    bob = await signed_in(client, "builder")
    doomed = await remote_client(client, admin, "http://127.0.0.1:1/mcp", name="Doomed")
    kept = await remote_client(client, admin, URL, name="Kept")
    alices = await create_project(alice, name="A", mcp_servers=[doomed["id"], kept["id"]])
    bobs = await create_project(bob, name="B", mcp_servers=[doomed["id"]])
    untouched = await create_project(bob, name="C", mcp_servers=[kept["id"]])
    test = await client.post(f"/api/mcp-clients/{doomed['id']}/test-connection", headers=admin.headers)
    assert test.json()["status"] == "failed"  # its checks go with it

    deleted = await client.delete(f"/api/mcp-clients/{doomed['id']}", headers=admin.headers)

    assert deleted.status_code == 204, deleted.text
    gone = await client.get(f"/api/mcp-clients/{doomed['id']}", headers=admin.headers)
    assert gone.status_code == 404
    project_a = await client.get(f"/api/projects/{alices}", headers=alice.headers)
    project_b = await client.get(f"/api/projects/{bobs}", headers=bob.headers)
    project_c = await client.get(f"/api/projects/{untouched}", headers=bob.headers)
    assert project_a.json()["mcpServers"] == [kept["id"]]
    assert project_b.json()["mcpServers"] == []
    assert project_c.json()["mcpServers"] == [kept["id"]]
    [event] = await events_of("mcp_client.deleted")
    assert event["payload"] == {"name": "Doomed", "detachedProjects": sorted([str(alices), str(bobs)])}
    updates = await events_of("project.updated")
    assert sorted(e["subject_id"] for e in updates) == sorted([str(alices), str(bobs)])
    assert all(e["payload"] == {"fields": ["mcpServers"]} and e["actor_id"] == admin.id for e in updates)
