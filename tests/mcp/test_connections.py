"""Testing a connection and the health job, against real MCP servers over every transport."""

from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import text

from app.core.config import Settings
from app.core.db import sessionmaker
from app.core.runtime import runtime
from app.llm.types import ToolCall
from app.mcp.service import mcp_service
from app.mcp.toolset import open_toolset
from tests.factories import events_of, signed_in
from tests.fakes.mcp_servers import (
    HOSTILE_DESCRIPTION,
    STDIO_COMMAND,
    ErroringMcpServer,
    HangingHttpServer,
    McpHttpServer,
    stdio_args,
)
from tests.mcp.conftest import LOCAL, TOKEN
from tests.mcp.steps import remote_client, stdio_client

TOOLS = {"lookup_order", "slow", "fail", "big_output", "whoami"}


async def check_now(client: httpx.AsyncClient, admin_headers: dict[str, str], client_id: str) -> Any:
    response = await client.post(f"/api/mcp-clients/{client_id}/test-connection", headers=admin_headers)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("transport", ["streamable_http", "sse"])
async def test_a_remote_server_connects_lists_its_tools_and_the_check_is_kept(
    client: httpx.AsyncClient, streamable_server: McpHttpServer, sse_server: McpHttpServer, transport: str
) -> None:
    admin = await signed_in(client, "super_admin")
    server = streamable_server if transport == "streamable_http" else sse_server
    created = await remote_client(client, admin, server.url, connectionType=transport)

    check = await check_now(client, admin.headers, created["id"])

    assert check["status"] == "connected", check
    assert (check["clientId"], check["trigger"], check["transport"], check["error"]) == (
        created["id"],
        "test",
        transport,
        None,
    )
    assert {t["name"] for t in check["tools"]} == TOOLS
    assert check["metrics"]["toolCount"] == len(TOOLS)
    assert check["metrics"]["latencyMs"] >= 0
    assert check["lastConnected"] == check["checkedAt"]
    fetched = await client.get(f"/api/mcp-clients/{created['id']}", headers=admin.headers)
    assert fetched.json()["lastConnection"] == check
    [event] = await events_of("mcp_client.tested")
    assert event["payload"] == {
        "connectionId": check["id"],
        "status": "connected",
        "transport": transport,
        "latencyMs": check["metrics"]["latencyMs"],
        "toolCount": len(TOOLS),
        "error": None,
    }


async def test_http_tries_streamable_http_first_then_falls_back_to_sse(
    client: httpx.AsyncClient, streamable_server: McpHttpServer, sse_server: McpHttpServer
) -> None:
    admin = await signed_in(client, "super_admin")
    modern = await remote_client(client, admin, streamable_server.url, name="Modern", connectionType="http")
    legacy = await remote_client(client, admin, sse_server.url, name="Legacy", connectionType="http")
    sse_server.requests.clear()

    modern_check = await check_now(client, admin.headers, modern["id"])
    legacy_check = await check_now(client, admin.headers, legacy["id"])

    assert (modern_check["status"], modern_check["transport"]) == ("connected", "streamable_http")
    assert (legacy_check["status"], legacy_check["transport"]) == ("connected", "sse")
    # The SSE server was first asked in the streamable way (a POST to the URL), then over SSE.
    first = sse_server.requests[0]
    assert (first.method, first.path) == ("POST", "/sse")
    assert ("GET", "/sse") in [(r.method, r.path) for r in sse_server.requests]


