"""What the browser tests run against: servers on 127.0.0.1 (each its own origin), the host pages
of ``widget/test-pages/`` with the embed snippet filled in, and a stub of the widget runtime API
that speaks the contract ``widget/embed.js`` is written against (session, SSE chat, beacons).

The stub serves the real ``embed.js`` through the real ``app.widgets.assets`` router, so the
script under test is the one the product ships.
"""

from __future__ import annotations

import asyncio
import html
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from app.core.errors import install_error_handlers
from app.widgets.assets import router as assets_router
from tests.fakes import serving

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
PAGES = ROOT / "widget" / "test-pages"
ARTIFACTS = ROOT / "test-artifacts"

requires_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
)


class ServerThread(serving.ServerThread):
    """An ASGI app served by uvicorn on a free port of 127.0.0.1, in a daemon thread; its
    ``origin`` is what a browser calls it."""

    @property
    def origin(self) -> str:
        return self.base_url


# ---- host pages ----------------------------------------------------------------------------------


def snippet(widget_origin: str, widget_key: str, **attributes: str) -> str:
    """The tag an end user pastes: ``data-user-id="..."`` for ``user_id="..."``."""
    extra = "".join(
        f' data-{name.replace("_", "-")}="{html.escape(value)}"' for name, value in attributes.items()
    )
    return (
        f'<script src="{html.escape(widget_origin)}/widget/v1/embed.js" '
        f'data-widget-key="{html.escape(widget_key)}"{extra} async></script>'
    )


def host_pages(widget_origin: Callable[[], str], code: Callable[[], str | None] = lambda: None) -> Starlette:
    """``/<page>.html?key=pk_...&user_id=...``: a page of ``widget/test-pages`` with the snippet
    (every query parameter but ``key`` becomes a ``data-`` attribute); ``?key=`` absent: no
    snippet. When ``code()`` gives one (the snippet the API generated), every page carries it."""

    async def page(request: Request) -> Response:
        path = PAGES / f"{request.path_params['name']}.html"
        if not path.is_file():
            return HTMLResponse("no such page", status_code=404)
        params = dict(request.query_params)
        key = params.pop("key", None)
        tag = code() or (snippet(widget_origin(), key, **params) if key else "")
        return HTMLResponse(path.read_text().replace("{{snippet}}", tag))

    return Starlette(routes=[Route("/{name}.html", page)])


# ---- the stub runtime --------------------------------------------------------------------------

LIVE_KEY = "pk_live_browsertest"
GONE_KEY = "pk_live_unavailable"
WIDGET_ID = "0193a000-0000-7000-8000-00000000b00a"
ANSWER_CHUNKS = [
    "The showroom ",
    "on Quay Street ",
    "opens from nine ",
    "to five, ",
    "Monday to Saturday. ",
    "<b>Welcome!</b>",
]


@dataclass
class Recorded:
    path: str
    origin: str | None
    headers: dict[str, str]
    body: dict[str, Any]
    at: float = field(default_factory=time.time)  # when the stub received it


