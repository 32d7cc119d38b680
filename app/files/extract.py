"""Plain text out of a stored knowledge file, refusing hostile or broken input with a reason.

Synchronous (pypdf and python-docx are); the worker runs it in a helper process with a deadline
and a memory ceiling (``app.files.isolation``). Every refusal is an ``ExtractionFailed`` whose
message is shown to the builder as the file's ``error``. The text is counted while it is
produced, so a small file that would expand to gigabytes of text stops at ``max_chars``.
"""

import csv
import io
import json
import logging
import zipfile
from html.parser import HTMLParser
from typing import Any

from pypdf import PdfReader
from pypdf.errors import PdfReadError, PyPdfError

logger = logging.getLogger("bazaar.files.extract")

# A docx is a zip: these bound what opening it may inflate to, checked on the declared sizes
# before anything is decompressed (zipfile never inflates an entry past its declared size).
DOCX_MAX_ENTRIES = 2000
DOCX_MAX_UNCOMPRESSED_BYTES = 200 * 1024 * 1024
DOCX_MAX_RATIO = 100  # uncompressed / compressed, for entries above 1 MiB
PDF_MAX_PAGES = 2000


class ExtractionFailed(Exception):
    """The file cannot be turned into text; the message is for the person who uploaded it."""


class _TextBudget:
    """Counts the characters an extractor produces and stops it past ``max_chars``."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self._left = max_chars

    def spend(self, piece: str) -> str:
        self._left -= len(piece)
        if self._left < 0:
            raise ExtractionFailed(
                f"The file holds more than {self.max_chars:,} characters of text, the most that can "
                "be indexed. Split it into smaller files"
            )
        return piece


def extract_text(kind: str, data: bytes, *, max_chars: int) -> str:
    extractor = _EXTRACTORS.get(kind)
    if extractor is None:
        raise ExtractionFailed(f"Files of type {kind} cannot be processed")
    budget = _TextBudget(max_chars)
    text = extractor(data, budget)
    text = "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    text = text.replace("\x00", "").strip()
    if not text:
        raise ExtractionFailed("The file contains no text to index")
    _TextBudget(max_chars).spend(text)
    return text


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ExtractionFailed("The file is not valid UTF-8 text") from exc


def _plain(data: bytes, budget: _TextBudget) -> str:
    return budget.spend(_decode(data))


# --- PDF ----------------------------------------------------------------------------------------


def _pdf(data: bytes, budget: _TextBudget) -> str:
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not _opens_without_password(reader):
            raise ExtractionFailed("The PDF is password-protected; upload a copy without a password")
        if len(reader.pages) > PDF_MAX_PAGES:
            raise ExtractionFailed(f"The PDF has more than {PDF_MAX_PAGES} pages; split it")
        pages = [budget.spend(page.extract_text() or "") for page in reader.pages]
    except ExtractionFailed:
        raise
    except Exception as exc:  # pypdf raises many kinds on hostile input (struct, zlib, its own)
        logger.info("unreadable pdf", extra={"error": repr(exc)[:300]})
        raise ExtractionFailed("The PDF is damaged or malformed and could not be read") from exc
    text = "\n\n".join(_reflow(page) for page in pages if page.strip())
    if not text:
        raise ExtractionFailed("The PDF has no extractable text (is it a scan? upload a text PDF)")
    return text


def _reflow(page: str) -> str:
    """A PDF page's visual lines as paragraphs: a line that runs (nearly) to the right margin
    without ending a sentence continues on the next one; any other line ends its paragraph."""
    lines = [line.strip() for line in page.splitlines()]
    longest = max((len(line) for line in lines), default=0)
    paragraphs: list[str] = []
    current: list[str] = []
    for line in lines:
        if not line:
            if current:
                paragraphs.append(" ".join(current))
                current = []
            continue
        current.append(line)
        if len(line) < 0.7 * longest or (line.endswith((".", "!", "?", ":")) and len(line) < 0.85 * longest):
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return "\n\n".join(paragraphs)


def _opens_without_password(reader: PdfReader) -> bool:
    try:
        return bool(reader.decrypt(""))
    except (PdfReadError, PyPdfError, NotImplementedError, ValueError):
        return False


# --- DOCX ---------------------------------------------------------------------------------------


def check_docx_archive(data: bytes) -> None:
    """Refuse zip bombs and non-documents using only the central directory's declared sizes."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ExtractionFailed("The Word document is damaged (not a readable zip archive)") from exc
    if len(entries) > DOCX_MAX_ENTRIES:
        raise ExtractionFailed(f"The Word document holds more than {DOCX_MAX_ENTRIES} parts; refused")
    total = sum(entry.file_size for entry in entries)
    if total > DOCX_MAX_UNCOMPRESSED_BYTES:
        raise ExtractionFailed(
            "The Word document would expand to more than "
            f"{DOCX_MAX_UNCOMPRESSED_BYTES // (1024 * 1024)} MiB (a zip bomb?); refused"
        )
    for entry in entries:
        if entry.file_size > 1024 * 1024 and entry.file_size > DOCX_MAX_RATIO * max(entry.compress_size, 1):
            raise ExtractionFailed(
                f"The Word document part {entry.filename} is compressed more than {DOCX_MAX_RATIO}:1 "
                "(a zip bomb?); refused"
            )
    if "word/document.xml" not in {entry.filename for entry in entries}:
        raise ExtractionFailed("The zip archive is not a Word document (no word/document.xml)")


