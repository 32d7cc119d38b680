"""MCP clients: the platform's MCP servers. Super admins configure, test and switch them on or
off; builders list the active ones and attach them to projects; the chat engine connects to them
(``app.mcp.toolset``); the worker checks their health (``app.mcp.tasks``).

Headers and custom variables are encrypted at rest and never leave in plain: answers, events and
stored errors show ``****`` instead.
"""

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import anyio
from pydantic.alias_generators import to_camel
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.crypto import MASK, mask_values, secret_box
from app.core.db import commit, sessionmaker
from app.core.errors import Conflict, NotFound, ValidationFailed
from app.core.events import record_event
from app.core.pagination import PageParams, apply_sort, paginate
from app.core.principal import Principal
from app.mcp.connect import (
    MAX_ERROR_CHARS,
    MAX_TOOL_DESCRIPTION_CHARS,
    MAX_TOOL_NAME_CHARS,
    CheckOutcome,
    ConnectionSpec,
    check_connection,
    clean_text,
    command_allowed,
    referenced_variables,
    reserved_env_names,
    substitute,
)
from app.mcp.repository import mcp_repository
from app.mcp.schemas import (
    ConnectionMetrics,
    McpClientCreate,
    McpClientOut,
    McpClientStatusUpdate,
    McpClientUpdate,
    McpConnectionOut,
    ToolSummary,
)
from app.mcp.ssrf import UnsafeUrl, check_remote_url
from app.models import McpCheckTrigger, McpClient, McpConnection, McpConnectionStatus

logger = logging.getLogger("bazaar.mcp")

_SORTABLE = {"name": McpClient.name, "createdAt": McpClient.created_at, "updatedAt": McpClient.updated_at}
# Headers the transports set themselves; a client's own value would break the protocol.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "accept",
        "mcp-session-id",
        "mcp-protocol-version",
        "last-event-id",
    }
)
_CONNECTION_FIELDS = frozenset(
    {"connection_type", "connection_string", "command", "args", "headers", "custom_vars"}
)
KEEP_CHECKS = 200  # connection checks kept per client
HEALTH_CONCURRENCY = 8


@dataclass
class _Config:
    """What must be consistent: the transport and everything it needs."""

    connection_type: str
    connection_string: str | None
    command: str | None
    args: list[str]
    headers: dict[str, str]
    variables: dict[str, str]


def _state(is_active: bool) -> str:
    return "active" if is_active else "inactive"


def _merge_secrets(current: Mapping[str, str], sent: Mapping[str, str], field: str) -> dict[str, str]:
    """``sent`` replaces ``current``; a value of ``****`` keeps the stored one."""
    unknown = sorted(name for name, value in sent.items() if value == MASK and name not in current)
    if unknown:
        raise ValidationFailed(
            f"{field}: '****' keeps a stored value, but these have none: {', '.join(unknown)}",
            code="mcp_masked_value",
            details={"field": field, "names": unknown},
        )
    return {name: current[name] if value == MASK else value for name, value in sent.items()}


