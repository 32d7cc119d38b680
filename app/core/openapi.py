"""OpenAPI helpers: every route documents its error responses in the one error shape."""

from typing import Any

_DESCRIPTIONS = {
    400: ("bad_request", "Malformed request (for example invalid JSON)"),
    401: ("not_authenticated", "Missing, invalid or expired access token, or a revoked session"),
    403: ("permission_denied", "The active persona may not do this"),
    404: ("not_found", "The resource does not exist or is not visible to you"),
    409: ("conflict", "The request conflicts with the resource's current state"),
    413: ("payload_too_large", "Request body too large"),
    422: ("validation_error", "A field is missing, of the wrong type, or unknown"),
    429: ("rate_limited", "Too many attempts; retry after the `Retry-After` seconds"),
    503: ("service_unavailable", "A dependency (database, Redis) is unavailable"),
}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for the given statuses (422 is always included by FastAPI)."""
    documented: dict[int | str, dict[str, Any]] = {}
    for status in (*statuses, 422):
        code, description = _DESCRIPTIONS[status]
        documented[status] = {
            "description": description,
            "content": {
                "application/json": {
                    "schema": ERROR_SCHEMA,
                    "example": {"error": {"code": code, "message": description, "details": {}}},
                }
            },
        }
    return documented
