"""Super admins configure MCP clients; builders read them with every secret masked."""

import json
from uuid import uuid4

import httpx
import pytest
from sqlalchemy import text

from app.core.config import Settings
from app.core.crypto import secret_box
from app.core.db import sessionmaker
from app.core.runtime import runtime
from tests.factories import events_of, signed_in
from tests.fakes.mcp_servers import STDIO_COMMAND, stdio_args
from tests.matrix import assert_error_shape
from tests.mcp.steps import create_client, remote_client, stdio_client

SECRET_TOKEN = "sk-live-9d8c7b6a5f4e3d2c"
SECRET_VAR = "tenant-secret-71f3e0"


def secret_free(payload: object) -> bool:
    dumped = json.dumps(payload, default=str)
    return SECRET_TOKEN not in dumped and SECRET_VAR not in dumped


async def test_admin_creates_a_remote_client_and_secrets_come_back_masked(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    body = {
        "name": "Orders API",
        "description": "Orders and shipments",
        "connectionType": "http",
        "connectionString": "https://93.184.216.34/mcp?tenant={{TENANT}}",
        "headers": {"Authorization": f"Bearer {SECRET_TOKEN}", "X-Tenant": "{{TENANT}}"},
        "customVars": {"TENANT": SECRET_VAR},
    }

    created = await create_client(client, admin, **body)

    assert set(created) == {
        "id",
        "name",
        "description",
        "connectionString",
        "connectionType",
        "command",
        "args",
        "headers",
        "customVars",
        "isActive",
        "createdAt",
        "updatedAt",
        "lastConnection",
    }
    assert created["headers"] == {"Authorization": "****", "X-Tenant": "****"}
    assert created["customVars"] == {"TENANT": "****"}
    assert created["connectionString"] == body["connectionString"]  # the placeholder, not the value
    assert (created["isActive"], created["command"], created["args"], created["lastConnection"]) == (
        True,
        None,
        [],
        None,
    )
    builder = await signed_in(client, "builder")
    for reader in (admin, builder):
        fetched = await client.get(f"/api/mcp-clients/{created['id']}", headers=reader.headers)
        assert fetched.json() == created
        listed = await client.get("/api/mcp-clients", headers=reader.headers)
        assert listed.json()["items"] == [created]
    [event] = await events_of("mcp_client.created")
    assert event["payload"] == {"name": "Orders API", "connectionType": "http", "isActive": True}
    assert (event["subject_id"], event["actor_id"]) == (created["id"], admin.id)
    assert secret_free([e["payload"] for e in await events_of("")])


async def test_headers_and_variables_are_encrypted_at_rest(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    created = await remote_client(
        client,
        admin,
        "https://93.184.216.34/mcp",
        headers={"Authorization": f"Bearer {SECRET_TOKEN}"},
        customVars={"TENANT": SECRET_VAR},
    )

    async with sessionmaker()() as db:
        row = (
            await db.execute(
                text("SELECT headers_encrypted, custom_vars_encrypted FROM mcp_clients WHERE id = :id"),
                {"id": created["id"]},
            )
        ).one()
        everything = (await db.execute(text("SELECT row_to_json(c)::text FROM mcp_clients c"))).scalar_one()

    assert row.headers_encrypted
    assert row.custom_vars_encrypted
    assert SECRET_TOKEN not in everything
    assert SECRET_VAR not in everything
    assert "Authorization" not in everything  # even the names are inside the ciphertext


async def test_an_admin_creates_a_stdio_client_with_an_allowed_command(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")

    created = await stdio_client(client, admin, customVars={"FAKE_MCP_REGION": "eu"})

    assert (created["connectionType"], created["command"]) == ("stdio", STDIO_COMMAND)
    assert created["args"] == stdio_args("orders")
    assert (created["connectionString"], created["headers"]) == (None, {})
    assert created["customVars"] == {"FAKE_MCP_REGION": "****"}


async def test_a_stdio_command_off_the_allow_list_is_refused_and_nothing_is_saved(
    client: httpx.AsyncClient,
) -> None:
    admin = await signed_in(client, "super_admin")

    for command in ("/bin/sh", "python3", f"{STDIO_COMMAND}/../python"):
        response = await client.post(
            "/api/mcp-clients",
            json={"name": "Shell", "connectionType": "stdio", "command": command, "args": ["-c", "id"]},
            headers=admin.headers,
        )
        assert response.status_code == 422, response.text
        error = assert_error_shape(response)
        assert error["code"] == "mcp_command_not_allowed"
        assert error["details"]["command"] == command

    listed = await client.get("/api/mcp-clients", headers=admin.headers)
    assert listed.json()["pagination"]["total"] == 0
    assert await events_of("mcp_client") == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"connectionType": "stdio"}, "mcp_command_required"),
        ({"connectionType": "sse"}, "mcp_url_required"),
        ({"connectionType": "http", "connectionString": ""}, "mcp_url_required"),
        ({"connectionType": "http", "connectionString": "ftp://93.184.216.34/mcp"}, "mcp_url_not_allowed"),
        ({"connectionType": "http", "connectionString": "http://exa mple.com/"}, "validation_error"),
        (
            {"connectionType": "http", "connectionString": "https://user:pw@93.184.216.34/mcp"},
            "mcp_url_not_allowed",
        ),
        (
            {"connectionType": "http", "connectionString": "https://93.184.216.34/{{MISSING}}"},
            "mcp_unknown_variables",
        ),
        (
            {
                "connectionType": "http",
                "connectionString": "https://93.184.216.34/mcp",
                "headers": {"Authorization": "Bearer {{TOKEN}}"},
            },
            "mcp_unknown_variables",
        ),
        (
            {
                "connectionType": "http",
                "connectionString": "https://93.184.216.34/mcp",
                "headers": {"Host": "x"},
            },
            "mcp_reserved_header",
        ),
        (
            {"connectionType": "http", "connectionString": "https://93.184.216.34/mcp", "command": "npx"},
            "mcp_field_not_applicable",
        ),
        (
            {"connectionType": "stdio", "command": STDIO_COMMAND, "headers": {"X-Key": "v"}},
            "mcp_field_not_applicable",
        ),
        (
            {"connectionType": "stdio", "command": STDIO_COMMAND, "args": ["{{NOPE}}"]},
            "mcp_unknown_variables",
        ),
        (
            {
                "connectionType": "http",
                "connectionString": "https://93.184.216.34/mcp",
                "headers": {"X-Key": "****"},
            },
            "mcp_masked_value",
        ),
        ({"connectionType": "websocket", "connectionString": "wss://93.184.216.34"}, "validation_error"),
        (
            {
                "connectionType": "http",
                "connectionString": "https://93.184.216.34/mcp",
                "headers": {"X-Key": "line\r\nInjected: yes"},
            },
            "validation_error",
        ),
        (
            {
                "connectionType": "http",
                "connectionString": "https://93.184.216.34/mcp",
                "customVars": {"1BAD": "x"},
            },
            "validation_error",
        ),
        (
            {"connectionType": "http", "connectionString": "https://93.184.216.34/mcp", "surprise": 1},
            "validation_error",
        ),
    ],
)
async def test_invalid_configurations_are_refused_with_a_clear_422(
    client: httpx.AsyncClient, body: dict[str, object], code: str
) -> None:
    admin = await signed_in(client, "super_admin")

    response = await client.post("/api/mcp-clients", json={"name": "Broken", **body}, headers=admin.headers)

    assert response.status_code == 422, response.text
    assert assert_error_shape(response)["code"] == code
    assert await events_of("mcp_client") == []


