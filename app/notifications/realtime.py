"""Realtime delivery of new notifications to signed-in users (the SSE stream of ``stream.py``).

Publishing: ``announce`` is called in the transaction that creates notifications; they reach the
streams only once that transaction commits, in whichever process created them (an API request,
the worker's event dispatcher, a broadcast batch).

* With ``REDIS_URL``: an ``after_commit`` callback PUBLISHes the batch (one message, the
  notifications' JSON) on ``<REDIS_PREFIX>notifications``. A broadcast batch of 1,000 users is
  one message, not 1,000.
* Without (the embedded default): ``pg_notify`` in the transaction. Postgres delivers it to every
  listening connection when the transaction commits and drops it on rollback, so it needs no
  callback. A payload must stay under 8,000 bytes: it carries ``[userId, id]`` pairs only, in as
  many NOTIFYs as needed (one statement), and the listening process loads the rows its streams
  want. An in-process hub would not do: ``make run`` runs the API and the worker (which creates
  most notifications) as separate processes.

Subscribing: each API process holds ONE listener, started with its first stream: a Redis
pub/sub connection, or a psycopg connection in autocommit that LISTENs. It fans out in memory
to the per-user ``Subscription``s. A subscription buffers at most ``NOTIFICATION_STREAM_BUFFER``
notifications: a client too slow to take them is ended (``too_slow``) instead of growing the
process's memory, and resumes from its ``Last-Event-ID``. When the listener loses its connection,
every stream of the process is ended (``resync``) for the same reason: what was published
meanwhile is in the database, and the reconnecting clients replay it.

With Redis, NOTIFY is not used: a notifying commit takes a database-wide lock in Postgres (commits
that notify are serialised), which is fine for one machine but not what several API processes
and workers should share.
"""

import asyncio
import contextlib
import logging
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from types import FrameType
from typing import Any
from uuid import UUID

import orjson
import psycopg
import redis.asyncio as aioredis
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.db import after_commit, sessionmaker
from app.core.errors import ServiceUnavailable
from app.core.runtime import runtime
from app.models import Notification
from app.notifications.schemas import notification_json
from app.worker.queue import libpq_url

logger = logging.getLogger("bazaar.notifications.realtime")

REDIS_CHANNEL = "notifications"  # under REDIS_PREFIX
POSTGRES_CHANNEL = "bazaar_notifications"
# Postgres refuses a NOTIFY payload of 8,000 bytes or more.
POSTGRES_PAYLOAD_MAX_BYTES = 7900
# A stream waits this long for its process's listener to be up before answering 503.
LISTENER_READY_SECONDS = 5.0
LISTENER_RETRY_SECONDS = 1.0

# Why a stream was ended by the server (the final ``end`` event's ``code``).
END_TOO_SLOW = "too_slow"
END_RESYNC = "resync"
END_SHUTTING_DOWN = "shutting_down"
END_MESSAGES = {
    END_TOO_SLOW: "The client did not keep up; reconnect with Last-Event-ID",
    END_RESYNC: "The server lost its notification feed; reconnect with Last-Event-ID",
    END_SHUTTING_DOWN: "The server is shutting down; reconnect with Last-Event-ID",
}


class Subscription:
    """One stream's queue: the notifications of one user, as the listener hands them over."""

    def __init__(self, user_id: UUID, limit: int) -> None:
        self.user_id = user_id
        self.key = str(user_id)
        self.ended: str | None = None
        self._limit = limit
        self._pending: deque[dict[str, Any]] = deque()
        self._ready = asyncio.Event()

    def push(self, notification: dict[str, Any]) -> None:
        if self.ended is not None:
            return
        if len(self._pending) >= self._limit:
            self.end(END_TOO_SLOW)
            return
        self._pending.append(notification)
        self._ready.set()

    def end(self, reason: str) -> None:
        """Stop the stream: what is pending is dropped, the client replays it when it comes back."""
        if self.ended is None:
            self.ended = reason
            self._pending.clear()
            self._ready.set()

    async def next_batch(self, timeout: float) -> list[dict[str, Any]]:
        """What arrived since the last call, waiting up to ``timeout`` seconds for something;
        empty on timeout or once ended."""
        if not self._pending and self.ended is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._ready.wait()
        self._ready.clear()
        batch = list(self._pending)
        self._pending.clear()
        return batch


