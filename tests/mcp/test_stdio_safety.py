"""A stdio client runs one allow-listed program: its custom variables (the program's environment)
cannot make another program run or the allowed one load other code, and the program is looked up
on Bazaar's own PATH."""

import os
import shutil
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from app.core.config import Settings
from app.core.crypto import secret_box
from app.core.db import sessionmaker
from app.core.runtime import runtime
from app.llm.types import ToolCall
from app.mcp.connect import ConnectFailed, resolve_command
from app.mcp.toolset import open_toolset
from tests.factories import events_of, signed_in
from tests.fakes.mcp_servers import STDIO_COMMAND, stdio_args
from tests.matrix import assert_error_shape
from tests.mcp.steps import remote_client, stdio_client


async def check_now(client: httpx.AsyncClient, headers: dict[str, str], client_id: str) -> dict[str, object]:
    response = await client.post(f"/api/mcp-clients/{client_id}/test-connection", headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.mark.parametrize(
    "name",
    [
        "PATH",  # another program found under the allowed name
        "LD_PRELOAD",  # a library loaded into any program
        "DYLD_INSERT_LIBRARIES",
        "NODE_OPTIONS",  # --require /tmp/e.js into npx
        "PYTHONSTARTUP",
        "PERL5OPT",
        "RUBYOPT",
        "BASH_ENV",  # sourced by every non-interactive bash
        "HOME",  # dotfiles: .npmrc, Python's user site-packages
        "NPM_CONFIG_SCRIPT_SHELL",
        "GIT_SSH_COMMAND",
        "path",  # not an environment name we pass on: only A-Z, 0-9 and _
        "_JAVA_OPTIONS",
    ],
)
async def test_a_stdio_client_cannot_set_an_environment_variable_that_runs_other_code(
    client: httpx.AsyncClient, name: str
) -> None:
    admin = await signed_in(client, "super_admin")

    response = await client.post(
        "/api/mcp-clients",
        json={
            "name": "Local orders",
            "connectionType": "stdio",
            "command": STDIO_COMMAND,
            "args": stdio_args(),
            "customVars": {name: "/tmp/x", "FAKE_MCP_REGION": "eu"},
        },
        headers=admin.headers,
    )

    assert response.status_code == 422, response.text
    error = assert_error_shape(response)
    assert (error["code"], error["details"]) == ("mcp_reserved_variable", {"names": [name]})
    listed = await client.get("/api/mcp-clients", headers=admin.headers)
    assert listed.json()["pagination"]["total"] == 0
    assert await events_of("mcp_client") == []


async def test_reserved_variables_cannot_be_added_later_or_brought_along_to_stdio(
    client: httpx.AsyncClient,
) -> None:
    admin = await signed_in(client, "super_admin")
    local = await stdio_client(client, admin, customVars={"FAKE_MCP_REGION": "eu"})
    # For a remote client variables only fill in the URL and headers: any name will do.
    remote = await remote_client(
        client, admin, "https://93.184.216.34/{{PATH}}", name="Remote", customVars={"PATH": "mcp"}
    )

    added = await client.put(
        f"/api/mcp-clients/{local['id']}",
        json={"customVars": {"FAKE_MCP_REGION": "****", "LD_PRELOAD": "/tmp/evil.so"}},
        headers=admin.headers,
    )
    switched = await client.put(
        f"/api/mcp-clients/{remote['id']}",
        json={"connectionType": "stdio", "command": STDIO_COMMAND, "args": stdio_args()},
        headers=admin.headers,
    )

    assert added.status_code == 422, added.text
    assert assert_error_shape(added)["details"] == {"names": ["LD_PRELOAD"]}
    assert switched.status_code == 422, switched.text
    assert assert_error_shape(switched)["details"] == {"names": ["PATH"]}
    for before in (local, remote):
        after = await client.get(f"/api/mcp-clients/{before['id']}", headers=admin.headers)
        assert after.json() == before
    assert await events_of("mcp_client.updated") == []


async def test_a_reserved_variable_saved_before_the_rule_existed_is_not_passed_to_the_program(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    admin = await signed_in(client, "super_admin")
    created = await stdio_client(client, admin)
    async with sessionmaker()() as db:
        await db.execute(
            text("UPDATE mcp_clients SET custom_vars_encrypted = :vars WHERE id = :id"),
            {"vars": secret_box(settings).encrypt_json({"PATH": "/tmp/x"}), "id": created["id"]},
        )
        await db.commit()

    check = await check_now(client, admin.headers, created["id"])

    assert check["status"] == "failed"
    assert check["error"] == "Custom variables not allowed in a stdio environment: PATH"


async def test_an_allow_listed_name_is_launched_as_the_program_found_on_bazaars_path(
    client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, name = os.path.split(STDIO_COMMAND)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
    settings.mcp_stdio_allowed_commands = [name]
    admin = await signed_in(client, "super_admin")
    created = await stdio_client(client, admin, command=name)

    check = await check_now(client, admin.headers, created["id"])
    async with sessionmaker()() as db, open_toolset(db, runtime().settings, [created["id"]]) as toolset:
        whoami = await toolset.call(ToolCall(id="1", name="local-orders__whoami", arguments={}))

    assert (check["status"], check["transport"]) == ("connected", "stdio"), check
    # Started by its absolute path: the server process's own PATH never decides what runs.
    assert f"launched={shutil.which(name)} " in whoami.content
    assert os.path.isabs(str(shutil.which(name)))


def test_resolving_a_command_needs_the_allow_list_and_an_installed_program(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    program = tmp_path / "orders-mcp"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))

    assert resolve_command("orders-mcp", ["orders-mcp"]) == str(program)
    assert resolve_command(str(program), [str(program)]) == str(program)
    with pytest.raises(ConnectFailed, match="not on MCP_STDIO_ALLOWED_COMMANDS"):
        resolve_command("orders-mcp", [str(program)])  # the entry is a path: the bare name is not it
    with pytest.raises(ConnectFailed, match="not installed"):
        resolve_command("npx", ["npx"])
