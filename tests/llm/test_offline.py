"""The built-in offline model: deterministic answers quoted from the knowledge, said to be offline,
with token usage counted."""

from app.llm.offline import OfflineProvider
from app.llm.types import Citation, Finish, Message, StreamEvent, TextDelta, Usage

KNOWLEDGE = [
    Citation(
        chunk_id="c1",
        file_id="f1",
        file_name="refunds.md",
        ordinal=0,
        text="Refunds are accepted within 30 days of delivery. Shipping costs are not refunded.",
        score=0.9,
    ),
    Citation(
        chunk_id="c2",
        file_id="f2",
        file_name="shipping.md",
        ordinal=3,
        text="We ship worldwide. Orders leave the warehouse within two working days.",
        score=0.4,
    ),
]


async def ask(question: str, knowledge: list[Citation]) -> list[StreamEvent]:
    messages = [Message("system", "You are the shop's assistant."), Message("user", question)]
    return [e async for e in OfflineProvider().stream("offline", messages, [], knowledge=knowledge)]


def text(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_offline_answer_quotes_the_matching_knowledge_and_says_it_is_offline() -> None:
    events = await ask("How many days do I have for refunds?", KNOWLEDGE)

    answer = text(events)
    assert answer.startswith("[Offline model]")
    assert 'refunds.md: "Refunds are accepted within 30 days of delivery."' in answer
    assert "ship worldwide" not in answer, "sentences sharing no word with the question are left out"
    assert sum(isinstance(e, TextDelta) for e in events) > 5, "it streams like a model"


async def test_offline_answers_are_deterministic() -> None:
    first = text(await ask("When do orders leave the warehouse?", KNOWLEDGE))
    second = text(await ask("When do orders leave the warehouse?", KNOWLEDGE))

    assert first == second
    assert 'shipping.md: "Orders leave the warehouse within two working days."' in first


async def test_offline_without_knowledge_says_it_found_nothing() -> None:
    answer = text(await ask("What is the meaning of life?", []))

    assert "[Offline model]" in answer
    assert "found nothing in the knowledge base" in answer


async def test_offline_reports_usage_in_words_then_finishes() -> None:
    events = await ask("refunds?", KNOWLEDGE)

    answer = text(events)
    prompt_words = len("You are the shop's assistant.".split()) + 1
    assert events[-2:] == [Usage(prompt_words, len(answer.split())), Finish("stop")]