async def test_names_are_unique_regardless_of_case(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    first = await remote_client(client, admin, "https://93.184.216.34/mcp", name="Orders API")
    other = await remote_client(client, admin, "https://93.184.216.34/mcp", name="Billing")

    again = await client.post(
        "/api/mcp-clients",
        json={"name": "orders api", "connectionType": "sse", "connectionString": "https://93.184.216.34/sse"},
        headers=admin.headers,
    )
    renamed = await client.put(
        f"/api/mcp-clients/{other['id']}", json={"name": "ORDERS API"}, headers=admin.headers
    )
    same = await client.put(
        f"/api/mcp-clients/{first['id']}", json={"name": "Orders API"}, headers=admin.headers
    )

    assert again.status_code == renamed.status_code == 409
    assert assert_error_shape(again)["code"] == "mcp_client_name_taken"
    assert same.status_code == 200
    assert [e["type"] for e in await events_of("mcp_client")] == ["mcp_client.created"] * 2


async def test_update_replaces_secrets_and_masked_values_keep_the_stored_ones(
    client: httpx.AsyncClient,
) -> None:
    admin = await signed_in(client, "super_admin")
    created = await remote_client(
        client,
        admin,
        "https://93.184.216.34/mcp",
        headers={"Authorization": f"Bearer {SECRET_TOKEN}", "X-Old": "gone"},
        customVars={"TENANT": SECRET_VAR},
    )
    path = f"/api/mcp-clients/{created['id']}"

    # The admin form sends back what it read: masked values, one header removed, one added.
    response = await client.put(
        path,
        json={"description": "Now described", "headers": {"Authorization": "****", "X-New": "fresh"}},
        headers=admin.headers,
    )

    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["headers"] == {"Authorization": "****", "X-New": "****"}
    assert updated["customVars"] == {"TENANT": "****"}  # not sent: kept
    assert updated["description"] == "Now described"
    _created_event, updated_event = await events_of("mcp_client")
    assert updated_event["payload"] == {"fields": ["description", "headers"]}
    async with sessionmaker()() as db:
        token = (
            await db.execute(
                text("SELECT headers_encrypted FROM mcp_clients WHERE id = :id"), {"id": created["id"]}
            )
        ).scalar_one()
    assert secret_box(runtime().settings).decrypt_json(token) == {
        "Authorization": f"Bearer {SECRET_TOKEN}",
        "X-New": "fresh",
    }

    unchanged = await client.put(
        path, json={"headers": {"Authorization": "****", "X-New": "****"}}, headers=admin.headers
    )
    assert unchanged.status_code == 200
    assert len(await events_of("mcp_client.updated")) == 1, "nothing changed, nothing recorded"


async def test_switching_the_transport_drops_the_fields_the_new_one_does_not_use(
    client: httpx.AsyncClient,
) -> None:
    admin = await signed_in(client, "super_admin")
    created = await remote_client(
        client, admin, "https://93.184.216.34/mcp", headers={"Authorization": "Bearer x-123456"}
    )

    response = await client.put(
        f"/api/mcp-clients/{created['id']}",
        json={"connectionType": "stdio", "command": STDIO_COMMAND, "args": stdio_args()},
        headers=admin.headers,
    )

    assert response.status_code == 200, response.text
    switched = response.json()
    assert (switched["connectionType"], switched["connectionString"], switched["headers"]) == (
        "stdio",
        None,
        {},
    )
    assert switched["command"] == STDIO_COMMAND
    [event] = await events_of("mcp_client.updated")
    assert event["payload"]["fields"] == ["args", "command", "connectionString", "connectionType", "headers"]


async def test_the_active_list_is_not_captured_by_the_id_route_and_holds_only_active_clients(
    client: httpx.AsyncClient,
) -> None:
    admin = await signed_in(client, "super_admin")
    builder = await signed_in(client, "builder")
    on = await remote_client(client, admin, "https://93.184.216.34/mcp", name="Alpha")
    off = await remote_client(client, admin, "https://93.184.216.34/mcp", name="Beta", isActive=False)

    active = await client.get("/api/mcp-clients/active", headers=builder.headers)
    everything = await client.get("/api/mcp-clients", headers=builder.headers)
    inactive = await client.get("/api/mcp-clients", params={"isActive": "false"}, headers=builder.headers)

    assert active.status_code == 200, active.text
    assert [c["id"] for c in active.json()["items"]] == [on["id"]]
    assert active.json()["pagination"] == {"total": 1, "page": 1, "limit": 20}
    assert [c["id"] for c in everything.json()["items"]] == [on["id"], off["id"]]
    assert [c["id"] for c in inactive.json()["items"]] == [off["id"]]


async def test_list_paginates_sorts_filters_and_searches(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    for name, kind in [("Gamma", "sse"), ("Alpha", "http"), ("Beta", "streamable_http")]:
        await create_client(
            client, admin, name=name, connectionType=kind, connectionString="https://93.184.216.34/mcp"
        )
    await stdio_client(client, admin, name="Delta tools", description="reads files")

    async def names(**params: object) -> list[str]:
        response = await client.get("/api/mcp-clients", params=params, headers=admin.headers)
        assert response.status_code == 200, response.text
        return [c["name"] for c in response.json()["items"]]

    assert await names() == ["Alpha", "Beta", "Delta tools", "Gamma"]
    assert await names(sort="-name", limit=2, page=2) == ["Beta", "Alpha"]
    assert await names(connectionType="stdio") == ["Delta tools"]
    assert await names(q="FILES") == ["Delta tools"]
    assert await names(q="%") == []
    bad = await client.get("/api/mcp-clients", params={"sort": "secret"}, headers=admin.headers)
    assert bad.status_code == 422
    assert assert_error_shape(bad)["code"] == "invalid_sort"


async def test_status_switches_clients_on_and_off_and_records_only_real_changes(
    client: httpx.AsyncClient,
) -> None:
    admin = await signed_in(client, "super_admin")
    created = await remote_client(client, admin, "https://93.184.216.34/mcp")
    path = f"/api/mcp-clients/{created['id']}/status"

    off = await client.put(path, json={"isActive": False}, headers=admin.headers)
    again = await client.put(path, json={"isActive": False}, headers=admin.headers)
    on = await client.put(f"/api/mcp-clients/{created['id']}", json={"isActive": True}, headers=admin.headers)
    bad = await client.put(path, json={"isActive": "maybe"}, headers=admin.headers)

    assert (off.status_code, again.status_code, on.status_code) == (200, 200, 200)
    assert (off.json()["isActive"], on.json()["isActive"]) == (False, True)
    assert bad.status_code == 422
    changes = [e["payload"] for e in await events_of("mcp_client.status_changed")]
    assert changes == [{"from": "active", "to": "inactive"}, {"from": "inactive", "to": "active"}]


async def test_unknown_clients_are_404_for_every_route(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    missing = f"/api/mcp-clients/{uuid4()}"

    for method, path, body in [
        ("GET", missing, None),
        ("PUT", missing, {"name": "x"}),
        ("DELETE", missing, None),
        ("POST", f"{missing}/test-connection", None),
        ("PUT", f"{missing}/status", {"isActive": False}),
    ]:
        response = await client.request(method, path, json=body, headers=admin.headers)
        assert response.status_code == 404, (method, path, response.text)
        assert assert_error_shape(response)["code"] == "mcp_client_not_found"
    not_an_id = await client.get("/api/mcp-clients/not-a-uuid", headers=admin.headers)
    assert not_an_id.status_code == 422


async def test_renaming_does_not_recheck_a_connection_the_operator_has_since_restricted(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    admin = await signed_in(client, "super_admin")
    created = await stdio_client(client, admin)
    settings.mcp_stdio_allowed_commands = []
    path = f"/api/mcp-clients/{created['id']}"

    renamed = await client.put(path, json={"name": "Renamed"}, headers=admin.headers)
    new_args = await client.put(path, json={"args": ["--help"]}, headers=admin.headers)

    assert renamed.status_code == 200, renamed.text
    assert new_args.status_code == 422
    assert assert_error_shape(new_args)["code"] == "mcp_command_not_allowed"