def _docx(data: bytes, budget: _TextBudget) -> str:
    check_docx_archive(data)
    import docx  # python-docx: imported here, the API process never needs it

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises a variety (KeyError, lxml errors, its own)
        logger.info("unreadable docx", extra={"error": repr(exc)[:300]})
        raise ExtractionFailed("The Word document is damaged or malformed and could not be read") from exc
    blocks = [budget.spend(p.text) for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:  # a merged cell is repeated in every row it spans: counted each time
            blocks.append(budget.spend(" | ".join(cell.text.strip() for cell in row.cells)))
    return "\n\n".join(b.strip() for b in blocks if b.strip())


# --- HTML ---------------------------------------------------------------------------------------

_SKIPPED_TAGS = {"script", "style", "noscript", "template", "svg", "head"}
_BLOCK_TAGS = {
    "p", "div", "section", "article", "header", "footer", "main", "aside", "nav", "li", "ul", "ol",
    "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "blockquote", "pre", "dt", "dd", "dl",
    "details", "summary", "figcaption", "hr", "br", "title",
}  # fmt: skip


class _TextOfHtml(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n")
        elif tag in ("td", "th"):
            self.parts.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def _html(data: bytes, budget: _TextBudget) -> str:
    parser = _TextOfHtml()
    parser.feed(budget.spend(_decode(data)))
    parser.close()
    paragraphs = ("".join(parser.parts)).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())


# --- CSV and JSON: records as "field: value" lines, so each row reads as a sentence --------------


def _csv(data: bytes, budget: _TextBudget) -> str:
    text = _decode(data)
    try:
        dialect: Any = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = [row for row in csv.reader(io.StringIO(text), dialect) if any(cell.strip() for cell in row)]
    except csv.Error as exc:
        raise ExtractionFailed(f"The CSV could not be parsed: {exc}") from exc
    if not rows:
        return ""
    header, records = [h.strip() for h in rows[0]], rows[1:]
    if not records:
        return ", ".join(header)
    lines = []
    for record in records:
        fields = [
            f"{header[i] if i < len(header) and header[i] else f'column {i + 1}'}: {value.strip()}"
            for i, value in enumerate(record)
            if value.strip()
        ]
        lines.append(budget.spend("; ".join(fields) + "."))
    return "\n".join(lines)


def _json(data: bytes, budget: _TextBudget) -> str:
    try:
        value = json.loads(_decode(data))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ExtractionFailed("The JSON could not be parsed") from exc
    blocks: list[str] = []
    _json_blocks(value, "", blocks, budget)
    return "\n\n".join(blocks)


def _json_blocks(value: Any, path: str, blocks: list[str], budget: _TextBudget) -> None:
    """An object of scalars becomes one paragraph of ``key: value`` lines; containers recurse."""
    if isinstance(value, dict):
        scalars = [f"{k}: {_scalar(v)}" for k, v in value.items() if not isinstance(v, dict | list)]
        if scalars:
            blocks.append(budget.spend(((path + "\n") if path else "") + "\n".join(scalars)))
        for key, item in value.items():
            if isinstance(item, dict | list):
                _json_blocks(item, f"{path}.{key}" if path else str(key), blocks, budget)
    elif isinstance(value, list):
        simple = [item for item in value if not isinstance(item, dict | list)]
        if simple:
            blocks.append(
                budget.spend(((path + ": ") if path else "") + ", ".join(_scalar(v) for v in simple))
            )
        for item in value:
            if isinstance(item, dict | list):
                _json_blocks(item, path, blocks, budget)
    else:
        blocks.append(budget.spend(((path + ": ") if path else "") + _scalar(value)))


def _scalar(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


_EXTRACTORS = {
    "txt": _plain,
    "md": _plain,
    "html": _html,
    "csv": _csv,
    "json": _json,
    "pdf": _pdf,
    "docx": _docx,
}
