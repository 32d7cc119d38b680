"""Pure ASGI middleware (no per-request task hop, unlike BaseHTTPMiddleware).

``RequestContextMiddleware`` gives every request an id (``X-Request-ID`` in and out), writes
one access-log line and records Prometheus metrics by route template.
``BodySizeLimitMiddleware`` refuses bodies above the configured size with 413, whether or
not the client sent ``Content-Length``; streamed uploads (``STREAMED_UPLOAD_PATHS``) enforce
their own, larger limits while they stream.
"""

import logging
import re
import time
import uuid
from typing import Any

import orjson
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import error_body
from app.core.logging import request_id_var
from app.core.metrics import HTTP_LATENCY, HTTP_REQUESTS

access_log = logging.getLogger("bazaar.access")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Routes that stream their body to storage under a per-plan size limit of their own.
STREAMED_UPLOAD_PATHS = frozenset({"/api/files/upload"})


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            method = scope["method"]
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_LATENCY.labels(method, route).observe(elapsed)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "request",
                    extra={
                        "method": method,
                        "path": scope["path"],
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                    },
                )
            request_id_var.reset(token)


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in STREAMED_UPLOAD_PATHS:
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_too_large(send, self.max_bytes)
            return
        if declared is None and _header(scope, b"transfer-encoding") is None:
            # No body at all (a GET, most likely): nothing to count.
            await self.app(scope, receive, send)
            return
        received = 0
        rejected = False

        async def limited_receive() -> Message:
            nonlocal received, rejected
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes and not rejected:
                    # Answer now: the framework would turn a failing body read into a 400.
                    rejected = True
                    await _send_too_large(send, self.max_bytes)
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            if not rejected:
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not rejected:
                raise


class _BodyTooLarge(Exception):
    pass


async def _send_too_large(send: Send, max_bytes: int) -> None:
    body = orjson.dumps(
        error_body("payload_too_large", f"Request body exceeds {max_bytes} bytes", {"maxBytes": max_bytes})
    )
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            decoded: str = value.decode("latin-1")
            return decoded
    return None


def _route_template(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "<unmatched>"


def answers_its_own_cors(path: str) -> bool:
    """The widget runtime (and its beacon endpoint) is called from end users' websites: it answers
    CORS itself, per widget, from the widget's allowed origins."""
    return path.startswith("/widget/") or (path.startswith("/api/widgets/") and path.endswith("/track-usage"))


class DashboardCORSMiddleware(CORSMiddleware):
    """``CORS_ORIGINS`` is the dashboard's list. Left in front of the widget runtime it would refuse
    every preflight from a customer's website before the route could check the widget's origins."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and answers_its_own_cors(scope["path"]):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
