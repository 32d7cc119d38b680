"""The HTTP plumbing every remote provider shares: one keep-alive client, retries with backoff
before anything was streamed, and a Server-Sent Events reader.

Retries cover what is worth retrying (429, 408, 5xx, a refused or failed connection) and only
happen before the first byte of a stream: once the model has started answering, a failure is
reported rather than repeated, so the user never sees an answer twice.

Two clocks bound a call: ``timeout_seconds`` between two bytes, and ``deadline_seconds`` for the
whole call (retries, waits and streaming), so a provider that trickles tokens cannot hold a turn
forever. Callers take ``policy.deadline()`` when the call starts and hand it to ``open_stream``
and ``sse_events``.
"""

import asyncio
import email.utils
import logging
import math
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import httpx
import orjson

from app.llm.errors import ProviderError, auth_failed, bad_response, past_deadline, timed_out

logger = logging.getLogger("bazaar.llm")

_client: httpx.AsyncClient | None = None
_client_loop: asyncio.AbstractEventLoop | None = None


def http_client() -> httpx.AsyncClient:
    """The process's client for LLM providers (connections are kept alive between calls)."""
    global _client, _client_loop
    loop = asyncio.get_running_loop()
    if _client is None or _client.is_closed or _client_loop is not loop:
        _client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=60),
            follow_redirects=False,
        )
        _client_loop = loop
    return _client


async def close_http_client() -> None:
    global _client, _client_loop
    if _client is not None and _client_loop is asyncio.get_running_loop():
        await _client.aclose()
    _client = _client_loop = None


@dataclass(frozen=True)
class RetryPolicy:
    timeout_seconds: float
    max_retries: int
    backoff_seconds: float
    deadline_seconds: float = math.inf

    def deadline(self) -> float:
        """When a call starting now must be over, on the event loop's clock."""
        return asyncio.get_running_loop().time() + self.deadline_seconds

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        base: float = self.backoff_seconds * 2.0**attempt
        return base + random.uniform(0, base / 2)


def _retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date); ``None`` when it
    is missing or unreadable (the provider's hint is then ignored, not trusted)."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (ValueError, TypeError, IndexError, OverflowError):
            return None
        if parsed.tzinfo is None:  # an HTTP date is GMT even when it does not say so
            parsed = parsed.replace(tzinfo=UTC)
        seconds = parsed.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _provider_message(body: bytes) -> str | None:
    """The provider's own explanation (``{"error": {"message": ...}}``), cut short."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    return message[:300] if isinstance(message, str) else None


def _http_error(provider: str, response: httpx.Response, body: bytes) -> ProviderError:
    status = response.status_code
    if status in (401, 403):
        return auth_failed(provider, status)
    details: dict[str, Any] = {"provider": provider, "status": status}
    if status == 429:
        retry_after = _retry_after(response.headers)
        if retry_after is not None:
            details["retryAfter"] = retry_after
        return ProviderError(
            f"The LLM provider {provider!r} is rate limiting us; try again shortly",
            code="llm_rate_limited",
            details=details,
            retryable=True,
            retry_after=retry_after,
        )
    said = _provider_message(body)
    if said:
        details["providerMessage"] = said
    retryable = status >= 500 or status == 408
    return ProviderError(
        f"The LLM provider {provider!r} answered HTTP {status}" + (f": {said}" if said else ""),
        code="llm_provider_error",
        details=details,
        retryable=retryable,
        retry_after=_retry_after(response.headers) if retryable else None,
    )


@asynccontextmanager
async def open_stream(
    provider: str,
    url: str,
    *,
    headers: dict[str, str],
    body: dict[str, Any],
    policy: RetryPolicy,
    deadline: float | None = None,
) -> AsyncIterator[httpx.Response]:
    """POST ``body`` and hand over the streaming response once it answered 2xx, retrying as the
    module docstring says, all before ``deadline`` (``policy.deadline()`` when not given).
    Raises ``ProviderError``."""
    client = http_client()
    content = orjson.dumps(body)
    headers = {**headers, "content-type": "application/json", "accept": "text/event-stream"}
    timeout = httpx.Timeout(policy.timeout_seconds)
    deadline = policy.deadline() if deadline is None else deadline
    loop = asyncio.get_running_loop()
    attempt = 0
    while True:
        error: ProviderError
        try:
            request = client.build_request("POST", url, content=content, headers=headers, timeout=timeout)
            async with asyncio.timeout_at(deadline):
                response = await client.send(request, stream=True)
        except TimeoutError as exc:
            raise past_deadline(provider, policy.deadline_seconds) from exc
        except httpx.ConnectTimeout:
            error = ProviderError(
                f"The LLM provider {provider!r} did not accept a connection",
                code="llm_unavailable",
                details={"provider": provider},
                retryable=True,
            )
        except httpx.TimeoutException as exc:
            raise timed_out(provider, policy.timeout_seconds) from exc
        except httpx.TransportError as exc:
            error = ProviderError(
                f"The LLM provider {provider!r} cannot be reached ({type(exc).__name__})",
                code="llm_unavailable",
                details={"provider": provider},
                retryable=True,
            )
        else:
            if response.is_success:
                break
            try:
                async with asyncio.timeout_at(deadline):
                    raw = await response.aread()
            except (httpx.HTTPError, TimeoutError):
                raw = b""
            finally:
                await response.aclose()
            error = _http_error(provider, response, raw)
        wait = policy.delay(attempt, error.retry_after) if error.retryable else 0.0
        if (
            not error.retryable
            or attempt >= policy.max_retries
            or wait > policy.timeout_seconds
            or loop.time() + wait >= deadline
        ):
            raise error
        logger.warning(
            "llm call failed, retrying",
            extra={"provider": provider, "code": error.code, "attempt": attempt + 1, "waitSeconds": wait},
        )
        attempt += 1
        await asyncio.sleep(wait)
    try:
        yield response
    finally:
        await response.aclose()


async def _lines_before(response: httpx.Response, deadline: float) -> AsyncIterator[str]:
    """The response's lines; ``TimeoutError`` once ``deadline`` passes, however fast they come."""
    lines = response.aiter_lines()
    while True:
        try:
            async with asyncio.timeout_at(deadline):
                line = await anext(lines)
        except StopAsyncIteration:
            return
        yield line


async def sse_events(
    response: httpx.Response, provider: str, policy: RetryPolicy, deadline: float
) -> AsyncIterator[tuple[str | None, str]]:
    """``(event name, data)`` of each Server-Sent Event; stream failures and the call's deadline
    become ``ProviderError``."""
    event: str | None = None
    data: list[str] = []
    try:
        async for line in _lines_before(response, deadline):
            if not line:
                if data:
                    yield event, "\n".join(data)
                event, data = None, []
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
        if data:
            yield event, "\n".join(data)
    except TimeoutError as exc:
        raise past_deadline(provider, policy.deadline_seconds) from exc
    except httpx.TimeoutException as exc:
        raise timed_out(provider, policy.timeout_seconds) from exc
    except httpx.TransportError as exc:
        raise ProviderError(
            f"The connection to the LLM provider {provider!r} broke mid-answer",
            code="llm_provider_error",
            details={"provider": provider},
        ) from exc


def json_object(provider: str, data: str) -> dict[str, Any]:
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise bad_response(provider, "an event is not JSON") from exc
    if not isinstance(parsed, dict):
        raise bad_response(provider, "an event is not a JSON object")
    return parsed