@dataclass
class StubRuntime:
    """The runtime API of the contract, with knobs for the test to turn."""

    allowed_origins: set[str] = field(default_factory=set)
    appearance: dict[str, Any] = field(
        default_factory=lambda: {
            "primaryColor": "#0f766e",
            "textColor": "#ffffff",
            "position": "bottom-right",
            "title": "Harbour help",
            "greeting": "Hi! Ask me about Harbour Lamps.",
            "avatarUrl": None,
            "launcherText": "Ask Harbour",
        }
    )
    signatures: dict[str, str] = field(default_factory=lambda: {"alice": "sig-alice", "bob": "sig-bob"})
    answer_chunks: list[str] = field(default_factory=lambda: list(ANSWER_CHUNKS))
    chunk_delay_seconds: float = 0.15
    token_ttl_seconds: float = 3600
    quota_exhausted: bool = False
    sessions_unavailable: bool = False  # new sessions answer 503 (the API is down, say)
    sessions: list[Recorded] = field(default_factory=list)
    chats: list[Recorded] = field(default_factory=list)
    beacons: list[Recorded] = field(default_factory=list)
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)  # token -> who it was issued to
    unreadable_401: bool = False

    def revoke_tokens(self, *, readable: bool = True) -> None:
        """Every token stops working: answered with a 401 the browser may read (an expired
        token) or not (one the server cannot even attribute to a widget, so no CORS headers)."""
        self.tokens.clear()
        self.unreadable_401 = not readable

    def beacon_events(self) -> list[dict[str, Any]]:
        return [event for batch in self.beacons for event in batch.body.get("events", [])]

    def kinds(self) -> list[str]:
        return [event["kind"] for event in self.beacon_events()]

    def batches_with_an_expired_token(self) -> list[Recorded]:
        """Beacon batches whose token had expired when they arrived (the real API refuses
        them, and a beacon sent by sendBeacon is not retried: its events would be lost)."""
        return [
            batch
            for batch in self.beacons
            if self.tokens.get(batch.body.get("token", ""), {}).get("expires", 0) <= batch.at
        ]

    # ---- HTTP ----------------------------------------------------------------------------------

    def _cors(self, request: Request, readable: bool = True) -> dict[str, str]:
        # Like the real API: an answer is readable by the page only once its origin is known to
        # be allowed (an unknown key or another site's origin gets a bare refusal).
        origin = request.headers.get("origin")
        if not origin or not readable:
            return {}
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Expose-Headers": "Retry-After",
            "Vary": "Origin",
        }

    def _error(
        self, request: Request, status: int, code: str, message: str, *, readable: bool = True
    ) -> JSONResponse:
        body = {"error": {"code": code, "message": message, "details": {}}}
        return JSONResponse(body, status_code=status, headers=self._cors(request, readable))

    async def _preflight(self, request: Request) -> Response:
        return Response(
            status_code=204,
            headers={
                **self._cors(request),
                "Access-Control-Allow-Methods": "POST",
                "Access-Control-Allow-Headers": "authorization, content-type",
                "Access-Control-Max-Age": "600",
            },
        )

    async def _session(self, request: Request) -> Response:
        body = await request.json()
        origin = request.headers.get("origin")
        self.sessions.append(Recorded(request.url.path, origin, dict(request.headers), body))
        if not origin:
            return self._error(request, 403, "origin_required", "Origin header required")
        key = body.get("widgetKey")
        if key not in (LIVE_KEY, GONE_KEY):
            return self._error(request, 404, "widget_not_found", "No widget has this key", readable=False)
        if origin not in self.allowed_origins:
            message = f"{origin} may not embed this widget"
            return self._error(request, 403, "origin_not_allowed", message, readable=False)
        if key == GONE_KEY:
            return self._error(request, 410, "widget_unavailable", "This widget is no longer available")
        if self.sessions_unavailable:
            return self._error(request, 503, "service_unavailable", "Try again later")
        identity = body.get("identity")
        if identity and self.signatures.get(identity.get("userId")) != identity.get("signature"):
            return self._error(request, 403, "identity_invalid", "The identity signature does not match")
        if identity and not identity.get("exp", 0) > time.time():
            return self._error(request, 403, "identity_expired", "The identity signature has expired")
        visitor = body.get("visitorId") or "v_" + secrets.token_hex(8)
        token = "wst_" + secrets.token_urlsafe(16)
        self.tokens[token] = {
            "visitorId": visitor,
            "userId": identity and identity["userId"],
            "expires": time.time() + self.token_ttl_seconds,
        }
        expires = datetime.now(UTC) + timedelta(seconds=self.token_ttl_seconds)
        used = 100 if self.quota_exhausted else 3
        answer = {
            "token": token,
            "expiresAt": expires.isoformat(),
            "expiresIn": self.token_ttl_seconds,
            "widgetId": WIDGET_ID,
            "visitorId": visitor,
            "appearance": self.appearance,
            "quota": {"limit": 100, "used": used, "remaining": 100 - used},
        }
        return JSONResponse(answer, status_code=201, headers=self._cors(request))

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        self.chats.append(
            Recorded(request.url.path, request.headers.get("origin"), dict(request.headers), body)
        )
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.tokens:
            return self._error(
                request, 401, "session_expired", "The session expired", readable=not self.unreadable_401
            )
        if self.quota_exhausted:
            message = "This assistant has answered its 100 messages for this month. Please come back later."
            return self._error(request, 429, "quota_exceeded", message)
        conversation = body.get("conversationId") or "0193a000-0000-7000-8000-0000000c0001"

        async def events() -> AsyncIterator[bytes]:
            def sse(name: str, data: Any) -> bytes:
                return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

            yield sse("conversation", {"conversationId": conversation, "messageId": "m-question"})
            yield sse("citations", [])
            for chunk in self.answer_chunks:
                await asyncio.sleep(self.chunk_delay_seconds)
                yield sse("delta", {"text": chunk})
            yield sse("usage", {"inputTokens": 120, "outputTokens": 30, "costUsd": "0.000600"})
            yield sse("done", {"messageId": "m-answer"})

        return StreamingResponse(events(), media_type="text/event-stream", headers=self._cors(request))

    async def _track(self, request: Request) -> Response:
        raw = await request.body()
        self.beacons.append(
            Recorded(request.url.path, request.headers.get("origin"), dict(request.headers), json.loads(raw))
        )
        return JSONResponse({"accepted": 1}, status_code=202, headers=self._cors(request))

    def app(self) -> FastAPI:
        application = FastAPI()
        install_error_handlers(application)
        application.include_router(assets_router)
        application.add_api_route("/widget/v1/session", self._session, methods=["POST"])
        application.add_api_route("/widget/v1/chat", self._chat, methods=["POST"])
        application.add_api_route("/api/widgets/{widget_id}/track-usage", self._track, methods=["POST"])
        for path in ("/widget/v1/session", "/widget/v1/chat", "/api/widgets/{widget_id}/track-usage"):
            application.add_api_route(path, self._preflight, methods=["OPTIONS"])
        return application


async def eventually(check: Callable[[], Any], *, timeout: float = 15.0, message: str = "") -> Any:
    """Polls ``check`` until it returns something truthy (servers answer in their own threads)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(message or "condition never became true")
        await asyncio.sleep(0.05)
