"""Connecting to an MCP server with the ``mcp`` SDK, over stdio, SSE or streamable HTTP.

``ConnectionSpec`` is a client's configuration ready to use: secrets decrypted and ``{{NAME}}``
variables substituted. ``connect`` enters the SDK's context managers on the caller's
``AsyncExitStack`` (so they are entered and exited in one task, as anyio requires) and
``check_connection`` runs one bounded check: connect, initialise, list the tools.
"""

import os
import re
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any
from uuid import UUID

import anyio
import httpx2
from mcp import Client, Implementation, MCPError, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from app.core.config import Settings
from app.core.crypto import MASK
from app.mcp.ssrf import GuardedNetworkBackend, UnsafeUrl, parse_remote_url

VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
MAX_ERROR_CHARS = 1000
MAX_TOOLS = 500
MAX_TOOL_NAME_CHARS = 200
MAX_TOOL_DESCRIPTION_CHARS = 500
# An SSE stream may stay quiet between server messages; each request has its own deadline.
SSE_READ_TIMEOUT_SECONDS = 300.0
CLIENT_INFO = Implementation(name="bazaar", version=version("bazaar"))


# For stdio the custom variables become the server process's environment. Names that decide which
# program runs or what it loads before its own code (the dynamic linker, interpreters' startup
# hooks and search paths, shells, dotfiles under HOME, npm and git settings) would turn one
# allow-listed command into any program, so only plain upper-case names outside these are taken.
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
RESERVED_ENV_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "SHELL",
        "ENV",
        "BASH_ENV",
        "IFS",
        "CDPATH",
        "PS4",
        "PROMPT_COMMAND",
        "SHELLOPTS",
        "BASHOPTS",
        "GLOBIGNORE",
        "GCONV_PATH",
        "LOCPATH",
        "NLSPATH",
        "HOSTALIASES",
        "CLASSPATH",
        "TCLLIBPATH",
    }
)
RESERVED_ENV_PREFIXES = (
    "LD_",
    "DYLD_",
    "PYTHON",
    "PERL",
    "RUBY",
    "GEM_",
    "BUNDLE_",
    "NODE_",
    "NPM_CONFIG_",
    "JAVA_",
    "JDK_",
    "GIT_",
    "XDG_",
    "LUA_",
    "BASH_FUNC_",
)


def reserved_env_names(names: Iterable[str]) -> list[str]:
    """Those of ``names`` a stdio server's environment must not take (see ``ENV_NAME``)."""
    return sorted(
        name
        for name in set(names)
        if not ENV_NAME.match(name) or name in RESERVED_ENV_NAMES or name.startswith(RESERVED_ENV_PREFIXES)
    )


def clean_text(text: str, max_chars: int) -> str:
    """Untrusted text made storable: no NUL (Postgres text and JSONB refuse it), no lone
    surrogates (not encodable as UTF-8), at most ``max_chars``."""
    text = text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    return text[:max_chars]


class ConnectFailed(Exception):
    """A connection attempt failed; the message is safe to store and show (secrets redacted)."""


class UnknownVariables(ValueError):
    def __init__(self, names: Iterable[str]) -> None:
        self.names = sorted(set(names))
        super().__init__(f"Unknown custom variables: {', '.join(self.names)}")


def referenced_variables(text: str) -> set[str]:
    return set(VARIABLE.findall(text))


def substitute(text: str, variables: Mapping[str, str]) -> str:
    """``text`` with every ``{{NAME}}`` replaced by its value; unknown names raise."""
    missing = referenced_variables(text) - set(variables)
    if missing:
        raise UnknownVariables(missing)
    return VARIABLE.sub(lambda match: variables[match.group(1)], text)


def command_allowed(command: str, allowed: Sequence[str]) -> bool:
    """A stdio command must be on the allow-list exactly, as the path or the executable name
    given there (``npx`` allows ``npx`` found on PATH, not ``/tmp/npx``)."""
    return command in allowed


def resolve_command(command: str, allowed: Sequence[str]) -> str:
    """The absolute path of the allow-listed ``command``, looked up on the Bazaar process's own
    PATH: the program the allow-list entry names here, whatever environment the server process
    gets. Raises ``ConnectFailed``."""
    if not command_allowed(command, allowed):
        raise ConnectFailed(f"The command {command!r} is not on MCP_STDIO_ALLOWED_COMMANDS")
    found = shutil.which(command)
    if found is None:
        raise ConnectFailed(f"The command {command!r} is not installed")
    return os.path.abspath(found)


