"""The public runtime that ``widget/embed.js`` calls from the end user's website (no user
token): open a visitor session, chat, report usage beacons.

Browsers call these routes cross-origin, so they answer CORS themselves (the app's
``CORSMiddleware`` is for the dashboard): ``Access-Control-Allow-Origin`` names the caller's
origin only once it is known to be one of the widget's allowed origins, on successes and errors
alike (a 429's polite message must reach the widget), and each route answers its preflight.
"""

import inspect
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, FastAPI, Request, Response, Security, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from app.chat.responses import AfterCommitResponse, json_answer, sse_answer
from app.chat.schemas import ChatAnswer
from app.chat.service import chat_service
from app.core.db import DB
from app.core.errors import AppError, Forbidden, Unauthorized
from app.core.openapi import ERROR_SCHEMA, errors
from app.core.ratelimit import client_ip
from app.core.runtime import runtime
from app.models import Widget
from app.widgets.beacons import close_beacon_gate, read_batch
from app.widgets.schemas import (
    BeaconBatch,
    BeaconsAccepted,
    SessionOut,
    SessionRequest,
    WidgetChatRequest,
)
from app.widgets.security import SessionClaims
from app.widgets.service import widget_service

PREFLIGHT_MAX_AGE = "600"
_ALLOWED_HEADERS = "Content-Type, Authorization"
_EXPOSED_HEADERS = "Retry-After"


# --- CORS -----------------------------------------------------------------------------------


def _allow_origin(request: Request, origin: str) -> None:
    """Called once ``origin`` is known to be allowed for this request's widget."""
    request.state.cors_origin = origin


def _cors_headers(request: Request) -> dict[str, str]:
    headers = {"Vary": "Origin"}
    origin = getattr(request.state, "cors_origin", None)
    if origin is not None:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Expose-Headers"] = _EXPOSED_HEADERS
    return headers


def _with_cors(request: Request, response: Response) -> Response:
    response.headers.update(_cors_headers(request))
    return response


class WidgetCorsRoute(APIRoute):
    """A route whose every answer, errors included, carries the CORS headers of its request."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def with_cors(request: Request) -> Response:
            try:
                response = await handler(request)
            except (AppError, StarletteHTTPException) as exc:
                # Raised on, not answered here: the request's session must see the error and
                # roll back. The app's handler renders it with these headers.
                exc.headers = {**(exc.headers or {}), **_cors_headers(request)}
                raise
            except RequestValidationError as exc:
                # Bad input is refused before anything is written; the app's handler renders it.
                response = await _validation_answer(request, exc)
            return _with_cors(request, response)

        return with_cors


async def _validation_answer(request: Request, exc: RequestValidationError) -> Response:
    handler_for = request.app.exception_handlers[RequestValidationError]
    response: Response = await handler_for(request, exc)
    return response


class BeaconRoute(WidgetCorsRoute):
    """The beacon route: documented from its endpoint's signature like any other, but its
    requests skip FastAPI's per-request machinery (dependency resolution, exit stacks, response
    validation): about a third of a single-event beacon's CPU (bench/README.md). The route passes the
    endpoint's three parameters itself, as FastAPI would (and still does for this endpoint
    anywhere else): the path's ``widget_id``, the request, the bearer credentials. The endpoint
    answers with the CORS headers; errors get them here, as in ``WidgetCorsRoute``."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if list(inspect.signature(endpoint).parameters) != ["widget_id", "request", "credentials"]:
            raise TypeError("BeaconRoute serves endpoint(widget_id, request, credentials) only")
        super().__init__(path, endpoint, **kwargs)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":  # the 405
            await super().handle(scope, receive, send)
            return
        request = Request(scope, receive, send)
        try:
            widget_id = _path_uuid(request, "widget_id")
            response: Response = await self.endpoint(widget_id, request, await session_bearer(request))
        except (AppError, StarletteHTTPException) as exc:
            exc.headers = {**(exc.headers or {}), **_cors_headers(request)}
            raise
        except RequestValidationError as exc:
            response = _with_cors(request, await _validation_answer(request, exc))
        await response(scope, receive, send)


_UUID = TypeAdapter(UUID)


