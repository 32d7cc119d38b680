"""The API's read-only view of the published warehouse (``docs/data-platform.md``).

The publish step writes ``serve/<version>/warehouse.duckdb`` and flips ``serve/current``; it
never changes a published file. So the API opens each version once, read-only, and gives
every request its own cursor on that one connection (DuckDB cursors are independent
connections to the same database instance, safe to use from different threads). When
``current`` points somewhere new, the next request opens the new version; the old one is
closed when its last in-flight request releases it, so a publish never fails a request and a
request never holds up a publish (the publisher only writes new folders and deletes old ones;
an open file stays readable after its folder is deleted).

``build/`` is never opened here: dbt holds DuckDB's write lock on it while it builds.
"""

import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import anyio
import anyio.to_thread
import duckdb

from app.core.warehouse_layout import WarehouseLayout

logger = logging.getLogger("bazaar.warehouse")

T = TypeVar("T")


@dataclass(frozen=True)
class ServedMeta:
    """What a published version says about itself (``marts.serve_meta``)."""

    version: str
    published_at: datetime | None
    as_of: datetime | None


class ServedVersion:
    """One published version: its read-only connection and the requests using it."""

    def __init__(self, version: str, connection: duckdb.DuckDBPyConnection, meta: ServedMeta) -> None:
        self.version = version
        self.meta = meta
        self._connection = connection
        self.in_flight = 0
        self.superseded = False
        self.closed = False

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self._connection.cursor()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._connection.close()

    async def run(self, query: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """Run ``query`` with a fresh cursor in a worker thread (DuckDB calls block)."""

        def with_cursor() -> T:
            cursor = self.cursor()
            try:
                return query(cursor)
            finally:
                cursor.close()

        # Not cancellable: the lease is released only after the thread has finished with the
        # cursor, so the connection is never closed under a running query.
        return await anyio.to_thread.run_sync(with_cursor)


def _utc(value: object) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _read_meta(version: str, connection: duckdb.DuckDBPyConnection) -> ServedMeta:
    cursor = connection.cursor()
    try:
        row = cursor.execute("SELECT published_at, as_of FROM marts.serve_meta LIMIT 1").fetchone()
    except duckdb.Error:
        logger.warning("served version %s has no readable marts.serve_meta", version, exc_info=True)
        row = None
    finally:
        cursor.close()
    if row is None:
        return ServedMeta(version=version, published_at=None, as_of=None)
    return ServedMeta(version=version, published_at=_utc(row[0]), as_of=_utc(row[1]))


class WarehouseReader:
    """Hands out leases on the currently published version, swapping when a new one appears."""

    def __init__(self, layout: WarehouseLayout) -> None:
        self.layout = layout
        self._lock = threading.Lock()
        self._current: ServedVersion | None = None
        self._opening = threading.Lock()  # one thread opens a new version; others wait for it

    @property
    def current(self) -> ServedVersion | None:
        return self._current

    def _take(self, version: str | None) -> ServedVersion | None:
        """Lease the held version if it is ``version``. With no readable ``current`` link
        (``None``: it is replaced atomically, so only a half-deleted tree does that) keep
        serving what we hold rather than fail."""
        with self._lock:
            current = self._current
            if current is None or (version is not None and current.version != version):
                return None
            current.in_flight += 1
            return current

    def _acquire_blocking(self, version: str) -> ServedVersion | None:
        """Open ``version`` (in a worker thread) and make it current."""
        with self._opening:
            # Another request may have opened it (or a newer one) while this one waited.
            version = self.layout.current_version() or version
            leased = self._take(version)
            if leased is not None:
                return leased
            try:
                connection = duckdb.connect(str(self.layout.served_file(version)), read_only=True)
            except (duckdb.Error, OSError):
                # Deleted between readlink and open (two publishes in a row): keep the old one.
                logger.warning("could not open served version %s", version, exc_info=True)
                with self._lock:
                    if self._current is None:
                        return None
                    self._current.in_flight += 1
                    return self._current
            served = ServedVersion(version, connection, _read_meta(version, connection))
            with self._lock:
                old, self._current = self._current, served
                served.in_flight += 1
                if old is not None:
                    old.superseded = True
                    close_old = old.in_flight == 0
                else:
                    close_old = False
            if old is not None and close_old:
                old.close()
            logger.info("serving warehouse version %s", version)
            return served

    async def acquire(self) -> ServedVersion | None:
        """A lease on the current version (``None`` before the first publish). Pair with
        :meth:`release`, or use :meth:`lease`."""
        # readlink + stat: cheap enough for the event loop; only opening goes to a thread.
        version = self.layout.current_version()
        leased = self._take(version)
        if leased is not None or version is None:
            return leased
        return await anyio.to_thread.run_sync(self._acquire_blocking, version)

    def release(self, served: ServedVersion) -> None:
        with self._lock:
            served.in_flight -= 1
            close = served.superseded and served.in_flight == 0
        if close:
            served.close()
            logger.info("closed superseded warehouse version %s", served.version)

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[ServedVersion | None]:
        # Shielded: a request cancelled while the version opens must still release its lease,
        # or the superseded version would never be closed.
        with anyio.CancelScope(shield=True):
            served = await self.acquire()
        try:
            yield served
        finally:
            if served is not None:
                self.release(served)

    def close(self) -> None:
        """At shutdown: close the current version (superseded ones close on their release)."""
        with self._lock:
            current, self._current = self._current, None
            if current is not None:
                current.superseded = True
                close = current.in_flight == 0
            else:
                close = False
        if current is not None and close:
            current.close()