async def test_a_failed_connection_is_a_200_with_the_error_and_keeps_the_last_success(
    client: httpx.AsyncClient, protected_server: McpHttpServer
) -> None:
    admin = await signed_in(client, "super_admin")
    created = await remote_client(
        client,
        admin,
        protected_server.url,
        headers={"Authorization": "Bearer {{TOKEN}}"},
        customVars={"TOKEN": TOKEN},
    )
    ok = await check_now(client, admin.headers, created["id"])
    assert ok["status"] == "connected", ok
    assert protected_server.requests[-1].headers["authorization"] == f"Bearer {TOKEN}"  # substituted
    await client.put(
        f"/api/mcp-clients/{created['id']}",
        json={"customVars": {"TOKEN": "wrong-token"}},
        headers=admin.headers,
    )

    failed = await check_now(client, admin.headers, created["id"])

    assert failed["status"] == "failed"
    assert failed["error"] == "HTTP 401 from the server"
    assert (failed["tools"], failed["transport"]) == ([], None)
    assert failed["lastConnected"] == ok["checkedAt"]
    assert failed["checkedAt"] > ok["checkedAt"]
    statuses = [e["payload"]["status"] for e in await events_of("mcp_client.tested")]
    assert statuses == ["connected", "failed"]
    assert TOKEN not in str(await events_of(""))


async def test_an_unreachable_server_fails_with_the_reason_of_each_transport(
    client: httpx.AsyncClient,
) -> None:
    admin = await signed_in(client, "super_admin")
    created = await remote_client(client, admin, "http://127.0.0.1:1/mcp", connectionType="http")

    check = await check_now(client, admin.headers, created["id"])

    assert check["status"] == "failed"
    assert check["error"].startswith("Streamable HTTP: Cannot reach the server")
    assert "; SSE: Cannot reach the server" in check["error"]
    assert check["lastConnected"] is None


@pytest.mark.parametrize("settings_changes", [{**LOCAL, "mcp_call_timeout_seconds": 1.0}])
async def test_a_server_that_never_answers_fails_with_a_timeout_instead_of_hanging(
    client: httpx.AsyncClient, hanging_server: HangingHttpServer
) -> None:
    admin = await signed_in(client, "super_admin")
    created = await remote_client(client, admin, hanging_server.url, connectionType="http")

    check = await check_now(client, admin.headers, created["id"])

    assert check["status"] == "failed"
    assert check["error"] == "Timed out: no answer within 1 s"


async def test_stdio_server_gets_its_substituted_args_and_variables_as_environment(
    client: httpx.AsyncClient,
) -> None:
    admin = await signed_in(client, "super_admin")
    created = await stdio_client(
        client,
        admin,
        args=stdio_args("{{SERVER_NAME}}", "--region={{FAKE_MCP_REGION}}"),
        customVars={"SERVER_NAME": "warehouse", "FAKE_MCP_REGION": "eu-west"},
    )

    check = await check_now(client, admin.headers, created["id"])

    assert (check["status"], check["transport"]) == ("connected", "stdio"), check
    assert {t["name"] for t in check["tools"]} == TOOLS
    async with sessionmaker()() as db, open_toolset(db, runtime().settings, [created["id"]]) as toolset:
        result = await toolset.call(ToolCall(id="1", name="local-orders__whoami", arguments={}))
    assert "name=warehouse" in result.content
    assert "'--region=eu-west'" in result.content
    assert "'FAKE_MCP_REGION': 'eu-west'" in result.content