class Hub:
    """The process's subscriptions by user id (as the JSON spells it)."""

    def __init__(self) -> None:
        self._by_user: dict[str, set[Subscription]] = {}

    def add(self, subscription: Subscription) -> None:
        self._by_user.setdefault(subscription.key, set()).add(subscription)

    def remove(self, subscription: Subscription) -> None:
        subs = self._by_user.get(subscription.key)
        if subs is not None:
            subs.discard(subscription)
            if not subs:
                del self._by_user[subscription.key]

    def wants(self, user_id: str) -> bool:
        return user_id in self._by_user

    def dispatch(self, notifications: Iterable[dict[str, Any]]) -> None:
        for notification in notifications:
            for subscription in tuple(self._by_user.get(notification.get("userId", ""), ())):
                subscription.push(notification)
                if subscription.ended is not None:
                    self.remove(subscription)

    def end_all(self, reason: str) -> None:
        for subs in self._by_user.values():
            for subscription in subs:
                subscription.end(reason)
        self._by_user.clear()


class RealtimeBroker:
    """The process's publisher and (in an API process) its one listener; started and closed with
    the app's lifespan and the worker."""

    def __init__(self) -> None:
        self.hub = Hub()
        self._settings: Settings | None = None
        self._publisher: aioredis.Redis | None = None
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._closing = False
        self._hooked_signals: list[tuple[int, Any, Callable[[int, FrameType | None], None]]] = []

    async def start(self, settings: Settings, *, serves_streams: bool = False) -> None:
        """``serves_streams``: this process answers ``/api/notifications/stream`` (the API)."""
        self._settings = settings
        self.hub = Hub()
        self._listening = asyncio.Event()
        self._closing = False
        if settings.redis_url is not None:
            self._publisher = aioredis.Redis.from_url(
                settings.redis_url, socket_timeout=5, socket_connect_timeout=5
            )
        if serves_streams:
            self._end_streams_on_shutdown_signal()

    async def close(self) -> None:
        self._closing = True
        self.hub.end_all(END_SHUTTING_DOWN)
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        self._listener = None
        if self._publisher is not None:
            await self._publisher.aclose()
        self._publisher = None
        for sig, previous, ours in self._hooked_signals:
            if signal.getsignal(sig) is ours:
                signal.signal(sig, previous)
        self._hooked_signals = []
        self._settings = None

    @property
    def settings(self) -> Settings:
        # A process that did not start the broker (a CLI command) still announces correctly.
        return self._settings if self._settings is not None else runtime().settings

    # --- publishing ----------------------------------------------------------------------------

    async def publish(self, message: bytes) -> None:
        """PUBLISH ``message`` (after a commit). A failure is logged, not raised: the notifications
        are committed and in the inbox; only the live push is lost."""
        settings = self.settings
        assert settings.redis_url is not None
        client = self._publisher or aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=5)
        try:
            await client.publish(settings.redis_prefix + REDIS_CHANNEL, message)
        except Exception:
            logger.warning("could not publish new notifications to the streams", exc_info=True)
        finally:
            if client is not self._publisher:
                await client.aclose()

    # --- subscribing ---------------------------------------------------------------------------

    async def subscribe(self, user_id: UUID) -> Subscription:
        """A subscription to ``user_id``'s new notifications, live from when this returns."""
        if self._closing:
            raise ServiceUnavailable("The server is shutting down", code="shutting_down")
        settings = self.settings
        if self._listener is None or self._listener.done():
            listen = self._listen_redis if settings.redis_url is not None else self._listen_postgres
            self._listener = asyncio.create_task(listen(settings), name="notification-listener")
        try:
            async with asyncio.timeout(LISTENER_READY_SECONDS):
                await self._listening.wait()
        except TimeoutError:
            raise ServiceUnavailable(
                "Realtime notifications are unavailable", code="realtime_unavailable"
            ) from None
        subscription = Subscription(user_id, settings.notification_stream_buffer)
        self.hub.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self.hub.remove(subscription)

    def _up(self) -> None:
        self._listening.set()

    def _down(self) -> None:
        self._listening.clear()
        # Whatever was published while the connection was down never reaches these streams.
        self.hub.end_all(END_RESYNC)

    async def _listen_redis(self, settings: Settings) -> None:
        assert settings.redis_url is not None
        # No read timeout: the connection is idle most of the time.
        client = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=2)
        try:
            while True:
                try:
                    async with client.pubsub() as pubsub:
                        await pubsub.subscribe(settings.redis_prefix + REDIS_CHANNEL)
                        async for message in pubsub.listen():
                            kind = message.get("type")
                            if kind == "subscribe":
                                # Confirmed: anything published from now on reaches this process.
                                self._up()
                            elif kind == "message":
                                self._dispatch_redis(message["data"])
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.warning("notification listener lost Redis; retrying", exc_info=True)
                    self._down()
                    await asyncio.sleep(LISTENER_RETRY_SECONDS)
        finally:
            self._listening.clear()
            await client.aclose()

    def _dispatch_redis(self, data: bytes | str) -> None:
        try:
            notifications = orjson.loads(data)
        except orjson.JSONDecodeError:
            notifications = None
        if not isinstance(notifications, list) or not all(isinstance(n, dict) for n in notifications):
            logger.warning("ignored a malformed notification message")
            return
        self.hub.dispatch(notifications)

    async def _listen_postgres(self, settings: Settings) -> None:
        assert settings.database_url is not None
        try:
            while True:
                try:
                    async with await psycopg.AsyncConnection.connect(
                        libpq_url(settings.database_url), autocommit=True
                    ) as conn:
                        await conn.execute(f"LISTEN {POSTGRES_CHANNEL}")
                        self._up()
                        async for notify in conn.notifies():
                            await self._dispatch_postgres(notify.payload)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.warning("notification listener lost Postgres; retrying", exc_info=True)
                    self._down()
                    await asyncio.sleep(LISTENER_RETRY_SECONDS)
        finally:
            self._listening.clear()

    async def _dispatch_postgres(self, payload: str) -> None:
        try:
            pairs = orjson.loads(payload)
        except orjson.JSONDecodeError:
            logger.warning("ignored a malformed notification payload")
            return
        wanted = [UUID(notification_id) for user_id, notification_id in pairs if self.hub.wants(user_id)]
        if wanted:
            # NOTIFY is delivered after the commit: the rows are visible.
            self.hub.dispatch(await load_notifications(wanted))

    # --- shutdown ------------------------------------------------------------------------------

    def _end_streams_on_shutdown_signal(self) -> None:
        """uvicorn waits for open responses to finish before it runs the lifespan's shutdown, and
        a stream never finishes by itself: the signal that stops the server ends the streams
        (each sends a final ``end`` event), then the server's own handler runs."""
        if threading.current_thread() is not threading.main_thread():
            return  # no signals off the main thread (a test's server thread)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)
            if not callable(previous) or previous is signal.default_int_handler:
                continue  # no server catching it: the process just stops

            def ours(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
                loop.call_soon_threadsafe(self._shutting_down)
                previous(signum, frame)

            signal.signal(sig, ours)
            self._hooked_signals.append((sig, previous, ours))

    def _shutting_down(self) -> None:
        self._closing = True
        self.hub.end_all(END_SHUTTING_DOWN)


broker = RealtimeBroker()


async def announce(db: AsyncSession, notifications: Sequence[dict[str, Any]]) -> None:
    """Publish ``notifications`` (``notification_json`` dicts) once ``db`` commits."""
    if not notifications:
        return
    if broker.settings.redis_url is not None:
        message = orjson.dumps(list(notifications))
        after_commit(db, lambda: broker.publish(message))
        return
    payloads = postgres_payloads([(n["userId"], n["id"]) for n in notifications])
    await db.execute(
        text("SELECT pg_notify(:channel, payload) FROM unnest(CAST(:payloads AS text[])) AS payload"),
        {"channel": POSTGRES_CHANNEL, "payloads": payloads},
    )


def postgres_payloads(pairs: Sequence[tuple[str, str]]) -> list[str]:
    """``[[userId, id], ...]`` JSON arrays, each under Postgres's NOTIFY payload limit."""
    payloads: list[str] = []
    chunk: list[bytes] = []
    size = 2
    for user_id, notification_id in pairs:
        item = orjson.dumps([user_id, notification_id])
        if chunk and size + len(item) + 1 > POSTGRES_PAYLOAD_MAX_BYTES:
            payloads.append("[" + b",".join(chunk).decode() + "]")
            chunk, size = [], 2
        chunk.append(item)
        size += len(item) + 1
    if chunk:
        payloads.append("[" + b",".join(chunk).decode() + "]")
    return payloads


async def load_notifications(ids: Sequence[UUID]) -> list[dict[str, Any]]:
    """The notifications ``ids`` as JSON, oldest first."""
    async with sessionmaker()() as db:
        rows = await db.scalars(
            select(Notification).where(Notification.id.in_(ids)).order_by(Notification.id)
        )
        return [notification_json(n) for n in rows]


async def notifications_after(user_id: UUID, after: UUID, limit: int) -> list[dict[str, Any]]:
    """The user's notifications created after ``after`` (ids are UUIDv7: they sort by creation
    time), oldest first; the stream's replay pages through them."""
    async with sessionmaker()() as db:
        rows = await db.scalars(
            select(Notification)
            .where(Notification.user_id == user_id, Notification.id > after)
            .order_by(Notification.id)
            .limit(limit)
        )
        return [notification_json(n) for n in rows]
