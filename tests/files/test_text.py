"""The pure parts: content sniffing, the streaming JSON check, text extraction and chunking."""

import io
import itertools
import json
import os
import tracemalloc
import zipfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.files.chunking import chunk_text
from app.files.detect import ContentSniffer, JsonSyntaxCheck, UnsupportedContent
from app.files.extract import ExtractionFailed, check_docx_archive, extract_text
from tests.files.documents import knowledge_base, make_docx, make_pdf, zip_bomb_docx

MAX_CHARS = 5_000_000

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=25,
)


def check_in_pieces(text: str, cuts: list[int]) -> bool:
    check = JsonSyntaxCheck()
    position = 0
    for cut in sorted(cuts):
        cut = min(cut, len(text))
        check.feed(text[position:cut], final=False)
        position = cut
    check.feed(text[position:], final=True)
    return check.valid


def parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


@given(JSON_VALUES, st.lists(st.integers(0, 300), max_size=8), st.booleans())
def test_the_streaming_json_check_accepts_any_json_cut_anywhere(
    value: object, cuts: list[int], indent: bool
) -> None:
    text = json.dumps(value, indent=1 if indent else None, ensure_ascii=False)
    assert check_in_pieces(text, cuts)


@given(
    JSON_VALUES,
    st.lists(st.integers(0, 300), max_size=8),
    st.integers(0, 10_000),
    st.sampled_from('{}[],:"\\ 1e-.tn'),
)
def test_the_streaming_json_check_agrees_with_the_parser_on_damaged_json(
    value: object, cuts: list[int], at: int, inserted: str
) -> None:
    text = json.dumps(value)
    at %= len(text) + 1
    for damaged in (text[:at] + inserted + text[at:], text[:at] + text[at + 1 :], text[:at]):
        assert check_in_pieces(damaged, cuts) == parses(damaged), damaged


@pytest.mark.parametrize(
    "text", ["tru", "nul", "1 2", "[1,]", '{"a" 1}', "01", "-", "1.", '"\\u12"', "[true false]", ""]
)
def test_the_streaming_json_check_refuses_what_the_parser_refuses(text: str) -> None:
    for cuts in ([], [1], [2]):
        assert check_in_pieces(text, cuts) is False


def sniff(name: str, content: bytes, piece: int = 7) -> str:
    sniffer = ContentSniffer(name)
    for start in range(0, len(content), piece):
        sniffer.feed(content[start : start + piece])
    return sniffer.result().kind


def test_a_docx_with_large_media_is_recognised_from_its_central_directory() -> None:
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(make_docx("Title\n\nBody text."))) as source,
        zipfile.ZipFile(buffer, "w") as out,
    ):
        out.writestr("word/media/photo.jpg", os.urandom(2 * 1024 * 1024))  # stored first, 2 MiB
        for item in source.infolist():
            out.writestr(item, source.read(item.filename))

    assert sniff("report.docx", buffer.getvalue(), piece=64 * 1024) == "docx"


def test_a_multibyte_character_cut_between_chunks_is_still_text() -> None:
    assert sniff("notes.txt", "Åland café naïve — ✓".encode(), piece=1) == "txt"


def test_an_empty_file_is_refused() -> None:
    with pytest.raises(UnsupportedContent, match="empty"):
        ContentSniffer("a.txt").result()


def test_html_text_leaves_scripts_styles_and_tags_out() -> None:
    text = extract_text("html", knowledge_base()["faq.html"], max_chars=MAX_CHARS)

    assert "We ship kayaks to Canada only." in text
    assert "do-not-index-this-script" not in text
    assert "font-family" not in text
    assert "<p>" not in text


def test_csv_rows_become_sentences_with_their_column_names() -> None:
    text = extract_text("csv", b"model,price_usd\nHeron 12,899\nPuffin,379\n", max_chars=MAX_CHARS)

    assert text.splitlines() == ["model: Heron 12; price_usd: 899.", "model: Puffin; price_usd: 379."]


