"""Test documents: a tiny hand-written PDF writer, DOCX through python-docx, the Tidewater
Kayaks knowledge base of ``tests/fixtures/knowledge`` and a few hostile files."""

import io
import json
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import docx
from pypdf import PdfReader, PdfWriter

KNOWLEDGE = Path(__file__).resolve().parents[1] / "fixtures" / "knowledge"


def _pdf_string(line: str) -> bytes:
    escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return b"(" + escaped.encode("latin-1", "replace") + b")"


def make_pdf(text: str, *, lines_per_page: int = 48, width: int = 90) -> bytes:
    """A text PDF (Helvetica, one text object per page) that pypdf extracts again."""
    lines: list[str] = []
    for paragraph in text.split("\n\n"):
        lines.extend(textwrap.wrap(" ".join(paragraph.split()), width) or [""])
        lines.append("")
    pages = [lines[i : i + lines_per_page] for i in range(0, len(lines), lines_per_page)] or [[""]]
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # the page tree, once the page ids are known
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    page_ids = []
    for page in pages:
        stream = b"BT /F1 10 Tf 13 TL 50 780 Td\n" + b"".join(
            _pdf_string(line) + b" Tj T*\n" for line in page
        )
        stream += b"ET"
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
        content_id = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 842] /Resources << /Font << /F1 3 0 R >> >>"
            b" /Contents %d 0 R >>" % content_id
        )
        page_ids.append(len(objects))
    kids = b" ".join(b"%d 0 R" % i for i in page_ids)
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(page_ids))
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def make_docx(text: str) -> bytes:
    """A Word document: the first paragraph as its title, the rest as paragraphs."""
    document = docx.Document()
    paragraphs = [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]
    for index, paragraph in enumerate(paragraphs):
        if index == 0:
            document.add_heading(paragraph, level=0)
        elif len(paragraph) < 40 and not paragraph.endswith("."):
            document.add_heading(paragraph, level=1)
        else:
            document.add_paragraph(paragraph)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def knowledge_base() -> dict[str, bytes]:
    """The fixture documents as uploaded: two of them rendered to PDF and DOCX."""
    read = lambda name: (KNOWLEDGE / name).read_bytes()  # noqa: E731
    return {
        "handbook.md": read("handbook.md"),
        "returns-policy.pdf": make_pdf(read("returns-policy.txt").decode()),
        "api-guide.docx": make_docx(read("api-guide.txt").decode()),
        "pricing.csv": read("pricing.csv"),
        "faq.html": read("faq.html"),
        "support.json": read("support.json"),
    }


def questions() -> list[dict[str, Any]]:
    return list(json.loads((KNOWLEDGE / "questions.json").read_text()))


# --- hostile and broken files ---------------------------------------------------------------------


def encrypted_pdf(text: str = "The secret plans are in the second drawer.") -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(text))))
    writer.encrypt(user_password="hunter2", owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def malformed_pdf() -> bytes:
    """Starts like a PDF, then nothing of one: no objects, no cross-reference table."""
    return b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 9 0 R\n" + bytes(range(256)) * 20 + b"\n%%EOF\n"


def zip_bomb_docx(uncompressed_mb: int = 64) -> bytes:
    """A real docx with one extra part of ``uncompressed_mb`` MiB of zeros (deflates ~1000:1)."""
    base = zipfile.ZipFile(io.BytesIO(make_docx("Title\n\nA harmless looking document.")))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bomb:
        for item in base.infolist():
            bomb.writestr(item, base.read(item.filename))
        with bomb.open("word/media/padding.bin", "w", force_zip64=True) as part:
            block = bytes(1024 * 1024)
            for _ in range(uncompressed_mb):
                part.write(block)
    return buffer.getvalue()


def plain_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "not a word document")
    return buffer.getvalue()
