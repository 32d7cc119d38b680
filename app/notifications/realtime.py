"""Realtime delivery of new notifications to signed-in users (the SSE stream).

``announce`` is called in the transaction that creates notifications; they reach the stream's
subscribers only once that transaction commits.
"""

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession


async def announce(db: AsyncSession, notifications: Sequence[dict[str, Any]]) -> None:
    """Publish ``notifications`` (``notification_json`` dicts) after ``db`` commits."""
    # The broker (Redis pub/sub, or Postgres LISTEN/NOTIFY in embedded mode) is added with the
    # stream endpoint.
    return None
