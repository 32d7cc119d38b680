"""What an uploaded file really is, decided from its bytes while they stream past.

``ContentSniffer`` sees every chunk once and keeps only bounded state: the first bytes (magic
numbers), the last bytes (a zip's central directory, to find ``word/document.xml``), an
incremental UTF-8 decoder and, for JSON, a streaming syntax check. The name only picks between
text formats (``.md`` or ``.csv``) and must not contradict the content (a ``.pdf`` that is not
a PDF is refused).
"""

import codecs
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath

HEAD_BYTES = 8 * 1024
TAIL_BYTES = 256 * 1024

MEDIA_TYPES = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "txt": "text/plain; charset=utf-8",
    "md": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
}
TEXT_EXTENSIONS = {
    ".txt": "txt",
    ".text": "txt",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".csv": "csv",
    ".json": "json",
}
SUPPORTED = "PDF, DOCX, or UTF-8 text (TXT, Markdown, HTML, CSV, JSON)"


class UnsupportedContent(Exception):
    """The bytes are not one of the supported formats; the message says why, for a person."""


@dataclass(frozen=True)
class Detected:
    kind: str

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.kind]


class ContentSniffer:
    def __init__(self, filename: str) -> None:
        self.extension = PurePosixPath(filename).suffix.lower()
        self._head = bytearray()
        self._tail = bytearray()
        self._size = 0
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._text = True  # still valid UTF-8 without NUL characters
        self._json: JsonSyntaxCheck | None = None
        self._json_decided = False

    def feed(self, data: bytes) -> None:
        if len(self._head) < HEAD_BYTES:
            self._head += data[: HEAD_BYTES - len(self._head)]
        self._tail += data
        if len(self._tail) > TAIL_BYTES:
            del self._tail[: len(self._tail) - TAIL_BYTES]
        self._size += len(data)
        if self._text:
            try:
                text = self._decoder.decode(data)
            except UnicodeDecodeError:
                self._text = False
                self._json = None
                return
            if "\x00" in text:
                self._text = False
                self._json = None
                return
            self._check_json(text, final=False)

    def _check_json(self, text: str, *, final: bool) -> None:
        if not self._json_decided:
            stripped = text.lstrip()
            if not stripped and not final:
                return  # only whitespace so far
            self._json_decided = True
            if self.extension == ".json" or stripped[:1] in ("{", "["):
                self._json = JsonSyntaxCheck()
        if self._json is not None:
            self._json.feed(text, final=final)

    def result(self) -> Detected:
        """The detected kind, or ``UnsupportedContent`` with the reason."""
        if self._text:
            try:
                self._check_json(self._decoder.decode(b"", final=True), final=True)
            except UnicodeDecodeError:
                self._text = False
        head = bytes(self._head)
        if self._size == 0:
            raise UnsupportedContent("The file is empty")
        if head.startswith(b"%PDF-"):
            return self._named_as("pdf")
        if head.startswith(b"PK\x03\x04"):
            if self._is_docx():
                return self._named_as("docx")
            raise UnsupportedContent(f"This zip archive is not a Word document; supported: {SUPPORTED}")
        if self.extension in (".pdf", ".docx"):
            raise UnsupportedContent(f"The file is named {self.extension} but its content is not one")
        if not self._text:
            raise UnsupportedContent(f"Unsupported file type: not {SUPPORTED}")
        kind = TEXT_EXTENSIONS.get(self.extension)
        if kind is None:
            kind = self._text_kind_from_content()
        if kind == "json" and not (self._json is not None and self._json.valid):
            raise UnsupportedContent("The file is named .json but is not valid JSON")
        return Detected(kind)

    def _named_as(self, kind: str) -> Detected:
        claimed = TEXT_EXTENSIONS.get(self.extension)
        if claimed is not None and claimed != kind and self.extension != ".txt":
            raise UnsupportedContent(f"The file is named {self.extension} but is a {kind.upper()}")
        return Detected(kind)

    def _text_kind_from_content(self) -> str:
        if self._json is not None and self._json.valid:
            return "json"
        start = bytes(self._head[:512]).lstrip().lower()
        if start.startswith((b"<!doctype html", b"<html")):
            return "html"
        return "txt"

    def _is_docx(self) -> bool:
        """Whether the zip's central directory (read from the tail kept in memory) lists
        ``word/document.xml``. A directory larger than the tail is treated as not a document."""
        try:
            with zipfile.ZipFile(_TailView(bytes(self._tail), self._size)) as archive:
                return "word/document.xml" in archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            return False


class _TailView(io.RawIOBase):
    """A read-only file of ``size`` bytes of which only the last ``len(tail)`` are known:
    enough for ``zipfile`` to read the end record and the central directory."""

    def __init__(self, tail: bytes, size: int) -> None:
        self._tail = tail
        self._size = size
        self._start = size - len(tail)
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def read(self, size: int = -1) -> bytes:
        if self._position < self._start:
            raise OSError("outside the known tail")
        end = self._size if size < 0 else min(self._size, self._position + size)
        data = self._tail[self._position - self._start : end - self._start]
        self._position = end
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


