"""Serving a test's ASGI app over real HTTP: uvicorn on a free port of 127.0.0.1 in a daemon
thread, started and stopped by the test.

    with ServerThread(app) as server:               # or server = ServerThread(app).start() ... .stop()
        httpx.get(server.base_url + "/path")        # http://127.0.0.1:<port>

    class FakeThing(HttpFake):                      # a fake that serves its own app
        def app(self) -> ASGIApp: ...
    with FakeThing() as fake:                       # or: async with FakeThing() as fake
        fake.base_url
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Literal, Self

import uvicorn
from starlette.types import ASGIApp

START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 10.0


class StartStop:
    """``with`` and ``async with`` for an object with ``start()`` (returning itself) and ``stop()``;
    ``async with`` starts and stops it in a worker thread, off the test's event loop."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)


class ServerThread(StartStop):
    """``app`` served by uvicorn on a free port of 127.0.0.1, in a daemon thread. ``start()``
    returns once the server accepts connections; ``stop()`` lets requests in flight finish for
    up to a second, then cancels them."""

    def __init__(self, app: ASGIApp, *, lifespan: Literal["on", "off"] = "off", name: str = "") -> None:
        self.app = app
        self.lifespan: Literal["on", "off"] = lifespan
        self.name = name or "test server"
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` once started, else empty."""
        return f"http://127.0.0.1:{self.port}" if self.port else ""

    def start(self) -> Self:
        # IPPROTO_TCP lets asyncio set TCP_NODELAY on accepted connections (else ~40 ms per
        # keep-alive call).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan=self.lifespan,
            loop="asyncio",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        if self._server and self._thread:
            self._server.should_exit = True
            self._thread.join(timeout=STOP_TIMEOUT_SECONDS)
        self._server = self._thread = None


class HttpFake(StartStop):
    """A fake of a remote service that serves its own ``app()``: ``start()`` serves it in a
    ``ServerThread`` and sets ``base_url`` and ``port`` (both kept after ``stop()``). Subclasses
    that hold requests open (hanging, trickling) end them in ``stop()`` before calling this one."""

    base_url = ""
    port = 0
    server_name = ""
    lifespan: Literal["on", "off"] = "off"
    _http: ServerThread | None = None

    def app(self) -> ASGIApp:
        raise NotImplementedError

    def start(self) -> Self:
        name = self.server_name or type(self).__name__
        self._http = ServerThread(self.app(), lifespan=self.lifespan, name=name).start()
        self.base_url, self.port = self._http.base_url, self._http.port
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.stop()
        self._http = None
