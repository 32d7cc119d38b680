"""The built-in ``offline`` model: no network, no key, the same answer to the same question.

It answers by quoting the sentences of the retrieved knowledge that share the most words with
the question, names their files, and says plainly that it is the offline model. Token usage is
counted in whitespace-separated words so metering works as with a real model.
"""

import re
from collections.abc import AsyncIterator, Sequence

from app.llm.providers import OFFLINE_KEY, ToolChoice, count_tokens
from app.llm.types import Citation, Finish, Message, StreamEvent, TextDelta, ToolSpec, Usage

INTRO = "[Offline model] No LLM provider is configured for this project, so I answer from its knowledge base."
NOTHING_FOUND = (
    "I found nothing in the knowledge base about this. Upload files that cover it, or ask an "
    "administrator to configure an LLM provider for real answers."
)
MAX_QUOTES = 3
_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_STOPWORDS = frozenset(
    "a an and are as at be but by can do does for from has have how i in is it its me my of on "
    "or our so that the their there this to was we what when where which who why will with you your".split()
)


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS}


def _quotes(question: str, knowledge: Sequence[Citation]) -> list[tuple[str, str]]:
    """Up to ``MAX_QUOTES`` (file name, sentence), the best match first; ties keep the
    retriever's order. Without any shared word, the best chunk's opening is quoted."""
    asked = _words(question)
    scored: list[tuple[int, int, str, str]] = []
    for rank, citation in enumerate(knowledge):
        for sentence in _SENTENCE.split(" ".join(citation.text.split())):
            overlap = len(asked & _words(sentence))
            if overlap:
                scored.append((-overlap, rank, citation.file_name, sentence))
    scored.sort(key=lambda item: (item[0], item[1]))
    picked: list[tuple[str, str]] = []
    for _, _, file_name, sentence in scored:
        if (file_name, sentence) not in picked:
            picked.append((file_name, sentence))
        if len(picked) == MAX_QUOTES:
            break
    if not picked and knowledge:
        first = knowledge[0]
        picked.append((first.file_name, _SENTENCE.split(" ".join(first.text.split()))[0]))
    return picked


def offline_answer(question: str, knowledge: Sequence[Citation]) -> str:
    quotes = _quotes(question, knowledge)
    if not quotes:
        return f"{INTRO}\n\n{NOTHING_FOUND}"
    lines = [f"{INTRO} From the knowledge base:"]
    lines += [f'- {file_name}: "{sentence[:500]}"' for file_name, sentence in quotes]
    return "\n".join(lines)


class OfflineProvider:
    name = OFFLINE_KEY

    async def stream(
        self,
        model: str,
        messages: list[Message],
        tools: list[ToolSpec],
        *,
        tool_choice: ToolChoice = "auto",
        knowledge: Sequence[Citation] = (),
    ) -> AsyncIterator[StreamEvent]:
        question = next((m.content for m in reversed(messages) if m.role == "user"), "")
        answer = offline_answer(question, knowledge)
        # Word by word (keeping the spacing), like a model streaming tokens.
        for piece in re.findall(r"\S+\s*", answer):
            yield TextDelta(piece)
        yield Usage(count_tokens(" ".join(m.content for m in messages)), count_tokens(answer))
        yield Finish("stop")