def test_json_objects_become_paragraphs_of_fields() -> None:
    text = extract_text(
        "json", b'{"support": {"phone": "+1 555", "open": true}, "tags": ["a", "b"]}', max_chars=MAX_CHARS
    )

    assert "support\nphone: +1 555\nopen: yes" in text
    assert "tags: a, b" in text


def expanding_csv(rows: int) -> bytes:
    """Each short row becomes a sentence naming all 200 long columns: ~100 times its size."""
    header = ",".join(f"column_{i}_{'x' * 40}" for i in range(200))
    return (header + "\n" + ("1," * 199 + "1\n") * rows).encode()


def expanding_json(items: int) -> bytes:
    """A long key repeated in the path of every nested item."""
    return json.dumps({"k" * 5000: [[i] for i in range(items)]}).encode()


@pytest.mark.parametrize(
    ("kind", "small", "large"),
    [
        ("csv", expanding_csv(3), expanding_csv(5000)),
        ("json", expanding_json(3), expanding_json(5000)),
        ("txt", b"word " * 100, b"word " * 300_000),
        ("pdf", make_pdf("Returns within 30 days."), make_pdf("Returns within 30 days. " * 30_000)),
        ("docx", make_docx("Returns within 30 days."), make_docx("Returns within 30 days. " * 30_000)),
    ],
)
def test_text_past_the_limit_fails_with_a_reason(kind: str, small: bytes, large: bytes) -> None:
    assert extract_text(kind, small, max_chars=100_000)

    with pytest.raises(ExtractionFailed, match="more than 100,000 characters of text"):
        extract_text(kind, large, max_chars=100_000)


def test_an_expanding_file_is_stopped_long_before_it_is_expanded() -> None:
    data = expanding_csv(20_000)  # 8 MB of CSV; about 220 MB of sentences
    tracemalloc.start()
    try:
        with pytest.raises(ExtractionFailed, match="characters of text"):
            extract_text("csv", data, max_chars=1_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 20 * len(data), f"{peak:,} bytes at the peak for {len(data):,} bytes of CSV"


def test_a_docx_bomb_is_refused_before_anything_is_inflated() -> None:
    with pytest.raises(ExtractionFailed, match="zip bomb"):
        check_docx_archive(zip_bomb_docx(uncompressed_mb=8))


@pytest.mark.parametrize(("size", "overlap"), [(200, 0), (200, 50), (500, 100), (1200, 200)])
def test_chunks_respect_the_size_and_keep_every_word_in_order(size: int, overlap: int) -> None:
    text = extract_text("md", knowledge_base()["handbook.md"], max_chars=MAX_CHARS)

    chunks = chunk_text(text, size=size, overlap=overlap)

    assert all(len(chunk) <= size for chunk in chunks)
    words = text.split()
    position = 0
    for chunk in chunks:  # each chunk's words appear in the text, in order, at or after the last
        chunk_words = chunk.split()
        start = next(
            i
            for i in range(max(0, position - 200), len(words))
            if words[i : i + len(chunk_words)] == chunk_words
        )
        assert start + len(chunk_words) >= position
        position = start + len(chunk_words)
    assert position == len(words), "the last chunk ends the text"


def test_consecutive_chunks_overlap_at_sentence_boundaries() -> None:
    text = " ".join(f"Sentence number {i} says something." for i in range(100))

    chunks = chunk_text(text, size=300, overlap=80)

    for previous, current in itertools.pairwise(chunks):
        shared = current.split(".")[0] + "."
        assert shared in previous
        assert current.startswith("Sentence number")


@given(st.text(min_size=1, max_size=3000), st.integers(50, 400), st.integers(0, 200))
def test_chunking_never_exceeds_the_size_or_drops_text(text: str, size: int, overlap: int) -> None:
    chunks = chunk_text(text, size=size, overlap=overlap)

    assert all(len(chunk) <= size for chunk in chunks)
    squeezed = "".join(text.split())
    pieces = ["".join(chunk.split()) for chunk in chunks]
    if not squeezed:
        assert chunks == []
        return
    assert all(piece in squeezed for piece in pieces)
    assert squeezed.startswith(pieces[0])
    assert squeezed.endswith(pieces[-1])
    assert sum(len(piece) for piece in pieces) >= len(squeezed)
