"""The vocabulary shared by LLM providers, the chat engine, the knowledge retriever and MCP
toolsets. Plain dataclasses: no provider's wire format leaks past its adapter."""

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool offered to the model. ``name`` is unique within one chat turn (MCP toolsets
    prefix it with the client's slug); ``parameters`` is a JSON Schema object."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolResult:
    call_id: str
    name: str
    content: str  # already size-capped text the model will read
    is_error: bool = False
    latency_ms: float = 0.0


@dataclass(slots=True)
class Message:
    role: Role
    content: str
    tool_calls: list[ToolCall] = field(default_factory=list)  # assistant turns that call tools
    tool_call_id: str | None = None  # tool turns: which call this answers
    name: str | None = None  # tool turns: the tool's name
    is_error: bool = False  # tool turns: the tool failed (content says why)


@dataclass(frozen=True, slots=True)
class Citation:
    """A knowledge chunk put into the prompt; the answer's metadata cites it."""

    chunk_id: str
    file_id: str
    file_name: str
    ordinal: int
    text: str
    score: float


# Stream events of one provider call, in order: any number of TextDelta and ToolCallEvent,
# then exactly one Usage, then Finish.
@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallEvent:
    call: ToolCall


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class Finish:
    reason: Literal["stop", "tool_calls", "length", "error"]


StreamEvent = TextDelta | ToolCallEvent | Usage | Finish