def _path_uuid(request: Request, name: str) -> UUID:
    try:
        return _UUID.validate_python(request.path_params[name])
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("path", name)} for e in exc.errors()]) from exc


@asynccontextmanager
async def _close_beacon_gate(_: FastAPI) -> AsyncIterator[None]:
    yield
    await close_beacon_gate()


router = APIRouter(tags=["widget runtime"], route_class=WidgetCorsRoute, lifespan=_close_beacon_gate)

session_bearer = HTTPBearer(
    auto_error=False, scheme_name="WidgetSession", description="Session token from POST /widget/v1/session"
)
SessionCredentials = Annotated[HTTPAuthorizationCredentials | None, Security(session_bearer)]


def _bearer(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str | None:
    if credentials is not None:
        return credentials.credentials
    if request.headers.get("authorization"):
        raise Unauthorized("Authorization header must be 'Bearer <session token>'", code="invalid_session")
    return None


@dataclass(frozen=True)
class VisitorSession:
    widget: Widget
    claims: SessionClaims


async def _visitor_session(
    request: Request, db: DB, token: str | None, widget_id: UUID | None
) -> VisitorSession:
    """The session a request carries: valid token, from the page it was opened on, for a widget
    that still allows that page (and for ``widget_id`` when the path names one)."""
    widget = await widget_service.get(db, widget_id) if widget_id is not None else None
    if token is None:
        raise Unauthorized("A widget session token is required", code="session_required")
    rt = runtime()
    claims = widget_service.read_token(rt.jwt_secret, token)
    if widget is None:
        widget = await widget_service.get(db, claims.widget_id)
    elif claims.widget_id != widget.id:
        raise Forbidden("This session belongs to another widget", code="session_for_another_widget")
    origin = widget_service.browser_origin(request.headers.get("origin"))
    widget_service.check_session_origin(widget, claims, origin)
    _allow_origin(request, origin)
    widget_service.require_fresh(claims)
    return VisitorSession(widget=widget, claims=claims)


async def chat_session(request: Request, db: DB, credentials: SessionCredentials) -> VisitorSession:
    return await _visitor_session(request, db, _bearer(request, credentials), None)


Visitor = Annotated[VisitorSession, Depends(chat_session)]


# --- routes ---------------------------------------------------------------------------------

RUNTIME_ERRORS: dict[int | str, dict[str, Any]] = {
    **errors(400, 401, 403, 404, 413, 429),
    410: {
        "description": "The widget no longer serves (`widget_unavailable`: refunded, delisted)",
        "content": {"application/json": {"schema": ERROR_SCHEMA}},
    },
}


# Beacons first: routes are matched in order, and beacons are most of the runtime's traffic.
BEACON_BODY_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            media: {
                "schema": BeaconBatch.model_json_schema(
                    by_alias=True, ref_template="#/components/schemas/{model}"
                )
            }
            for media in ("application/json", "text/plain")
        },
    }
}


async def track_usage(widget_id: UUID, request: Request, credentials: SessionCredentials) -> Response:
    """Usage beacons of a widget: {token, events: [{eventId, kind (impression, open, message,
    tokens), count, occurredAt, latencyMs}]}, at most 100 per request, as JSON or `text/plain`
    (what `navigator.sendBeacon` sends; the token goes in the body because it sets no headers,
    `Authorization` works too). 202 once they are in the usage stream; a replayed `eventId` is
    accepted again and counted once by the warehouse."""
    token, events = read_batch(await request.body())
    rt = runtime()
    # The checks of _visitor_session, in its order, on the cached configuration: no database.
    config = await widget_service.runtime_config(rt, widget_id)
    token = token or _bearer(request, credentials)
    if token is None:
        raise Unauthorized("A widget session token is required", code="session_required")
    claims = widget_service.session_claims(rt, token)
    if claims.widget_id != config.widget_id:
        raise Forbidden("This session belongs to another widget", code="session_for_another_widget")
    header = request.headers.get("origin")
    # The page's origin is almost always exactly the (canonical) one its session was opened on.
    origin = header if header == claims.origin else widget_service.browser_origin(header)
    widget_service.check_beacon_origin(config, claims, origin)
    _allow_origin(request, origin)
    widget_service.require_fresh(claims)
    accepted = await widget_service.accept_beacons(rt, config, claims, events)
    return Response(
        b'{"accepted":%d}' % accepted,
        status.HTTP_202_ACCEPTED,
        headers=_cors_headers(request),
        media_type="application/json",
    )