# --- streaming JSON syntax check ----------------------------------------------------------------

_WS = re.compile(r"[ \t\n\r]*")
_STRING_BODY = re.compile(r'(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*')
_PARTIAL_ESCAPE = re.compile(r"\\(?:u[0-9a-fA-F]{0,3})?")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_NUMBER_CHARS = re.compile(r"[0-9eE+\-.]*")
_LITERALS = ("true", "false", "null")
_MAX_TOKEN = 1024  # a number or literal longer than this is not JSON anyone uploads

# What the checker expects next.
_VALUE, _VALUE_OR_CLOSE, _KEY, _KEY_OR_CLOSE, _COLON, _COMMA_OR_CLOSE, _DONE = range(7)


class JsonSyntaxCheck:
    """Validates JSON text fed in pieces, in bounded memory (strings may be any length)."""

    def __init__(self) -> None:
        self.valid = False
        self._failed = False
        self._stack: list[str] = []
        self._expect = _VALUE
        self._in_string = False
        self._string_is_key = False
        self._pending = ""

    def feed(self, text: str, *, final: bool) -> None:
        if self._failed:
            return
        buffer = self._pending + text
        self._pending = ""
        try:
            self._pending = self._scan(buffer, final)
        except ValueError:
            self._failed = True
            return
        if final:
            self.valid = self._expect == _DONE and not self._pending and not self._in_string

    def _scan(self, buffer: str, final: bool) -> str:
        position, length = 0, len(buffer)
        while position < length:
            if self._in_string:
                position = _STRING_BODY.match(buffer, position).end()  # type: ignore[union-attr]
                if position == length:
                    return ""
                if buffer[position] == '"':
                    self._in_string = False
                    position += 1
                    self._after_value(key=self._string_is_key)
                    continue
                partial = _PARTIAL_ESCAPE.fullmatch(buffer, position)
                if partial is not None and not final:
                    return buffer[position:]
                raise ValueError("bad string")
            position = _WS.match(buffer, position).end()  # type: ignore[union-attr]
            if position == length:
                break
            char = buffer[position]
            if self._expect == _DONE:
                raise ValueError("data after the value")
            if self._expect == _COLON:
                if char != ":":
                    raise ValueError("colon expected")
                self._expect = _VALUE
                position += 1
                continue
            if self._expect == _COMMA_OR_CLOSE:
                if char == ",":
                    self._expect = _KEY if self._stack[-1] == "{" else _VALUE
                    position += 1
                    continue
                position = self._close(char, position)
                continue
            if self._expect in (_KEY, _KEY_OR_CLOSE):
                if char == '"':
                    self._in_string, self._string_is_key = True, True
                    position += 1
                    continue
                if self._expect == _KEY_OR_CLOSE:
                    position = self._close(char, position)
                    continue
                raise ValueError("key expected")
            # a value (or, after "[", the end of the array)
            if char == "]" and self._expect == _VALUE_OR_CLOSE:
                position = self._close(char, position)
                continue
            if char == '"':
                self._in_string, self._string_is_key = True, False
                position += 1
            elif char in "{[":
                if len(self._stack) >= 512:
                    raise ValueError("nested too deep")
                self._stack.append(char)
                self._expect = _KEY_OR_CLOSE if char == "{" else _VALUE_OR_CLOSE
                position += 1
            else:
                end = length
                if final or _NUMBER_CHARS.match(buffer, position).end() < length:  # type: ignore[union-attr]
                    end = self._scalar_end(buffer, position, final)
                if end == length and not final:
                    if length - position > _MAX_TOKEN:
                        raise ValueError("token too long")
                    return buffer[position:]
                position = end
                self._after_value(key=False)
        return ""

    @staticmethod
    def _scalar_end(buffer: str, position: int, final: bool) -> int:
        number = _NUMBER.match(buffer, position)
        if number is not None and number.end() > position:
            return number.end()
        for literal in _LITERALS:
            if buffer.startswith(literal, position):
                return position + len(literal)
            rest = buffer[position:]
            if not final and literal.startswith(rest):
                return len(buffer)  # a literal cut by the chunk boundary
        raise ValueError("value expected")

    def _close(self, char: str, position: int) -> int:
        if not self._stack or {"}": "{", "]": "["}.get(char) != self._stack[-1]:
            raise ValueError("unbalanced")
        self._stack.pop()
        self._after_value(key=False)
        return position + 1

    def _after_value(self, *, key: bool) -> None:
        if key:
            self._expect = _COLON
        elif not self._stack:
            self._expect = _DONE
        else:
            self._expect = _COMMA_OR_CLOSE
