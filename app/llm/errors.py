"""Provider failures, in the app's one error shape (HTTP 502, or 504 for a timeout)."""

from typing import Any

from app.core.errors import AppError


class ProviderError(AppError):
    """An LLM provider failed or answered something unusable. ``message`` is safe to show: it
    never carries the API key or the prompt."""

    status_code = 502
    code = "llm_provider_error"

    def __init__(
        self,
        message: str,
        *,
        code: str = "llm_provider_error",
        details: dict[str, Any] | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code, details=details)
        self.retryable = retryable
        self.retry_after = retry_after
        if code == "llm_timeout":
            self.status_code = 504


def auth_failed(provider: str, status: int) -> ProviderError:
    return ProviderError(
        f"The LLM provider {provider!r} refused the API key (HTTP {status}); an administrator must fix it",
        code="llm_auth_failed",
        details={"provider": provider, "status": status},
    )


def timed_out(provider: str, seconds: float) -> ProviderError:
    return ProviderError(
        f"The LLM provider {provider!r} sent nothing for {seconds:g} s",
        code="llm_timeout",
        details={"provider": provider, "timeoutSeconds": seconds},
    )


def past_deadline(provider: str, seconds: float) -> ProviderError:
    return ProviderError(
        f"The LLM provider {provider!r} did not finish answering within {seconds:g} s",
        code="llm_timeout",
        details={"provider": provider, "deadlineSeconds": seconds},
    )


def bad_response(provider: str, why: str) -> ProviderError:
    return ProviderError(
        f"The LLM provider {provider!r} sent an answer that cannot be read: {why}",
        code="llm_bad_response",
        details={"provider": provider},
    )
