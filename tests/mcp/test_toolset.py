"""What the chat engine gets from ``open_toolset``: the tools of a project's active MCP clients,
named for the LLM, and calls that always come back as results."""

import os
import re
from typing import Any

import httpx
import pytest

from app.core.config import Settings
from app.core.db import sessionmaker
from app.llm.types import ToolCall
from app.mcp.toolset import MAX_NAME, cap, open_toolset, slug, tool_name
from tests.factories import signed_in
from tests.fakes.mcp_servers import HangingHttpServer, McpHttpServer
from tests.mcp.conftest import LOCAL, TOKEN
from tests.mcp.steps import remote_client, stdio_client

FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
A_1001 = "Order A-1001: shipped, 2 items, total 42.00 EUR"


def call(name: str, **arguments: Any) -> ToolCall:
    return ToolCall(id=f"call-{name}", name=name, arguments=arguments)


async def test_tools_of_two_clients_are_listed_with_unique_valid_names_and_both_answer(
    client: httpx.AsyncClient, settings: Settings, protected_server: McpHttpServer
) -> None:
    admin = await signed_in(client, "super_admin")
    remote = await remote_client(
        client,
        admin,
        protected_server.url,
        name="Orders API (EU)",
        headers={"Authorization": "Bearer {{TOKEN}}"},
        customVars={"TOKEN": TOKEN},
    )
    local = await stdio_client(client, admin, name="Local orders")

    async with sessionmaker()() as db, open_toolset(db, settings, [remote["id"], local["id"]]) as toolset:
        names = [tool.name for tool in toolset.tools]
        remote_answer = await toolset.call(call("orders-api-eu__lookup_order", order_id="A-1001"))
        local_answer = await toolset.call(call("local-orders__lookup_order", order_id="A-1002"))

    assert len(names) == len(set(names)) == 10
    assert all(FUNCTION_NAME.match(name) for name in names)
    assert {n for n in names if n.startswith("orders-api-eu__")} == {
        f"orders-api-eu__{t}" for t in ("lookup_order", "slow", "fail", "big_output", "whoami")
    }
    lookup = next(t for t in toolset.tools if t.name == "local-orders__lookup_order")
    assert lookup.description == "[Local orders] Look up an order by its id (e.g. A-1001)."
    assert lookup.parameters["type"] == "object"
    assert lookup.parameters["required"] == ["order_id"]
    assert (remote_answer.content, remote_answer.is_error) == (A_1001, False)
    assert (local_answer.call_id, local_answer.name) == (
        "call-local-orders__lookup_order",
        "local-orders__lookup_order",
    )
    assert local_answer.content == "Order A-1002: processing, 1 items, total 9.90 EUR"
    assert local_answer.latency_ms > 0


async def test_tool_errors_and_unknown_tools_come_back_as_error_results(
    client: httpx.AsyncClient, settings: Settings, streamable_server: McpHttpServer
) -> None:
    admin = await signed_in(client, "super_admin")
    orders = await remote_client(client, admin, streamable_server.url, name="Orders")

    async with sessionmaker()() as db, open_toolset(db, settings, [orders["id"]]) as toolset:
        failed = await toolset.call(call("orders__fail"))
        unknown = await toolset.call(call("orders__drop_tables"))
        bad_arguments = await toolset.call(call("orders__lookup_order", wrong=1))
        after = await toolset.call(call("orders__lookup_order", order_id="A-1001"))

    assert failed.is_error
    assert "the warehouse is on fire" in failed.content
    assert (unknown.is_error, unknown.content) == (True, "Unknown tool: orders__drop_tables")
    assert bad_arguments.is_error
    assert (after.is_error, after.content) == (False, A_1001), "one failure does not spoil the session"


@pytest.mark.parametrize("settings_changes", [{**LOCAL, "mcp_call_timeout_seconds": 1.0}])
async def test_a_slow_tool_times_out_as_an_error_result(
    client: httpx.AsyncClient, settings: Settings, streamable_server: McpHttpServer
) -> None:
    admin = await signed_in(client, "super_admin")
    orders = await remote_client(client, admin, streamable_server.url, name="Orders")

    async with sessionmaker()() as db, open_toolset(db, settings, [orders["id"]]) as toolset:
        slow = await toolset.call(call("orders__slow", seconds=30))
        quick = await toolset.call(call("orders__slow", seconds=0))

    assert (slow.is_error, slow.content) == (True, "The tool did not answer within 1 s")
    assert (quick.is_error, quick.content) == (False, "done after 0.0s")


