"""``GET /api/notifications/stream``: the signed-in user's new notifications as Server-Sent Events.

Authentication is the ``Authorization: Bearer`` header, as everywhere else. There is no token in
the query string: URLs end up in proxies' logs and browsers' histories, and the repository has no
such convention. A browser reads the stream with ``fetch()`` (or an EventSource polyfill that
sends headers, such as ``@microsoft/fetch-event-source``) rather than the built-in EventSource.

The stream subscribes first, then replays what the client missed (``Last-Event-ID``), then goes
live, skipping what the replay already sent: nothing is lost or repeated in between. It checks the
session at every heartbeat and before every message, so a logged-out or suspended user's stream
(or one whose access token expired) ends within a heartbeat with an ``end`` event.
"""

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from app.auth.deps import BearerCredentials, CurrentAuth
from app.auth.service import auth_service
from app.core.errors import AppError, ValidationFailed
from app.core.openapi import errors
from app.core.runtime import runtime
from app.notifications import realtime
from app.notifications.realtime import END_MESSAGES, Subscription

router = APIRouter(prefix="/api/notifications", tags=["notifications"])

REPLAY_PAGE = 200

SSE_DOC = """Server-Sent Events: `event: notification`, `id: <notification id>`, `data: <notification>`
(the inbox's shape); a `: heartbeat` comment when idle; and, when the server ends the stream, a
final `end` event {code, message}: `too_slow`, `resync` or `shutting_down` (reconnect with
`Last-Event-ID`), or the session's 401 code (`session_revoked`, `account_inactive`,
`token_expired`...: sign in or refresh first)."""


class EventStream(StreamingResponse):
    """A streaming response that runs ``on_close`` however it ends, even if it never started
    (the client left before the first byte)."""

    def __init__(self, content: AsyncIterator[bytes], on_close: Callable[[], None]) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


def _event(notification: dict[str, Any]) -> bytes:
    notification_id: str = notification["id"]
    return (
        b"event: notification\nid: "
        + notification_id.encode()
        + b"\ndata: "
        + orjson.dumps(notification)
        + b"\n\n"
    )


def _end(code: str, message: str) -> bytes:
    return b"event: end\ndata: " + orjson.dumps({"code": code, "message": message}) + b"\n\n"


def _parse_last_event_id(value: str | None) -> UUID | None:
    if not value:
        return None
    try:
        return UUID(value)
    except ValueError:
        raise ValidationFailed(
            "Last-Event-ID must be the id of a notification", code="invalid_last_event_id"
        ) from None


async def _session_error(token: str) -> AppError | None:
    """Why the stream's access token no longer authenticates (cheap: the request path's cache)."""
    try:
        await auth_service.authenticate(runtime(), token)
    except AppError as exc:
        return exc
    return None


async def notification_events(
    token: str, subscription: Subscription, after: UUID | None
) -> AsyncIterator[bytes]:
    heartbeat = runtime().settings.notification_stream_heartbeat_seconds
    # Subscribed already: flush the headers so the client knows it is live.
    yield b": connected\n\n"
    replayed: set[str] = set()
    while after is not None:
        page = await realtime.notifications_after(subscription.user_id, after, REPLAY_PAGE)
        for notification in page:
            replayed.add(notification["id"])
            yield _event(notification)
        after = UUID(page[-1]["id"]) if len(page) == REPLAY_PAGE else None
    while True:
        batch = await subscription.next_batch(heartbeat)
        if subscription.ended is not None:
            yield _end(subscription.ended, END_MESSAGES[subscription.ended])
            return
        error = await _session_error(token)
        if error is not None:
            yield _end(error.code, error.message)
            return
        fresh = [n for n in batch if n["id"] not in replayed]
        if not fresh:
            yield b": heartbeat\n\n"
        for notification in fresh:
            yield _event(notification)


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={
        **errors(401, 503),
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}, "example": SSE_DOC}}},
    },
)
async def stream_notifications(
    authenticated: CurrentAuth,
    credentials: BearerCredentials,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    last_event_id_query: Annotated[str | None, Query(alias="lastEventId")] = None,
) -> StreamingResponse:
    """The signed-in user's new notifications, live, as Server-Sent Events (see the 200 response);
    only their own. With `Last-Event-ID` (header, or `?lastEventId=`), the notifications created
    after that one are sent first. Authenticate with the `Authorization` header."""
    after = _parse_last_event_id(last_event_id or last_event_id_query)
    assert credentials is not None  # CurrentAuth required it
    subscription = await realtime.broker.subscribe(authenticated.principal.user_id)
    return EventStream(
        notification_events(credentials.credentials, subscription, after),
        on_close=lambda: realtime.broker.unsubscribe(subscription),
    )