router.add_api_route(
    "/api/widgets/{widget_id}/track-usage",
    track_usage,
    methods=["POST"],
    response_model=BeaconsAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses=RUNTIME_ERRORS,
    openapi_extra=BEACON_BODY_SCHEMA,
    route_class_override=BeaconRoute,
)


@router.post(
    "/widget/v1/session",
    response_model=SessionOut,
    status_code=status.HTTP_201_CREATED,
    responses=RUNTIME_ERRORS,
)
async def open_session(request: Request, body: SessionRequest, db: DB) -> SessionOut:
    """Open a visitor session for the widget `widgetKey`, from a page whose `Origin` is one of
    its allowed origins (`origin_required` / `origin_not_allowed` otherwise). `identity` =
    {userId, exp, signature = hex HMAC-SHA256(secretKey, "widgetId|userId|exp")} names the site's
    signed-in user (`exp`: Unix seconds, at most 24 hours ahead); with identity verification on
    it is required, and a missing or wrong one is 403 `identity_invalid`, an expired one 403
    `identity_expired`. Answers a short-lived `token` for the other runtime calls, the widget's
    `appearance` and this month's `quota`. A refunded or delisted widget: 410."""
    origin = widget_service.browser_origin(request.headers.get("origin"))
    # The page may read a refusal (unknown key, origin not allowed), so the script stops at once
    # with the reason: it tells nothing the public key in the page's source does not.
    _allow_origin(request, origin)
    widget = await widget_service.by_key(db, body.widget_key)
    widget_service.check_origin(widget, origin)
    rt = runtime()
    return await widget_service.open_session(
        db, rt, widget, origin, body, client_ip=client_ip(request, rt.settings)
    )


@router.post(
    "/widget/v1/chat",
    response_model=ChatAnswer,
    responses={
        **RUNTIME_ERRORS,
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}},
        502: {"description": "The LLM provider failed; the question is kept"},
    },
)
async def chat(request: Request, body: WidgetChatRequest, db: DB, visitor: Visitor) -> Response:
    """Ask the widget's project (`Authorization: Bearer <session token>`). The same answer as
    the builder studio's chat: Server-Sent Events with `Accept: text/event-stream`
    (`conversation`, `citations`, `delta`, `tool_call`, `tool_result`, `usage`, `done` or
    `error`), JSON otherwise. `conversationId` continues one of this visitor's conversations
    (opened with the same verified customer, or anonymously by an anonymous session). Over the
    plan's monthly messages: 429 `quota_exceeded` with a message to show. A widget refunded,
    delisted or deleted since the session opened: 410 `widget_unavailable` with the reason."""
    rt = runtime()
    turn = await widget_service.prepare_chat(
        db,
        rt,
        visitor.widget,
        visitor.claims,
        body.message,
        body.conversation_id,
        client_ip=client_ip(request, rt.settings),
    )
    # Answered once the question is committed, in a task of its own: a visitor closing the page
    # mid-answer still gets it stored and metered.
    run = chat_service.answer_after_commit(db, turn)
    if "text/event-stream" in request.headers.get("accept", ""):
        return StreamingResponse(
            sse_answer(turn, run),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def answer() -> Response:
        # The answer is produced after the commit, as a new response: it needs its own headers.
        return _with_cors(request, await json_answer(turn, run))

    return AfterCommitResponse(answer)  # type: ignore[arg-type]


async def _preflight(request: Request) -> Response:
    """Preflights carry neither body nor token, so they cannot name the widget: any well-formed
    origin may ask, and the request itself is then checked against the widget's origins."""
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    try:
        origin = widget_service.browser_origin(request.headers.get("origin"))
    except AppError:
        return response
    _allow_origin(request, origin)
    response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = _ALLOWED_HEADERS
    response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
    return response


for _path in ("/widget/v1/session", "/widget/v1/chat", "/api/widgets/{widget_id}/track-usage"):
    router.add_api_route(_path, _preflight, methods=["OPTIONS"], include_in_schema=False)