class McpService:
    # --- answers ---------------------------------------------------------------------------------

    @staticmethod
    def connection_out(row: McpConnection) -> McpConnectionOut:
        return McpConnectionOut(
            id=row.id,
            client_id=row.client_id,
            status=row.status,
            trigger=row.trigger,
            transport=row.transport,
            checked_at=row.checked_at,
            last_connected=row.last_connected_at,
            metrics=ConnectionMetrics(latency_ms=row.latency_ms, tool_count=len(row.tools)),
            tools=[
                ToolSummary(name=t.get("name", ""), description=t.get("description", "")) for t in row.tools
            ],
            error=row.error,
        )

    def out(self, settings: Settings, client: McpClient, last: McpConnection | None) -> McpClientOut:
        return McpClientOut(
            id=client.id,
            name=client.name,
            description=client.description,
            connection_string=client.connection_string,
            connection_type=client.connection_type,
            command=client.command,
            args=list(client.args),
            headers=mask_values(self._secrets(settings, client.headers_encrypted, strict=False)),
            custom_vars=mask_values(self._secrets(settings, client.custom_vars_encrypted, strict=False)),
            is_active=client.is_active,
            created_at=client.created_at,
            updated_at=client.updated_at,
            last_connection=self.connection_out(last) if last is not None else None,
        )

    @staticmethod
    def _secrets(settings: Settings, token: str | None, *, strict: bool = True) -> dict[str, str]:
        try:
            value = secret_box(settings).decrypt_json(token, {})
        except ValueError:
            if strict:
                raise
            logger.error("MCP client secrets cannot be decrypted with the configured ENCRYPTION_KEY")
            return {}
        return dict(value)

    def _encrypt(self, settings: Settings, values: Mapping[str, str]) -> str | None:
        return secret_box(settings).encrypt_json(dict(values)) if values else None

    async def _outs(
        self, db: AsyncSession, settings: Settings, clients: Sequence[McpClient]
    ) -> list[McpClientOut]:
        latest = await mcp_repository.latest_connections(db, [c.id for c in clients])
        return [self.out(settings, c, latest.get(c.id)) for c in clients]

    # --- reading (builders and admins) ----------------------------------------------------------

    async def list_visible(
        self,
        db: AsyncSession,
        settings: Settings,
        params: PageParams,
        *,
        is_active: bool | None = None,
        connection_type: str | None = None,
        q: str | None = None,
    ) -> tuple[list[McpClientOut], int]:
        stmt = mcp_repository.search(is_active=is_active, connection_type=connection_type, q=q)
        stmt = apply_sort(stmt, params.sort, _SORTABLE, default="name", tiebreak=McpClient.id)
        clients, total = await paginate(db, stmt, params)
        return await self._outs(db, settings, clients), total

    async def _get(self, db: AsyncSession, client_id: UUID, *, for_update: bool = False) -> McpClient:
        client = await mcp_repository.get(db, client_id, for_update=for_update)
        if client is None:
            raise NotFound("MCP client not found", code="mcp_client_not_found")
        return client

    async def get(self, db: AsyncSession, settings: Settings, client_id: UUID) -> McpClientOut:
        client = await self._get(db, client_id)
        return (await self._outs(db, settings, [client]))[0]

    # --- configuration (super admins) ------------------------------------------------------------

    async def _validate(self, db: AsyncSession, settings: Settings, config: _Config) -> None:
        if config.connection_type == "stdio":
            if not config.command:
                raise ValidationFailed("A stdio client needs a command", code="mcp_command_required")
            if not command_allowed(config.command, settings.mcp_stdio_allowed_commands):
                raise ValidationFailed(
                    f"The command {config.command!r} is not allowed (MCP_STDIO_ALLOWED_COMMANDS)",
                    code="mcp_command_not_allowed",
                    details={"command": config.command, "allowed": list(settings.mcp_stdio_allowed_commands)},
                )
            reserved = reserved_env_names(config.variables)
            if reserved:
                raise ValidationFailed(
                    "A stdio client's customVars are its server's environment: names must be upper "
                    "case (A-Z, 0-9, _) and not one that decides which program runs or what it loads "
                    f"({', '.join(reserved)})",
                    code="mcp_reserved_variable",
                    details={"names": reserved},
                )
            used = {name for arg in config.args for name in referenced_variables(arg)}
        else:
            if not config.connection_string:
                raise ValidationFailed(
                    f"A {config.connection_type} client needs a connectionString (its URL)",
                    code="mcp_url_required",
                )
            reserved = sorted(h for h in config.headers if h.lower() in RESERVED_HEADERS)
            if reserved:
                raise ValidationFailed(
                    f"These headers are set by the MCP transport: {', '.join(reserved)}",
                    code="mcp_reserved_header",
                    details={"names": reserved},
                )
            used = referenced_variables(config.connection_string)
            used |= {name for value in config.headers.values() for name in referenced_variables(value)}
        unknown = sorted(used - set(config.variables))
        if unknown:
            raise ValidationFailed(
                f"Unknown custom variables: {', '.join(unknown)} (define them in customVars)",
                code="mcp_unknown_variables",
                details={"names": unknown},
            )
        if config.connection_string:
            await self._check_url(
                settings, substitute(config.connection_string, config.variables), config.variables
            )

    @staticmethod
    async def _check_url(settings: Settings, url: str, variables: Mapping[str, str]) -> None:
        try:
            with anyio.fail_after(settings.mcp_call_timeout_seconds):
                await check_remote_url(url, allow_private_networks=settings.mcp_allow_private_networks)
        except (UnsafeUrl, TimeoutError) as exc:
            message = str(exc) or "The URL's host could not be resolved in time"
            for value in sorted(variables.values(), key=len, reverse=True):
                if len(value) >= 3:
                    message = message.replace(value, MASK)
            raise ValidationFailed(message, code="mcp_url_not_allowed") from exc

    async def _check_name(self, db: AsyncSession, name: str, other_than: UUID | None = None) -> None:
        if await mcp_repository.name_taken(db, name, other_than=other_than):
            raise Conflict(f"An MCP client named {name!r} already exists", code="mcp_client_name_taken")

    @staticmethod
    def _config(
        sent: dict[str, Any], current: McpClient | None, headers: dict[str, str], variables: dict[str, str]
    ) -> _Config:
        """The configuration after ``sent`` (the fields given, not null) is applied to
        ``current``. Fields the new transport does not use are dropped, but sending one is a 422."""
        connection_type = sent.get("connection_type") or (current.connection_type if current else "")
        was_stdio = current is not None and current.connection_type == "stdio"
        was_remote = current is not None and not was_stdio
        stdio = connection_type == "stdio"
        misplaced = (
            [f for f in ("connection_string", "headers") if sent.get(f)]
            if stdio
            else [f for f in ("command", "args") if sent.get(f)]
        )
        if misplaced:
            names = [to_camel(f) for f in misplaced]
            raise ValidationFailed(
                f"{', '.join(names)} cannot be used with a {connection_type} client",
                code="mcp_field_not_applicable",
                details={"fields": names, "connectionType": connection_type},
            )
        if stdio:
            return _Config(
                connection_type=connection_type,
                connection_string=None,
                command=sent.get("command", current.command if was_stdio and current else None),
                args=list(sent.get("args", current.args if was_stdio and current else [])),
                headers={},
                variables=_merge_secrets(variables, sent["custom_vars"], "customVars")
                if "custom_vars" in sent
                else variables,
            )
        return _Config(
            connection_type=connection_type,
            connection_string=sent.get(
                "connection_string", current.connection_string if was_remote and current else None
            ),
            command=None,
            args=[],
            headers=_merge_secrets(headers if was_remote else {}, sent["headers"], "headers")
            if "headers" in sent
            else (headers if was_remote else {}),
            variables=_merge_secrets(variables, sent["custom_vars"], "customVars")
            if "custom_vars" in sent
            else variables,
        )

    async def create(
        self, db: AsyncSession, settings: Settings, actor: Principal, body: McpClientCreate
    ) -> McpClientOut:
        sent = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
        sent["connection_type"] = body.connection_type
        config = self._config(sent, None, {}, {})
        await self._validate(db, settings, config)
        await self._check_name(db, body.name)
        client = McpClient(
            name=body.name,
            description=body.description,
            connection_type=config.connection_type,
            connection_string=config.connection_string,
            command=config.command,
            args=config.args,
            headers_encrypted=self._encrypt(settings, config.headers),
            custom_vars_encrypted=self._encrypt(settings, config.variables),
            is_active=body.is_active,
            created_by=actor.user_id,
        )
        db.add(client)
        await db.flush()
        await record_event(
            db,
            "mcp_client.created",
            actor_id=actor.user_id,
            subject_id=client.id,
            payload={
                "name": client.name,
                "connectionType": client.connection_type,
                "isActive": client.is_active,
            },
        )
        return self.out(settings, client, None)

    async def update(
        self, db: AsyncSession, settings: Settings, actor: Principal, client_id: UUID, body: McpClientUpdate
    ) -> McpClientOut:
        client = await self._get(db, client_id, for_update=True)
        sent = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
        headers = self._secrets(settings, client.headers_encrypted)
        variables = self._secrets(settings, client.custom_vars_encrypted)
        config = self._config(sent, client, headers, variables)
        if sent.keys() & _CONNECTION_FIELDS:  # a rename must not depend on DNS or the allow-list
            await self._validate(db, settings, config)
        if "name" in sent and sent["name"] != client.name:
            await self._check_name(db, sent["name"], other_than=client.id)
        changes: dict[str, Any] = {
            "name": sent.get("name", client.name),
            "description": sent.get("description", client.description),
            "connection_type": config.connection_type,
            "connection_string": config.connection_string,
            "command": config.command,
            "args": config.args,
            "is_active": sent.get("is_active", client.is_active),
        }
        fields = [to_camel(f) for f, value in changes.items() if getattr(client, f) != value]
        for field, value in changes.items():
            setattr(client, field, value)
        if config.headers != headers:
            fields.append("headers")
            client.headers_encrypted = self._encrypt(settings, config.headers)
        if config.variables != variables:
            fields.append("customVars")
            client.custom_vars_encrypted = self._encrypt(settings, config.variables)
        if fields:
            client.updated_at = datetime.now(UTC)
            await record_event(
                db,
                "mcp_client.updated",
                actor_id=actor.user_id,
                subject_id=client.id,
                payload={"fields": sorted(fields)},
            )
            if "isActive" in fields:
                await self._record_status_change(db, actor, client)
        await db.flush()
        return await self.get(db, settings, client.id)

    @staticmethod
    async def _record_status_change(db: AsyncSession, actor: Principal, client: McpClient) -> None:
        await record_event(
            db,
            "mcp_client.status_changed",
            actor_id=actor.user_id,
            subject_id=client.id,
            payload={"from": _state(not client.is_active), "to": _state(client.is_active)},
        )

    async def set_status(
        self,
        db: AsyncSession,
        settings: Settings,
        actor: Principal,
        client_id: UUID,
        body: McpClientStatusUpdate,
    ) -> McpClientOut:
        client = await self._get(db, client_id, for_update=True)
        if client.is_active != body.is_active:
            client.is_active = body.is_active
            client.updated_at = datetime.now(UTC)
            await self._record_status_change(db, actor, client)
            await db.flush()
        return await self.get(db, settings, client.id)

    async def delete(self, db: AsyncSession, actor: Principal, client_id: UUID) -> None:
        """Delete a client and detach it from every project using it (each such project records
        ``project.updated``); its connection checks go with it."""
        # Imported here: the projects domain imports this module to validate attachments.
        from app.projects.service import project_service

        client = await self._get(db, client_id, for_update=True)
        detached = await project_service.detach_mcp_client(db, actor.user_id, str(client.id))
        await db.delete(client)
        await record_event(
            db,
            "mcp_client.deleted",
            actor_id=actor.user_id,
            subject_id=client.id,
            payload={"name": client.name, "detachedProjects": sorted(str(p) for p in detached)},
        )
        await db.flush()

    # --- connection checks -----------------------------------------------------------------------

    def spec(self, settings: Settings, client: McpClient) -> ConnectionSpec:
        """The client ready to connect. Raises ``ValueError`` when its secrets cannot be decrypted
        or a variable is missing."""
        return ConnectionSpec.build(
            client_id=client.id,
            name=client.name,
            connection_type=client.connection_type,
            connection_string=client.connection_string,
            command=client.command,
            args=client.args,
            headers=self._secrets(settings, client.headers_encrypted),
            variables=self._secrets(settings, client.custom_vars_encrypted),
        )

    def _spec_or_failure(self, settings: Settings, client: McpClient) -> ConnectionSpec | CheckOutcome:
        try:
            return self.spec(settings, client)
        except ValueError as exc:  # undecryptable secrets, a variable gone missing
            return CheckOutcome(connected=False, latency_ms=0, error=str(exc))

    @staticmethod
    async def _check(settings: Settings, spec: ConnectionSpec | CheckOutcome) -> CheckOutcome:
        """Run the check (no database work: callers hold no connection meanwhile)."""
        if isinstance(spec, CheckOutcome):
            return spec
        return await check_connection(spec, settings)

    async def _record_check(
        self,
        db: AsyncSession,
        client: McpClient,
        outcome: CheckOutcome,
        trigger: McpCheckTrigger,
        actor_id: UUID | None,
    ) -> tuple[McpConnection, McpConnection | None]:
        """Store a check; returns it and the check before it (None for the first). Tool names,
        descriptions and errors come from the server: they are cleaned to be storable."""
        previous = (await mcp_repository.latest_connections(db, [client.id])).get(client.id)
        now = datetime.now(UTC)
        tools = [
            {
                "name": clean_text(str(tool.get("name", "")), MAX_TOOL_NAME_CHARS),
                "description": clean_text(str(tool.get("description", "")), MAX_TOOL_DESCRIPTION_CHARS),
            }
            for tool in outcome.tools
        ]
        row = McpConnection(
            client_id=client.id,
            status=McpConnectionStatus.CONNECTED if outcome.connected else McpConnectionStatus.FAILED,
            trigger=trigger,
            transport=outcome.transport,
            latency_ms=outcome.latency_ms,
            tools=tools,
            error=clean_text(outcome.error, MAX_ERROR_CHARS) if outcome.error is not None else None,
            actor_id=actor_id,
            checked_at=now,
            last_connected_at=now
            if outcome.connected
            else (previous.last_connected_at if previous else None),
        )
        db.add(row)
        await db.flush()
        await mcp_repository.prune_connections(db, client.id, keep=KEEP_CHECKS)
        return row, previous

    @staticmethod
    def _check_payload(row: McpConnection) -> dict[str, Any]:
        return {
            "connectionId": str(row.id),
            "status": row.status,
            "transport": row.transport,
            "latencyMs": row.latency_ms,
            "toolCount": len(row.tools),
            "error": row.error,
        }

    async def test_connection(
        self, db: AsyncSession, settings: Settings, actor: Principal, client_id: UUID
    ) -> McpConnectionOut:
        """Connect, initialise and list the tools now; the outcome is stored and returned (a
        failure is an outcome, not an error).

        The request's transaction is committed before connecting, so no database connection is
        held while the server takes its time (up to ``mcp_call_timeout_seconds``); a client
        deleted meanwhile is a 404."""
        spec = self._spec_or_failure(settings, await self._get(db, client_id))
        await commit(db)
        outcome = await self._check(settings, spec)
        # Locked: concurrent checks of one client record one after the other.
        client = await self._get(db, client_id, for_update=True)
        row, _ = await self._record_check(db, client, outcome, McpCheckTrigger.TEST, actor.user_id)
        await record_event(
            db,
            "mcp_client.tested",
            actor_id=actor.user_id,
            subject_id=client.id,
            payload=self._check_payload(row),
        )
        return self.connection_out(row)

    async def check_health(self, settings: Settings) -> int:
        """Check every active client (concurrently, no database connection held meanwhile) and
        store the outcomes, each client in its own transaction: one that cannot be recorded is
        logged and does not stop the others. A client whose previous check connected and this
        one failed records ``mcp_client.health_failed``. Returns the number of clients checked."""
        async with sessionmaker()() as db:
            specs = {c.id: self._spec_or_failure(settings, c) for c in await mcp_repository.all_active(db)}
        outcomes: dict[UUID, CheckOutcome] = {}
        limiter = anyio.CapacityLimiter(HEALTH_CONCURRENCY)

        async def check(client_id: UUID, spec: ConnectionSpec | CheckOutcome) -> None:
            async with limiter:
                outcomes[client_id] = await self._check(settings, spec)

        async with anyio.create_task_group() as tg:
            for client_id, spec in specs.items():
                tg.start_soon(check, client_id, spec)
        for client_id, outcome in outcomes.items():
            try:
                async with sessionmaker()() as db:
                    await self._record_health(db, client_id, outcome)
                    await commit(db)
            except Exception:
                logger.exception("MCP health check not recorded", extra={"clientId": str(client_id)})
        return len(outcomes)

    async def _record_health(self, db: AsyncSession, client_id: UUID, outcome: CheckOutcome) -> None:
        # Locked: a concurrent check of the same client records after this one.
        current = await mcp_repository.get(db, client_id, for_update=True)
        if current is None or not current.is_active:
            return
        row, previous = await self._record_check(db, current, outcome, McpCheckTrigger.HEALTH, None)
        stopped = previous is not None and previous.status == McpConnectionStatus.CONNECTED
        if stopped and not outcome.connected:
            logger.warning(
                "MCP client stopped answering", extra={"clientId": str(client_id), "error": row.error}
            )
            await record_event(
                db,
                "mcp_client.health_failed",
                actor_id=None,
                subject_id=client_id,
                payload={"name": current.name, **self._check_payload(row)},
            )

    # --- for other domains -----------------------------------------------------------------------

    async def unusable_ids(self, db: AsyncSession, client_ids: Sequence[str]) -> list[str]:
        """Those of ``client_ids`` that are not active MCP clients (unknown, inactive, not ids)."""
        parsed: dict[str, UUID] = {}
        for text in client_ids:
            try:
                parsed[text] = UUID(text)
            except ValueError:
                continue
        active = {c.id for c in await mcp_repository.active_among(db, list(parsed.values()))}
        return [text for text in client_ids if parsed.get(text) not in active]

    async def usable_specs(
        self, db: AsyncSession, settings: Settings, client_ids: Sequence[str]
    ) -> list[ConnectionSpec]:
        """Connection specs of the active clients among ``client_ids``, in their order; the
        others are skipped and logged."""
        wanted: list[UUID] = []
        for text in dict.fromkeys(client_ids):
            try:
                wanted.append(UUID(text))
            except ValueError:
                logger.warning("not an MCP client id", extra={"clientId": text})
        found = {c.id: c for c in await mcp_repository.active_among(db, wanted)}
        specs = []
        for client_id in wanted:
            client = found.get(client_id)
            if client is None:
                logger.info("MCP client skipped: unknown or inactive", extra={"clientId": str(client_id)})
                continue
            try:
                specs.append(self.spec(settings, client))
            except ValueError as exc:
                logger.error("MCP client skipped", extra={"clientId": str(client_id), "error": str(exc)})
        return specs


mcp_service = McpService()