@dataclass(frozen=True)
class ConnectionSpec:
    client_id: UUID
    name: str
    connection_type: str
    url: str | None = None
    command: str | None = None
    args: tuple[str, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    # Values never to show: header values and custom variables.
    secrets: tuple[str, ...] = ()

    @classmethod
    def build(
        cls,
        *,
        client_id: UUID,
        name: str,
        connection_type: str,
        connection_string: str | None,
        command: str | None,
        args: Sequence[str],
        headers: Mapping[str, str],
        variables: Mapping[str, str],
    ) -> "ConnectionSpec":
        """Substitute the variables (``UnknownVariables`` when one is not defined). For stdio
        the variables are also the server process's extra environment."""
        stdio = connection_type == "stdio"
        return cls(
            client_id=client_id,
            name=name,
            connection_type=connection_type,
            url=substitute(connection_string, variables) if connection_string else None,
            command=command,
            args=tuple(substitute(arg, variables) for arg in args),
            headers={key: substitute(value, variables) for key, value in headers.items()},
            env=dict(variables) if stdio else {},
            secrets=tuple(v for v in [*variables.values(), *headers.values()] if v),
        )

    def redact(self, text: str) -> str:
        # Longest first, so a secret containing another is masked whole.
        for secret in sorted(self.secrets, key=len, reverse=True):
            if len(secret) >= 3:
                text = text.replace(secret, MASK)
        return text


@dataclass(frozen=True)
class Connected:
    client: Client
    transport: str  # what was used: stdio, streamable_http or sse


@dataclass(frozen=True)
class CheckOutcome:
    connected: bool
    latency_ms: int
    transport: str | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def describe(exc: BaseException) -> str:
    """A one-line account of what went wrong, from the innermost errors of task groups."""
    parts: list[str] = []
    for leaf in _leaves(exc):
        if isinstance(leaf, ConnectFailed):
            text = str(leaf)
        elif isinstance(leaf, MCPError):
            text = f"MCP error {leaf.code}: {clean_text(leaf.message, MAX_ERROR_CHARS)}"
        elif isinstance(leaf, httpx2.HTTPStatusError):
            text = f"HTTP {leaf.response.status_code} from the server"
        elif isinstance(leaf, httpx2.TransportError | OSError):
            text = (
                f"Cannot reach the server: {leaf}"
                if str(leaf)
                else f"Cannot reach the server ({type(leaf).__name__})"
            )
        else:
            text = f"{type(leaf).__name__}: {leaf}" if str(leaf) else type(leaf).__name__
        text = clean_text(text, MAX_ERROR_CHARS)
        if text not in parts:
            parts.append(text)
    return "; ".join(parts) or type(exc).__name__


def _http_client(
    settings: Settings,
    headers: Mapping[str, str],
    timeout: httpx2.Timeout,
    refusals: list[int] | None = None,
) -> httpx2.AsyncClient:
    """An HTTP client whose every connection goes through the SSRF guard (no proxies from the
    environment: they would connect on our behalf, unchecked). Error statuses are appended to
    ``refusals``: the streamable HTTP transport reports them without the status."""
    transport = httpx2.AsyncHTTPTransport(trust_env=False)
    # httpx2 has no parameter for the network backend; its pool reads this attribute.
    transport._pool._network_backend = GuardedNetworkBackend(
        allow_private_networks=settings.mcp_allow_private_networks
    )

    async def note_refusal(response: httpx2.Response) -> None:
        if refusals is not None and response.status_code >= 400:
            refusals.append(response.status_code)

    return httpx2.AsyncClient(
        headers=dict(headers),
        timeout=timeout,
        transport=transport,
        trust_env=False,
        event_hooks={"response": [note_refusal]},
    )


def _timeout(settings: Settings) -> httpx2.Timeout:
    return httpx2.Timeout(settings.mcp_call_timeout_seconds, read=SSE_READ_TIMEOUT_SECONDS)


def _client(transport: Any, settings: Settings) -> Client:
    return Client(
        transport,
        client_info=CLIENT_INFO,
        read_timeout_seconds=settings.mcp_call_timeout_seconds,
        cache=None,
    )


async def _enter_streamable_http(stack: AsyncExitStack, spec: ConnectionSpec, settings: Settings) -> Client:
    assert spec.url is not None
    refusals: list[int] = []
    http = await stack.enter_async_context(_http_client(settings, spec.headers, _timeout(settings), refusals))
    try:
        return await stack.enter_async_context(
            _client(streamable_http_client(spec.url, http_client=http), settings)
        )
    except Exception as exc:
        if refusals:
            raise ConnectFailed(f"HTTP {refusals[-1]} from the server") from exc
        raise


async def _enter_sse(stack: AsyncExitStack, spec: ConnectionSpec, settings: Settings) -> Client:
    assert spec.url is not None

    def factory(
        headers: dict[str, str] | None = None,
        timeout: httpx2.Timeout | None = None,
        auth: httpx2.Auth | None = None,
    ) -> httpx2.AsyncClient:
        return _http_client(settings, headers or {}, timeout or _timeout(settings))

    transport = sse_client(
        spec.url,
        headers=dict(spec.headers),
        timeout=settings.mcp_call_timeout_seconds,
        sse_read_timeout=SSE_READ_TIMEOUT_SECONDS,
        httpx_client_factory=factory,
    )
    return await stack.enter_async_context(_client(transport, settings))


async def _enter_stdio(stack: AsyncExitStack, spec: ConnectionSpec, settings: Settings) -> Client:
    # Checked again here: the allow-list may have shrunk, or the client was saved before a rule.
    path = resolve_command(spec.command or "", settings.mcp_stdio_allowed_commands)
    reserved = reserved_env_names(spec.env)
    if reserved:
        raise ConnectFailed(f"Custom variables not allowed in a stdio environment: {', '.join(reserved)}")
    # The absolute path: the SDK would look a bare name up on the server process's PATH.
    params = StdioServerParameters(command=path, args=list(spec.args), env=dict(spec.env))
    return await stack.enter_async_context(_client(params, settings))


async def connect(stack: AsyncExitStack, spec: ConnectionSpec, settings: Settings) -> Connected:
    """Connect and initialise. The session lives until ``stack`` closes. Raises on failure
    (``ConnectFailed`` or whatever the SDK raised; ``describe`` words it)."""
    if spec.connection_type == "stdio":
        return Connected(await _enter_stdio(stack, spec, settings), "stdio")
    try:
        parse_remote_url(spec.url or "")
    except UnsafeUrl as exc:
        raise ConnectFailed(str(exc)) from exc
    if spec.connection_type == "streamable_http":
        return Connected(await _enter_streamable_http(stack, spec, settings), "streamable_http")
    if spec.connection_type == "sse":
        return Connected(await _enter_sse(stack, spec, settings), "sse")
    # "http": streamable HTTP first, then the older SSE transport, within the same deadline.
    attempt = AsyncExitStack()
    try:
        client = await _enter_streamable_http(attempt, spec, settings)
    except Exception as streamable_error:
        await attempt.aclose()
        try:
            return Connected(await _enter_sse(stack, spec, settings), "sse")
        except Exception as sse_error:
            raise ConnectFailed(
                f"Streamable HTTP: {describe(streamable_error)}; SSE: {describe(sse_error)}"
            ) from sse_error
    await stack.enter_async_context(attempt)
    return Connected(client, "streamable_http")


async def list_tools(client: Client) -> list[Any]:
    """Every tool the server offers (following pages, at most ``MAX_TOOLS``)."""
    tools: list[Any] = []
    cursor: str | None = None
    while len(tools) < MAX_TOOLS:
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools[:MAX_TOOLS]


def tool_summary(tool: Any) -> dict[str, Any]:
    """A tool's name and description as stored with a check (the server's text, made storable)."""
    return {
        "name": clean_text(tool.name, MAX_TOOL_NAME_CHARS),
        "description": clean_text(tool.description or "", MAX_TOOL_DESCRIPTION_CHARS),
    }


async def check_connection(spec: ConnectionSpec, settings: Settings) -> CheckOutcome:
    """Connect, initialise and list the tools within ``mcp_call_timeout_seconds``. Never raises
    (but for cancellation from outside): a failure is an outcome with an ``error``."""
    started = time.perf_counter()
    timeout = settings.mcp_call_timeout_seconds
    outcome: CheckOutcome | None = None
    with anyio.CancelScope(deadline=anyio.current_time() + timeout):
        try:
            async with AsyncExitStack() as stack:
                connected = await connect(stack, spec, settings)
                tools = await list_tools(connected.client)
                outcome = CheckOutcome(
                    connected=True,
                    latency_ms=_elapsed_ms(started),
                    transport=connected.transport,
                    tools=[tool_summary(tool) for tool in tools],
                )
        except Exception as exc:
            if outcome is None:  # else: only closing the session failed
                error = spec.redact(describe(exc))[:MAX_ERROR_CHARS]
                outcome = CheckOutcome(connected=False, latency_ms=_elapsed_ms(started), error=error)
    if outcome is None:
        outcome = CheckOutcome(
            connected=False,
            latency_ms=_elapsed_ms(started),
            error=f"Timed out: no answer within {timeout:g} s",
        )
    return outcome


def _elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