@pytest.mark.parametrize("settings_changes", [{**LOCAL, "mcp_result_max_chars": 500}])
async def test_long_results_are_cut_to_the_limit_and_say_so(
    client: httpx.AsyncClient, settings: Settings, streamable_server: McpHttpServer
) -> None:
    admin = await signed_in(client, "super_admin")
    orders = await remote_client(client, admin, streamable_server.url, name="Orders")

    async with sessionmaker()() as db, open_toolset(db, settings, [orders["id"]]) as toolset:
        big = await toolset.call(call("orders__big_output", n=20_000))
        fits = await toolset.call(call("orders__big_output", n=500))

    assert len(big.content) == 500  # as much as fits
    shown, note = big.content.rsplit("\n", 1)
    assert note == f"[cut: the tool returned 20000 characters; the first {len(shown)} are shown]"
    assert shown == ("abcdefghij" * 2000)[: len(shown)]
    assert not big.is_error
    assert fits.content == "abcdefghij" * 50


@pytest.mark.parametrize("settings_changes", [{**LOCAL, "mcp_call_timeout_seconds": 1.5}])
async def test_inactive_unknown_and_unreachable_clients_are_skipped(
    client: httpx.AsyncClient,
    settings: Settings,
    streamable_server: McpHttpServer,
    hanging_server: HangingHttpServer,
) -> None:
    admin = await signed_in(client, "super_admin")
    working = await remote_client(client, admin, streamable_server.url, name="Working")
    off = await remote_client(client, admin, streamable_server.url, name="Off", isActive=False)
    down = await remote_client(client, admin, "http://127.0.0.1:1/mcp", name="Down")
    hangs = await remote_client(client, admin, hanging_server.url, name="Hangs")
    ids = [
        off["id"],
        down["id"],
        "not-an-id",
        "5b7e1c4a-0000-4000-8000-000000000000",
        hangs["id"],
        working["id"],
    ]

    async with sessionmaker()() as db, open_toolset(db, settings, ids) as toolset:
        prefixes = {tool.name.split("__")[0] for tool in toolset.tools}
        answer = await toolset.call(call("working__lookup_order", order_id="A-1001"))

    assert prefixes == {"working"}
    assert answer.content == A_1001


async def test_no_clients_give_no_tools(settings: Settings, app: Any) -> None:
    async with sessionmaker()() as db, open_toolset(db, settings, []) as toolset:
        assert toolset.tools == []
        assert (await toolset.call(call("anything"))).is_error


async def test_clients_whose_names_make_the_same_slug_get_distinct_tool_names(
    client: httpx.AsyncClient, settings: Settings, streamable_server: McpHttpServer, sse_server: McpHttpServer
) -> None:
    admin = await signed_in(client, "super_admin")
    first = await remote_client(client, admin, streamable_server.url, name="Orders API")
    second = await remote_client(client, admin, sse_server.url, name="orders/api", connectionType="sse")

    async with sessionmaker()() as db, open_toolset(db, settings, [first["id"], second["id"]]) as toolset:
        names = [tool.name for tool in toolset.tools]
        via_second = await toolset.call(call("orders-api-2__whoami"))

    assert len(names) == len(set(names)) == 10
    assert "orders-api__whoami" in names
    assert via_second.content.startswith("name=legacy ")  # the SSE server's own name


async def test_sessions_are_closed_when_the_toolset_is_left(
    client: httpx.AsyncClient, settings: Settings, streamable_server: McpHttpServer
) -> None:
    admin = await signed_in(client, "super_admin")
    local = await stdio_client(client, admin, name="Local")
    remote = await remote_client(client, admin, streamable_server.url, name="Remote")

    async with sessionmaker()() as db, open_toolset(db, settings, [local["id"], remote["id"]]) as toolset:
        whoami = await toolset.call(call("local__whoami"))
        pid = int(re.search(r"pid=(\d+)", whoami.content).group(1))  # type: ignore[union-attr]
        os.kill(pid, 0)  # the stdio server runs

    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    for name in ("local__whoami", "remote__whoami"):
        late = await toolset.call(call(name))
        assert late.is_error, late


def test_tool_names_stay_valid_and_unique_for_long_and_odd_names() -> None:
    taken: set[str] = set()
    long_tool = "x" * 100
    names = [tool_name(slug("Ünïcode Tools!!"), "get.weather/now", taken)]
    taken.add(names[0])
    for _ in range(3):
        names.append(tool_name(slug("A" * 80), long_tool, taken))
        taken.add(names[-1])

    assert names[0] == "unicode-tools__get_weather_now"
    assert all(FUNCTION_NAME.match(n) and len(n) <= MAX_NAME for n in names)
    assert len(set(names)) == len(names)
    assert slug("***") == "mcp"


def test_cap_leaves_short_text_alone_and_never_exceeds_the_limit() -> None:
    assert cap("short", 100) == "short"
    for limit in (100, 101, 999):
        assert len(cap("y" * 5000, limit)) <= limit