async def test_a_stdio_command_removed_from_the_allow_list_is_not_run(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    admin = await signed_in(client, "super_admin")
    created = await stdio_client(client, admin)
    settings.mcp_stdio_allowed_commands = []  # the operator has tightened the list since

    check = await check_now(client, admin.headers, created["id"])

    assert check["status"] == "failed"
    assert check["error"] == f"The command {STDIO_COMMAND!r} is not on MCP_STDIO_ALLOWED_COMMANDS"


async def test_inactive_clients_can_be_tested_before_they_are_switched_on(
    client: httpx.AsyncClient, streamable_server: McpHttpServer
) -> None:
    admin = await signed_in(client, "super_admin")
    created = await remote_client(client, admin, streamable_server.url, isActive=False)

    check = await check_now(client, admin.headers, created["id"])

    assert check["status"] == "connected"


async def test_a_nul_character_in_a_tool_description_is_dropped_and_the_check_is_kept(
    client: httpx.AsyncClient,
) -> None:
    admin = await signed_in(client, "super_admin")
    created = await stdio_client(client, admin, name="Hostile", args=stdio_args("hostile"))

    check = await check_now(client, admin.headers, created["id"])

    assert check["status"] == "connected", check
    [odd] = [t for t in check["tools"] if t["name"] == "odd_text"]
    assert odd["description"] == HOSTILE_DESCRIPTION.replace("\x00", "")[:500]
    fetched = await client.get(f"/api/mcp-clients/{created['id']}", headers=admin.headers)
    assert fetched.json()["lastConnection"] == check
    [event] = await events_of("mcp_client.tested")
    assert event["payload"]["toolCount"] == len(TOOLS) + 1


async def test_a_nul_character_in_a_servers_error_is_dropped_and_the_failure_is_kept(
    client: httpx.AsyncClient,
) -> None:
    admin = await signed_in(client, "super_admin")
    with ErroringMcpServer("the\x00 database is gone") as server:
        created = await remote_client(client, admin, server.url)

        check = await check_now(client, admin.headers, created["id"])

    assert check["status"] == "failed"
    assert check["error"] == "MCP error -32603: the database is gone"
    [event] = await events_of("mcp_client.tested")
    assert event["payload"]["error"] == check["error"]


async def transactions_left_open() -> list[str]:
    """What the sessions of the test database that sit idle inside a transaction last ran."""
    async with sessionmaker()() as db:
        rows = await db.execute(
            text(
                "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
                "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
            )
        )
        return list(rows.scalars())


async def until_requested(server: HangingHttpServer) -> None:
    with anyio.fail_after(10):
        while not server.requests:
            await anyio.sleep(0.01)


async def test_testing_a_connection_holds_no_database_transaction_while_the_server_answers(
    client: httpx.AsyncClient,
) -> None:
    admin = await signed_in(client, "super_admin")
    checks: list[Any] = []
    with HangingHttpServer() as server:
        created = await remote_client(client, admin, server.url)

        async def test_it() -> None:
            checks.append(await check_now(client, admin.headers, created["id"]))

        async with anyio.create_task_group() as tg:
            tg.start_soon(test_it)
            await until_requested(server)
            held = await transactions_left_open()
            server.release()

    assert held == []
    [check] = checks
    assert (check["status"], check["error"]) == ("failed", "HTTP 503 from the server")


# --- the health job --------------------------------------------------------------------------


async def test_the_health_job_holds_no_database_transaction_while_servers_answer(
    client: httpx.AsyncClient,
) -> None:
    admin = await signed_in(client, "super_admin")
    with HangingHttpServer() as server:
        created = await remote_client(client, admin, server.url)

        async with anyio.create_task_group() as tg:
            tg.start_soon(mcp_service.check_health, runtime().settings)
            await until_requested(server)
            held = await transactions_left_open()
            server.release()

    assert held == []
    fetched = await client.get(f"/api/mcp-clients/{created['id']}", headers=admin.headers)
    assert fetched.json()["lastConnection"]["error"] == "HTTP 503 from the server"


async def test_a_check_the_database_refuses_does_not_stop_the_health_records_of_other_clients(
    client: httpx.AsyncClient, streamable_server: McpHttpServer
) -> None:
    admin = await signed_in(client, "super_admin")
    refused = await remote_client(client, admin, streamable_server.url, name="Refused")
    healthy = await remote_client(client, admin, streamable_server.url, name="Healthy")
    hostile = await stdio_client(client, admin, name="Hostile", args=stdio_args("hostile"))
    async with sessionmaker()() as db:
        # The database refuses this one client's checks (as a full disk or a constraint would).
        await db.execute(
            text(
                "CREATE FUNCTION test_refuse_check() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.client_id = '{refused['id']}' THEN RAISE EXCEPTION 'refused'; END IF; "
                "RETURN NEW; END $$"
            )
        )
        await db.execute(
            text(
                "CREATE TRIGGER test_refuse_check BEFORE INSERT ON mcp_connections "
                "FOR EACH ROW EXECUTE FUNCTION test_refuse_check()"
            )
        )
        await db.commit()
    try:
        checked = await mcp_service.check_health(runtime().settings)
    finally:
        async with sessionmaker()() as db:
            await db.execute(text("DROP TRIGGER test_refuse_check ON mcp_connections"))
            await db.execute(text("DROP FUNCTION test_refuse_check()"))
            await db.commit()

    assert checked == 3
    last = {}
    for created in (refused, healthy, hostile):
        fetched = await client.get(f"/api/mcp-clients/{created['id']}", headers=admin.headers)
        last[created["name"]] = fetched.json()["lastConnection"]
    assert last["Refused"] is None
    assert (last["Healthy"]["status"], last["Healthy"]["trigger"]) == ("connected", "health")
    assert last["Hostile"]["status"] == "connected"  # its NUL-bearing description was cleaned
    assert last["Hostile"]["metrics"]["toolCount"] == len(TOOLS) + 1


async def test_the_health_job_checks_active_clients_and_reports_a_failure_once(
    client: httpx.AsyncClient,
) -> None:
    admin = await signed_in(client, "super_admin")
    server = McpHttpServer("streamable_http", name="flaky").start()
    try:
        flaky = await remote_client(client, admin, server.url, name="Flaky")
        off = await remote_client(client, admin, server.url, name="Switched off", isActive=False)
        settings = runtime().settings

        assert await mcp_service.check_health(settings) == 1  # the inactive one is not checked
        fetched = await client.get(f"/api/mcp-clients/{flaky['id']}", headers=admin.headers)
        healthy = fetched.json()["lastConnection"]
        assert (healthy["status"], healthy["trigger"], healthy["metrics"]["toolCount"]) == (
            "connected",
            "health",
            5,
        )
        assert await events_of("mcp_client.health_failed") == []
    finally:
        server.stop()

    await mcp_service.check_health(settings)  # it went down: reported
    await mcp_service.check_health(settings)  # still down: not reported again

    [event] = await events_of("mcp_client.health_failed")
    assert event["subject_id"] == flaky["id"]
    assert event["actor_id"] is None
    payload = event["payload"]
    assert (payload["name"], payload["status"], payload["toolCount"]) == ("Flaky", "failed", 0)
    assert payload["error"].startswith("Cannot reach the server")
    fetched = await client.get(f"/api/mcp-clients/{flaky['id']}", headers=admin.headers)
    last = fetched.json()["lastConnection"]
    assert (last["status"], last["trigger"]) == ("failed", "health")
    assert last["id"] != payload["connectionId"], "the second failure is the newest check"
    assert last["lastConnected"] == healthy["checkedAt"]
    never = await client.get(f"/api/mcp-clients/{off['id']}", headers=admin.headers)
    assert never.json()["lastConnection"] is None


async def test_a_client_that_never_worked_is_not_reported_as_having_failed(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    await remote_client(client, admin, "http://127.0.0.1:1/mcp")

    await mcp_service.check_health(runtime().settings)

    assert await events_of("mcp_client.health_failed") == []


async def test_the_health_check_is_a_periodic_job_on_the_configured_schedule() -> None:
    from app.mcp.tasks import check_active_clients
    from app.worker.queue import TASK_MODULES, queue

    assert "app.mcp.tasks" in TASK_MODULES
    assert check_active_clients.name in queue.tasks
    [periodic] = [
        p for p in queue.periodic_registry.periodic_tasks.values() if p.task.name == check_active_clients.name
    ]
    assert periodic.cron == "*/5 * * * *"


async def test_the_health_job_checks_the_clients_concurrently(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    admin = await signed_in(client, "super_admin")
    # It answers only once three requests wait together: checked one after the other, each
    # would time out instead.
    with HangingHttpServer(release_after=3) as server:
        for n in range(3):
            await remote_client(client, admin, server.url, name=f"Slow {n}")
        settings.mcp_call_timeout_seconds = 10

        assert await mcp_service.check_health(settings) == 3

    response = await client.get("/api/mcp-clients", headers=admin.headers)
    errors = [c["lastConnection"]["error"] for c in response.json()["items"]]
    assert errors == ["HTTP 503 from the server"] * 3
