"""A pull-style reader of a ``multipart/form-data`` body that never holds a part whole.

python-multipart's parser is push-style (callbacks while bytes are written to it); this reader
feeds it one body chunk at a time and hands the parts out in order::

    reader = MultipartReader(content_type, body_chunks, max_bytes=limit)
    while (part := await reader.next_part()) is not None:
        if part.filename is None:
            value = await reader.read_value(limit=1000)
        else:
            while (chunk := await reader.read_chunk()) is not None:
                ...
"""

from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MAX_BOUNDARY_LENGTH, MultipartParser, parse_options_header

MAX_PARTS = 20


class MalformedForm(Exception):
    """The body is not a well-formed multipart form; the message says what is wrong."""


class FormTooLarge(Exception):
    """The body holds more bytes than the reader was allowed to read."""


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None  # None for a plain field


class MultipartReader:
    """Reads ``body`` up to the form's closing boundary and never further: whatever a client
    sends after it is left unread. More than ``max_bytes`` of body is ``FormTooLarge``."""

    def __init__(self, content_type: str | None, body: AsyncIterator[bytes], *, max_bytes: int) -> None:
        media_type, options = parse_options_header(content_type)
        if media_type != b"multipart/form-data":
            raise MalformedForm("The body must be multipart/form-data")
        boundary = options.get(b"boundary")
        if not boundary:
            raise MalformedForm("The multipart body has no boundary")
        if len(boundary) > MAX_BOUNDARY_LENGTH:
            raise MalformedForm(f"The multipart boundary is longer than {MAX_BOUNDARY_LENGTH} characters")
        self._body = body
        self._max_bytes = max_bytes
        self._received = 0
        self._events: deque[tuple[str, bytes]] = deque()
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._parts = 0
        self._finished = False
        self._exhausted = False
        self._in_part = False
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_header_field": lambda data, start, end: self._header_field.extend(data[start:end]),
                "on_header_value": lambda data, start, end: self._header_value.extend(data[start:end]),
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": lambda data, start, end: self._events.append(
                    ("data", bytes(data[start:end]))
                ),
                "on_part_end": lambda: self._events.append(("end", b"")),
                "on_end": self._on_end,
            },
        )

    # --- parser callbacks -----------------------------------------------------------------------

    def _on_part_begin(self) -> None:
        self._headers = {}

    def _on_header_end(self) -> None:
        self._headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _on_headers_finished(self) -> None:
        self._events.append(("begin", self._headers.get(b"content-disposition", b"")))

    def _on_end(self) -> None:
        self._finished = True

    # --- pulling ---------------------------------------------------------------------------------

    async def _next_event(self) -> tuple[str, bytes] | None:
        while not self._events:
            if self._finished:
                return None  # an epilogue after the closing boundary is not worth reading
            if self._exhausted:
                raise MalformedForm("The multipart body ended before its closing boundary")
            try:
                chunk = await anext(self._body)
            except StopAsyncIteration:
                self._exhausted = True
                continue
            self._received += len(chunk)
            if self._received > self._max_bytes:
                raise FormTooLarge(f"The body is larger than {self._max_bytes} bytes")
            if not chunk:
                continue
            try:
                self._parser.write(chunk)
            except FormParserError as exc:
                raise MalformedForm(f"The multipart body is malformed: {exc}") from exc
        return self._events.popleft()

    async def next_part(self) -> Part | None:
        """The next part's name and filename (the rest of the current part is skipped)."""
        while self._in_part:
            await self.read_chunk()
        event = await self._next_event()
        if event is None:
            return None
        kind, disposition = event
        if kind != "begin":
            raise MalformedForm("The multipart body is malformed")
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise MalformedForm(f"The form has more than {MAX_PARTS} parts")
        value, options = parse_options_header(disposition)
        if value != b"form-data" or b"name" not in options:
            raise MalformedForm("Every part needs Content-Disposition: form-data with a name")
        self._in_part = True
        filename = options.get(b"filename")
        return Part(
            name=options[b"name"].decode("utf-8", "replace"),
            filename=filename.decode("utf-8", "replace") if filename is not None else None,
        )

    async def read_chunk(self) -> bytes | None:
        """The next bytes of the current part; None once it has ended."""
        if not self._in_part:
            return None
        event = await self._next_event()
        if event is None:
            raise MalformedForm("The multipart body ended inside a part")
        kind, data = event
        if kind == "end":
            self._in_part = False
            return None
        if kind != "data":
            raise MalformedForm("The multipart body is malformed")
        return data

    async def read_value(self, *, limit: int) -> str:
        """A plain field's whole value as text (at most ``limit`` bytes)."""
        value = bytearray()
        while (chunk := await self.read_chunk()) is not None:
            value += chunk
            if len(value) > limit:
                raise MalformedForm(f"A form field is longer than {limit} bytes")
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedForm("A form field is not UTF-8 text") from exc
