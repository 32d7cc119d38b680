"""Cut a document's text into overlapping passages for retrieval.

Passages end at paragraph boundaries when they can, else at sentence boundaries, else between
words; only a single word longer than a passage is cut inside. Consecutive passages share up to
``overlap`` characters (whole sentences or words from the end of the previous one), so a fact
that straddles a boundary is whole in at least one passage.
"""

import re

_PARAGRAPHS = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+|\n")


def _pieces(text: str, size: int) -> list[tuple[str, bool]]:
    """The text as units no longer than ``size``: paragraphs, or their sentences, or words;
    each with whether it starts a paragraph."""
    pieces: list[tuple[str, bool]] = []
    for paragraph in _PARAGRAPHS.split(text):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if len(paragraph) <= size:
            pieces.append((paragraph, True))
            continue
        units: list[str] = []
        for sentence in _SENTENCE_END.split(paragraph):
            sentence = sentence.strip()
            if sentence:
                units.extend([sentence] if len(sentence) <= size else _words(sentence, size))
        pieces.extend((unit, i == 0) for i, unit in enumerate(units))
    return pieces


def _join(pieces: list[tuple[str, bool]]) -> str:
    out = ""
    for index, (piece, starts_paragraph) in enumerate(pieces):
        if index:
            out += "\n\n" if starts_paragraph else " "
        out += piece
    return out


def _words(sentence: str, size: int) -> list[str]:
    out: list[str] = []
    current = ""
    for word in sentence.split():
        while len(word) > size:  # one "word" longer than a passage: cut it
            if current:
                out.append(current)
                current = ""
            out.append(word[:size])
            word = word[size:]
        if current and len(current) + 1 + len(word) > size:
            out.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        out.append(current)
    return out


def _tail(pieces: list[tuple[str, bool]], overlap: int) -> list[tuple[str, bool]]:
    """The last pieces of a passage that fit in ``overlap`` characters (or the last words)."""
    kept: list[tuple[str, bool]] = []
    used = 0
    for piece, starts_paragraph in reversed(pieces):
        if used + len(piece) + 2 > overlap:
            if not kept:
                tail_words: list[str] = []
                for word in reversed(piece.split()):
                    if used + len(word) + 1 > overlap:
                        break
                    tail_words.insert(0, word)
                    used += len(word) + 1
                if tail_words:
                    kept.insert(0, (" ".join(tail_words), False))
            break
        kept.insert(0, (piece, starts_paragraph))
        used += len(piece) + 2
    return kept


def chunk_text(text: str, *, size: int, overlap: int) -> list[str]:
    """Passages of at most ``size`` characters, each sharing up to ``overlap`` with the previous."""
    if size <= 0:
        raise ValueError("size must be positive")
    overlap = max(0, min(overlap, size // 2))
    chunks: list[str] = []
    current: list[tuple[str, bool]] = []
    fresh = 0  # pieces of ``current`` not already in the previous passage
    for piece in _pieces(text, size):
        if current and len(_join([*current, piece])) > size:
            if fresh:
                chunks.append(_join(current))
            current = _tail(current, overlap)
            while current and len(_join([*current, piece])) > size:
                current.pop(0)
            fresh = 0
        current.append(piece)
        fresh += 1
    if current and fresh:
        chunks.append(_join(current))
    return chunks
