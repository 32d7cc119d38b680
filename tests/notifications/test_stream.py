"""The realtime stream as its users meet it: a notification created elsewhere (the worker, here the
test process through ``service.deliver``) reaches the recipient's open stream, in whichever API
process it is connected to, and nobody else's; a reconnecting client gets what it missed exactly
once; the stream ends when the session does, when the client cannot keep up and when the server
stops."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import orjson
import pytest
import uvicorn
from fastapi import FastAPI

from app.core.config import Settings
from app.core.db import commit, sessionmaker
from app.notifications.realtime import broker
from app.notifications.service import Draft, deliver
from tests.factories import PASSWORD, Account, create_user, signed_in

READ_SECONDS = 15.0  # a failing test must not hang CI
START_SECONDS = 60.0
ROOT = Path(__file__).resolve().parents[2]
STREAM = "/api/notifications/stream"


@dataclass
class Sse:
    event: str  # "comment" for a comment line
    id: str | None
    data: Any


class SseReader:
    """The events of a streamed response, as a browser's EventSource parses them, one at a time
    and never waiting longer than ``READ_SECONDS``."""

    def __init__(self, response: httpx.Response) -> None:
        assert response.status_code == 200, response.status_code
        assert response.headers["content-type"].startswith("text/event-stream")
        self._lines = response.aiter_lines()

    async def next(self, *, comments: bool = False) -> Sse | None:
        """The next event (or comment), ``None`` once the server has ended the stream."""
        async with asyncio.timeout(READ_SECONDS):
            event, event_id, data = "message", None, []
            async for line in self._lines:
                if line.startswith(":"):
                    if comments:
                        return Sse("comment", None, line[1:].strip())
                elif not line:
                    if data:
                        return Sse(event, event_id, orjson.loads("\n".join(data)))
                elif line.startswith("event:"):
                    event = line.removeprefix("event:").strip()
                elif line.startswith("id:"):
                    event_id = line.removeprefix("id:").strip()
                elif line.startswith("data:"):
                    data.append(line.removeprefix("data:").removeprefix(" "))
            return None

    async def notification(self) -> dict[str, Any]:
        """The next event, which must be a notification whose id is the event's id."""
        sse = await self.next()
        assert sse is not None, "the stream ended"
        assert sse.event == "notification", sse
        assert sse.id == sse.data["id"]
        return dict(sse.data)

    async def end(self) -> dict[str, Any]:
        """The stream's final ``end`` event; the stream closes after it."""
        sse = await self.next()
        assert sse is not None, "the stream closed without an end event"
        assert sse.event == "end", sse
        assert await self.next() is None
        return dict(sse.data)


@asynccontextmanager
async def stream(
    http: httpx.AsyncClient, account: Account | None, *, params: dict[str, str] | None = None, **headers: str
) -> AsyncIterator[SseReader]:
    """``account``'s stream, open and subscribed (the server's first comment has arrived)."""
    all_headers = {**(account.headers if account else {}), **headers}
    async with asyncio.timeout(READ_SECONDS):
        request = http.build_request("GET", STREAM, headers=all_headers, params=params)
        response = await http.send(request, stream=True)
    try:
        reader = SseReader(response)
        first = await reader.next(comments=True)
        assert first == Sse("comment", None, "connected"), first
        yield reader
    finally:
        await response.aclose()


async def notify(user_id: UUID, *titles: str) -> list[str]:
    """Notifications for ``user_id`` created as the worker creates them (``deliver``, then
    commit); their ids."""
    drafts = [
        Draft(user_id=user_id, type="announcement", variables={"title": t, "message": t}, email=False)
        for t in titles
    ]
    async with sessionmaker()() as db:
        delivered = await deliver(db, drafts)
        await commit(db)
    return [str(n.id) for n in delivered.notifications]


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The running test app behind real HTTP in this event loop (the ASGI transport of httpx
    buffers a response whole, so it cannot read a stream that never ends)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(
            app, lifespan="off", log_level="critical", access_log=False, timeout_graceful_shutdown=1
        )
    )
    # _serve, not serve: that one would take over the test process's signal handlers.
    task = asyncio.create_task(server._serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=10
        ) as http:
            yield http
    finally:
        server.should_exit = True
        await task


# --- real API processes ------------------------------------------------------------------------


