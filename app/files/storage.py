"""Where the bytes of knowledge files live: a local folder or an S3-compatible bucket.

Both backends take a file as a stream of chunks and never hold it whole: ``open_writer`` gives
a writer that is either ``commit``ted (the object appears at once, complete) or ``abort``ed
(nothing is left behind). The choice is ``settings.file_storage``.
"""

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

import anyio
import obstore
from obstore.store import S3Store

from app.core.config import Settings

READ_CHUNK_BYTES = 256 * 1024
# Local writes are batched so a stream of small chunks costs few thread hops.
_LOCAL_FLUSH_BYTES = 1024 * 1024
# S3 parts are uploaded once this much is buffered (5 MiB is S3's smallest multipart part).
_S3_PART_BYTES = 5 * 1024 * 1024


class StorageError(Exception):
    """The storage backend failed (disk full, bucket unreachable)."""


class ObjectWriter(Protocol):
    async def write(self, data: bytes) -> None: ...

    async def commit(self) -> None:
        """Make the object visible under its key, complete."""

    async def abort(self) -> None:
        """Drop everything written so far; no object remains."""


class FileStorage(Protocol):
    name: str

    async def open_writer(self, key: str) -> ObjectWriter: ...

    def read(self, key: str) -> AsyncIterator[bytes]:
        """The object's bytes, in chunks."""

    async def read_all(self, key: str) -> bytes: ...

    async def delete(self, key: str) -> None:
        """Remove the object; a missing object is not an error."""


class _LocalWriter:
    def __init__(self, final: Path, partial: Path) -> None:
        self._final = final
        self._partial = partial
        self._file = partial.open("wb")
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    async def write(self, data: bytes) -> None:
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes >= _LOCAL_FLUSH_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        batch, self._pending, self._pending_bytes = b"".join(self._pending), [], 0
        if batch:
            await anyio.to_thread.run_sync(self._file.write, batch)

    async def commit(self) -> None:
        await self._flush()

        def finish() -> None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._partial, self._final)  # atomic: readers never see half a file

        await anyio.to_thread.run_sync(finish)

    async def abort(self) -> None:
        self._pending = []
        self._file.close()
        self._partial.unlink(missing_ok=True)


class LocalStorage:
    """Files under ``root``; a write goes to ``root/.partial/`` and is renamed into place."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise StorageError(f"invalid key {key!r}")
        return path

    async def open_writer(self, key: str) -> ObjectWriter:
        final = self._path(key)
        partial_dir = self.root / ".partial"
        partial_dir.mkdir(parents=True, exist_ok=True)
        return _LocalWriter(final, partial_dir / uuid.uuid4().hex)

    async def read(self, key: str) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            handle = await anyio.to_thread.run_sync(path.open, "rb")
        except FileNotFoundError as exc:
            raise StorageError(f"object {key} is missing") from exc
        try:
            while chunk := await anyio.to_thread.run_sync(handle.read, READ_CHUNK_BYTES):
                yield chunk
        finally:
            handle.close()

    async def read_all(self, key: str) -> bytes:
        try:
            return await anyio.to_thread.run_sync(self._path(key).read_bytes)
        except FileNotFoundError as exc:
            raise StorageError(f"object {key} is missing") from exc

    async def delete(self, key: str) -> None:
        path = self._path(key)
        await anyio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))


class _S3Writer:
    def __init__(self, store: S3Store, key: str) -> None:
        self._store = store
        self._key = key
        self._file = obstore.open_writer_async(store, key, buffer_size=_S3_PART_BYTES)

    async def write(self, data: bytes) -> None:
        try:
            await self._file.write(data)
        except Exception as exc:
            raise StorageError(f"writing {self._key} failed: {exc}") from exc

    async def commit(self) -> None:
        try:
            await self._file.close()
        except Exception as exc:
            raise StorageError(f"writing {self._key} failed: {exc}") from exc

    async def abort(self) -> None:
        # obstore has no abort: completing the (possibly multipart) upload and deleting the
        # object is the way to leave neither a partial object nor a dangling multipart upload.
        with contextlib.suppress(Exception):
            await self._file.close()
        with contextlib.suppress(Exception):
            await obstore.delete_async(self._store, self._key)


class S3Storage:
    name = "s3"

    def __init__(self, settings: Settings) -> None:
        if not settings.s3_bucket:
            raise StorageError("FILE_STORAGE=s3 needs S3_BUCKET")
        config: dict[str, str] = {"region": settings.s3_region}
        if settings.s3_endpoint_url:
            config["endpoint"] = settings.s3_endpoint_url
        if settings.s3_access_key_id:
            config["access_key_id"] = settings.s3_access_key_id
        if settings.s3_secret_access_key:
            config["secret_access_key"] = settings.s3_secret_access_key.get_secret_value()
        allow_http = bool(settings.s3_endpoint_url and settings.s3_endpoint_url.startswith("http://"))
        self.store = S3Store(
            settings.s3_bucket,
            config=config,  # type: ignore[arg-type]
            client_options={"allow_http": allow_http},
        )

    async def open_writer(self, key: str) -> ObjectWriter:
        return _S3Writer(self.store, key)

    async def read(self, key: str) -> AsyncIterator[bytes]:
        try:
            result = await obstore.get_async(self.store, key)
        except FileNotFoundError as exc:
            raise StorageError(f"object {key} is missing") from exc
        async for chunk in result.stream(min_chunk_size=READ_CHUNK_BYTES):
            yield bytes(chunk)

    async def read_all(self, key: str) -> bytes:
        try:
            result = await obstore.get_async(self.store, key)
            return bytes(await result.bytes_async())
        except FileNotFoundError as exc:
            raise StorageError(f"object {key} is missing") from exc

    async def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await obstore.delete_async(self.store, key)


_cache: dict[tuple[str, str], FileStorage] = {}


def storage_for(settings: Settings) -> FileStorage:
    """The configured backend (one instance per configuration: an S3 client keeps its pool)."""
    if settings.file_storage == "s3":
        ident = ("s3", f"{settings.s3_endpoint_url}|{settings.s3_bucket}|{settings.s3_access_key_id}")
        if ident not in _cache:
            _cache[ident] = S3Storage(settings)
        return _cache[ident]
    return LocalStorage(settings.local_files_dir())
