"""What the authorization matrices (``tests/test_authorization.py`` and the per-domain
``test_authorization.py`` files) share: the persona columns, the module-wide app and client,
the error-shape and event-count checks and the route key used for the coverage tests.

Each matrix keeps its own table (``MATRIX``) and its own world-building next to its tests.
"""

import re
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.core.db import sessionmaker
from app.models import OutboxEvent
from tests.conftest import build_settings, http_client, running_app
from tests.factories import Account, signed_in

PERSONAS = ("anonymous", "end_user", "owner", "other_builder", "super_admin")


def module_app(**changes: Any) -> Callable[..., AsyncIterator[FastAPI]]:
    """An ``app`` fixture shared by the whole module (a fresh app per case would make a matrix
    slow), with ``changes`` on top of the test settings. Every case logs in from the same test
    client address, so the login rate limit per address is lifted."""

    @pytest.fixture(scope="module")
    async def app(
        database_url: str, redis_url: str | None, redis_prefix: str, tmp_path_factory: pytest.TempPathFactory
    ) -> AsyncIterator[FastAPI]:
        settings = build_settings(
            database_url,
            redis_url,
            redis_prefix,
            tmp_path_factory.mktemp("var"),
            {"login_rate_limit_ip": "100000/minute", **changes},
        )
        async with running_app(settings) as application:
            yield application

    return app


def module_client() -> Callable[..., AsyncIterator[httpx.AsyncClient]]:
    """A ``client`` fixture on the module's ``app``, shared by the whole module."""

    @pytest.fixture(scope="module")
    async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
        async with http_client(app) as http:
            yield http

    return client


async def event_count(*, ignoring: tuple[str, ...] = ()) -> int:
    """Events recorded so far, leaving out the types in ``ignoring``."""
    async with sessionmaker()() as db:
        stmt = select(func.count()).select_from(OutboxEvent).where(OutboxEvent.type.not_in(ignoring))
        return int((await db.execute(stmt)).scalar_one())


def assert_error_shape(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, body
    assert isinstance(error["code"], str), body
    assert error["code"], body
    assert isinstance(error["message"], str), body
    assert error["message"], body
    assert isinstance(error["details"], dict), body
    return dict(error)


def route_key(method: str, path: str) -> tuple[str, str]:
    """A route as the coverage tests compare it: path parameters' names do not matter."""
    return method, re.sub(r"\{[^}]+\}", "{}", path)


def assert_matrix_covers(app: FastAPI, matrix: Iterable[str], where: Callable[[str], bool]) -> None:
    """The rows of ``matrix`` (``"METHOD /path"``, then a query or a note) name exactly the app's
    routes whose path ``where`` accepts: a new route without a row fails, as does a stale row."""
    routes = {
        route_key(method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
        if where(path)
    }
    in_matrix = {route_key(*endpoint.split("?")[0].split()[:2]) for endpoint in matrix}
    assert routes == in_matrix, (
        f"routes missing from the matrix: {sorted(routes - in_matrix)}; "
        f"rows that are no route: {sorted(in_matrix - routes)}"
    )


async def actor_for(client: httpx.AsyncClient, persona: str, **cast: Account) -> Account | None:
    """Who calls as ``persona``: nobody for ``anonymous``, the account ``cast`` names for it
    (``owner=...``, ``end_user=buyer``), else one signed in for the case (``other_builder``: a
    builder who owns nothing of the world)."""
    if persona == "anonymous":
        return None
    if persona in cast:
        return cast[persona]
    return await signed_in(client, "builder" if persona == "other_builder" else persona)


def matrix_cases(matrix: dict[str, tuple[int, ...]], personas: tuple[str, ...] = PERSONAS) -> list[Any]:
    """One test case per cell of ``matrix``: (endpoint, persona, expected status)."""
    return [
        pytest.param(endpoint, persona, status, id=f"{endpoint} | {persona} -> {status}")
        for endpoint, statuses in matrix.items()
        for persona, status in zip(personas, statuses, strict=True)
    ]