@dataclass
class ApiProcess:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _api_env(settings: Settings, var_dir: Path) -> dict[str, str]:
    """The test app's database, Redis (or none) and secrets, for ``bazaar serve``."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "REDIS_PREFIX"}}
    assert settings.database_url is not None
    assert settings.jwt_secret is not None
    assert settings.encryption_key is not None
    env.update(
        ENVIRONMENT="test",
        DATABASE_URL=settings.database_url,
        DATABASE_POOL_SIZE="2",
        DATABASE_MAX_OVERFLOW="2",
        REDIS_PREFIX=settings.redis_prefix,
        JWT_SECRET=settings.jwt_secret.get_secret_value(),
        ENCRYPTION_KEY=settings.encryption_key.get_secret_value(),
        VAR_DIR=str(var_dir),
        WAREHOUSE_DIR=str(var_dir.parent / "warehouse"),
        LOG_LEVEL="WARNING",
    )
    if settings.redis_url is not None:
        env["REDIS_URL"] = settings.redis_url
    return env


@contextmanager
def api_processes(settings: Settings, tmp_path: Path, count: int) -> Iterator[list[ApiProcess]]:
    """``count`` ``bazaar serve`` processes on the test database (started together); each is
    stopped with SIGTERM at the end, killed if it does not stop."""
    started: list[ApiProcess] = []
    try:
        for n in range(count):
            port = _free_port()
            log = tmp_path / f"api{n}.log"
            env = _api_env(settings, tmp_path / f"var{n}")
            process = subprocess.Popen(
                [sys.executable, "-m", "app", "serve", "--port", str(port)],
                cwd=ROOT,
                env=env,
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
            )
            started.append(ApiProcess(process, f"http://127.0.0.1:{port}", log))
        yield started
    finally:
        for api in started:
            if api.process.poll() is None:
                api.process.send_signal(signal.SIGTERM)
                try:
                    api.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    api.process.kill()
                    api.process.wait(timeout=5)


async def wait_ready(api: ApiProcess) -> None:
    async with httpx.AsyncClient(timeout=2) as http:
        async with asyncio.timeout(START_SECONDS):
            while True:
                assert api.process.poll() is None, f"bazaar serve exited:\n{api.tail()}"
                try:
                    if (await http.get(api.url + "/healthz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)


async def signed_in_at(http: httpx.AsyncClient, persona: str = "builder") -> Account:
    user = await create_user(persona)
    response = await http.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return Account(id=user.id, email=user.email, persona=persona, access_token=response.json()["accessToken"])


async def test_two_api_processes_stream_each_user_their_own_notifications_through_redis(
    app: FastAPI, settings: Settings, tmp_path: Path
) -> None:
    if settings.redis_url is None:
        pytest.skip("needs Redis")
    with api_processes(settings, tmp_path, 2) as (first, second):
        await asyncio.gather(wait_ready(first), wait_ready(second))
        async with (
            httpx.AsyncClient(base_url=first.url) as one,
            httpx.AsyncClient(base_url=second.url) as two,
        ):
            ada = await signed_in_at(one)
            bob = await signed_in_at(two)
            async with stream(one, ada) as ada_stream, stream(two, bob) as bob_stream:
                [for_ada] = await notify(ada.id, "Your listing is live")

                received = await ada_stream.notification()
                assert received["id"] == for_ada
                assert (received["userId"], received["title"]) == (str(ada.id), "Your listing is live")
                assert received["read"] is False

                # Bob's stream, in the other process, got nothing of Ada's: the next thing on it
                # is his own notification.
                [for_bob] = await notify(bob.id, "New sale")
                assert (await bob_stream.notification())["id"] == for_bob
                [again_for_ada] = await notify(ada.id, "Payout sent")
                assert (await ada_stream.notification())["id"] == again_for_ada

            # Ada comes back on the other process with the last id she saw: what she missed
            # first, once, then live.
            missed = await notify(ada.id, "Missed 1", "Missed 2")
            async with stream(two, ada, **{"Last-Event-ID": again_for_ada}) as ada_stream:
                assert [(await ada_stream.notification())["id"] for _ in missed] == missed
                [live] = await notify(ada.id, "Live again")
                assert (await ada_stream.notification())["id"] == live

                # The server stopping ends the stream at once (uvicorn would otherwise wait for it
                # forever before its lifespan shutdown), and the process shuts down cleanly.
                second.process.send_signal(signal.SIGTERM)
                assert (await ada_stream.end())["code"] == "shutting_down"
            # uvicorn re-raises the signal once it has shut down cleanly.
            assert await asyncio.to_thread(second.process.wait, 15) == -signal.SIGTERM, second.tail()
            assert "Application shutdown complete." in second.tail()


@pytest.mark.parametrize("settings_changes", [{"redis_url": None}])
async def test_without_redis_postgres_notify_carries_notifications_to_another_process(
    app: FastAPI, settings: Settings, tmp_path: Path
) -> None:
    # The embedded mode: `make run` runs the worker and the API as separate processes, no Redis.
    with api_processes(settings, tmp_path, 1) as (api,):
        await wait_ready(api)
        async with httpx.AsyncClient(base_url=api.url) as http:
            ada = await signed_in_at(http)
            bob = await signed_in_at(http)
            async with stream(http, ada) as ada_stream, stream(http, bob) as bob_stream:
                [for_ada] = await notify(ada.id, "Welcome")
                received = await ada_stream.notification()
                assert (received["id"], received["userId"], received["title"]) == (
                    for_ada,
                    str(ada.id),
                    "Welcome",
                )

                [for_bob] = await notify(bob.id, "Hello Bob")
                assert (await bob_stream.notification())["id"] == for_bob

            # A broadcast-sized batch: more pairs than one NOTIFY payload holds.
            many = await notify(ada.id, *(f"Announcement {n}" for n in range(150)))
            async with stream(http, ada, **{"Last-Event-ID": for_ada}) as ada_stream:
                assert [(await ada_stream.notification())["id"] for _ in many] == many
                more = await notify(ada.id, *(f"Live {n}" for n in range(150)))
                assert [(await ada_stream.notification())["id"] for _ in more] == more


# --- one process, served in the test's event loop ------------------------------------------------


async def test_the_stream_needs_the_bearer_header(client: httpx.AsyncClient) -> None:
    ada = await signed_in(client)

    assert (await client.get(STREAM)).status_code == 401
    assert (await client.get(STREAM, params={"access_token": ada.access_token})).status_code == 401
    wrong = await client.get(STREAM, headers={"Authorization": f"Token {ada.access_token}"})
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "invalid_token")
    bad_id = await client.get(STREAM, headers={**ada.headers, "Last-Event-ID": "not-an-id"})
    assert (bad_id.status_code, bad_id.json()["error"]["code"]) == (422, "invalid_last_event_id")


async def test_a_user_cannot_subscribe_to_another_users_notifications(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    ada = await signed_in(client)
    bob = await signed_in(client)
    [bobs_first] = await notify(bob.id, "Bob's secret")
    [adas_first] = await notify(ada.id, "Ada's")

    async with served(app) as http:
        # Bob's id as a parameter, and Bob's notification as the replay point: Ada still gets
        # her own notifications only.
        async with stream(
            http, ada, params={"userId": str(bob.id)}, **{"Last-Event-ID": bobs_first}
        ) as ada_stream:
            assert (await ada_stream.notification())["id"] == adas_first
            await notify(bob.id, "Bob's second secret")
            [adas_second] = await notify(ada.id, "Ada's second")
            assert (await ada_stream.notification())["id"] == adas_second


async def test_replay_and_live_never_send_a_notification_twice(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    ada = await signed_in(client)
    [seen] = await notify(ada.id, "Seen")
    # A notification committed whose live announcement is still on its way (after-commit
    # callbacks not run yet) when Ada reconnects: the replay has it, then the live copy arrives.
    async with sessionmaker()() as db:
        delivered = await deliver(
            db,
            [
                Draft(
                    user_id=ada.id, type="announcement", variables={"title": "t", "message": "m"}, email=False
                )
            ],
        )
        await db.commit()
        late = str(delivered.notifications[0].id)
        announcing = db.info.pop("after_commit", [])

    async with served(app) as http, stream(http, ada, params={"lastEventId": seen}) as ada_stream:
        assert (await ada_stream.notification())["id"] == late
        for callback in announcing:
            await callback()
        [after] = await notify(ada.id, "After")
        assert (await ada_stream.notification())["id"] == after


@pytest.mark.parametrize("settings_changes", [{"notification_stream_heartbeat_seconds": 0.2}])
async def test_a_logged_out_users_stream_ends_at_the_next_heartbeat(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    ada = await signed_in(client)
    async with served(app) as http, stream(http, ada) as ada_stream:
        assert await ada_stream.next(comments=True) == Sse("comment", None, "heartbeat")
        logout = await client.post("/api/auth/logout", headers=ada.headers)
        assert logout.status_code == 204, logout.text
        while (sse := await ada_stream.next(comments=True)) == Sse("comment", None, "heartbeat"):
            pass
        assert sse is not None
        assert (sse.event, sse.data["code"]) == ("end", "session_revoked")
        assert await ada_stream.next() is None


@pytest.mark.parametrize("settings_changes", [{"notification_stream_buffer": 3}])
async def test_a_client_that_cannot_keep_up_is_ended_and_resumes_from_its_last_id(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    ada = await signed_in(client)
    async with served(app) as http:
        async with stream(http, ada) as ada_stream:
            burst = await notify(ada.id, *(f"Burst {n}" for n in range(10)))
            # More than the stream may hold for it at once: it ends rather than buffering.
            assert (await ada_stream.end())["code"] == "too_slow"
        async with stream(http, ada, **{"Last-Event-ID": burst[0]}) as ada_stream:
            assert [(await ada_stream.notification())["id"] for _ in burst[1:]] == burst[1:]


@pytest.mark.parametrize("settings_changes", [{"cors_origins": ["http://dashboard.example"]}])
async def test_the_dashboard_reads_the_stream_through_cors(app: FastAPI, client: httpx.AsyncClient) -> None:
    ada = await signed_in(client)
    async with served(app) as http, stream(http, ada, Origin="http://dashboard.example") as ada_stream:
        [sent] = await notify(ada.id, "Through CORS")
        assert (await ada_stream.notification())["id"] == sent


async def test_stopping_the_app_ends_open_streams(app: FastAPI, client: httpx.AsyncClient) -> None:
    ada = await signed_in(client)
    async with served(app) as http, stream(http, ada) as ada_stream:
        await broker.close()  # what the lifespan's shutdown does first

        assert (await ada_stream.end())["code"] == "shutting_down"
        refused = await http.get(STREAM, headers=ada.headers)
        assert (refused.status_code, refused.json()["error"]["code"]) == (503, "shutting_down")
