"""The project state machine, exhaustively: every (from, to) pair through the API for builders,
and through ``set_marketplace_status`` for the marketplace.

The allowed moves are written out below by hand (the spec). The code's tables are checked
against them, and every expected outcome is derived from them, never copied from the code.
"""

from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from sqlalchemy import update

from app.core.db import commit, sessionmaker
from app.core.errors import Conflict
from app.models import Project, ProjectStatus
from app.projects.service import project_service
from app.projects.states import MARKETPLACE_TRANSITIONS, OWNER_TRANSITIONS
from tests.factories import Account, create_project, create_user, events_of, signed_in

OWNER_STATUSES = ["draft", "in_development", "ready", "archived"]
MARKETPLACE_STATUSES = ["published", "held"]
ALL_STATUSES = OWNER_STATUSES + MARKETPLACE_STATUSES

# The spec: moves a builder makes with PUT /api/projects/:id/status.
BUILDER_MOVES = {
    ("draft", "in_development"),
    ("draft", "archived"),
    ("in_development", "draft"),
    ("in_development", "ready"),
    ("in_development", "archived"),
    ("ready", "in_development"),
    ("ready", "archived"),
    ("archived", "draft"),
}
# The spec: moves the marketplace makes (publish, hold, reinstate, delist).
MARKETPLACE_MOVES = {
    ("ready", "published"),
    ("published", "held"),
    ("published", "ready"),
    ("held", "published"),
    ("held", "ready"),
}


def edges(table: dict[ProjectStatus, frozenset[ProjectStatus]]) -> set[tuple[str, str]]:
    return {(source.value, target.value) for source, targets in table.items() for target in targets}


def test_code_transition_tables_agree_with_the_spec() -> None:
    assert {s.value for s in ProjectStatus} == set(ALL_STATUSES)
    assert set(OWNER_TRANSITIONS) == set(ProjectStatus)
    assert set(MARKETPLACE_TRANSITIONS) == set(ProjectStatus)
    assert edges(OWNER_TRANSITIONS) == BUILDER_MOVES
    assert edges(MARKETPLACE_TRANSITIONS) == MARKETPLACE_MOVES


def test_spec_never_lets_a_builder_publish_or_unpublish() -> None:
    """Listing is the marketplace's: no builder move enters or leaves published/held."""
    assert all(s not in MARKETPLACE_STATUSES and t not in MARKETPLACE_STATUSES for s, t in BUILDER_MOVES)


async def put_in(project: UUID, status: str) -> None:
    """Arrange: the project is in ``status`` (listed statuses reached the marketplace's way)."""
    start = "ready" if status in MARKETPLACE_STATUSES else status
    async with sessionmaker()() as db:
        await db.execute(update(Project).where(Project.id == project).values(status=start))
        if status in MARKETPLACE_STATUSES:
            await project_service.set_marketplace_status(db, uuid4(), project, ProjectStatus.PUBLISHED)
        if status == "held":
            await project_service.set_marketplace_status(db, uuid4(), project, ProjectStatus.HELD)
        await commit(db)


async def status_events(project: UUID) -> list[dict[str, Any]]:
    return [e for e in await events_of("project.status_changed") if e["subject_id"] == str(project)]


def expected_builder_outcome(source: str, target: str) -> tuple[int, str | None]:
    if target in MARKETPLACE_STATUSES:
        return 422, "validation_error"  # the request schema only knows the builder's statuses
    if source == target:
        return 200, None  # asking for the current status is a no-op
    if (source, target) in BUILDER_MOVES:
        return 200, None
    return 409, "invalid_status_transition"


@pytest.mark.parametrize("source", ALL_STATUSES)
async def test_builder_moves_a_project_only_along_the_allowed_edges(
    client: httpx.AsyncClient, source: str
) -> None:
    owner = await signed_in(client, "builder")
    project = await create_project(owner)

    outcomes: dict[str, tuple[int, str | None]] = {}
    for target in ALL_STATUSES:
        await put_in(project, source)
        events_before = await status_events(project)

        response = await client.put(
            f"/api/projects/{project}/status", json={"status": target}, headers=owner.headers
        )

        body = response.json()
        outcomes[target] = (response.status_code, body["error"]["code"] if "error" in body else None)
        new_events = (await status_events(project))[len(events_before) :]
        now = (await client.get(f"/api/projects/{project}", headers=owner.headers)).json()["status"]
        if response.status_code == 200 and target != source:
            assert body["status"] == now == target
            assert [e["payload"] for e in new_events] == [
                {"from": source, "to": target, "ownerId": str(owner.id)}
            ]
            assert new_events[0]["actor_id"] == owner.id
        else:
            assert now == source, f"{source} -> {target} changed the status"
            assert new_events == [], f"{source} -> {target} wrote an event"
        if response.status_code == 409:
            assert body["error"]["details"] == {"from": source, "to": target}

    assert outcomes == {target: expected_builder_outcome(source, target) for target in ALL_STATUSES}


async def test_admin_moves_a_builders_project_and_is_recorded_as_the_actor(client: httpx.AsyncClient) -> None:
    owner = await signed_in(client, "builder")
    admin = await signed_in(client, "super_admin")
    project = await create_project(owner)

    response = await client.put(
        f"/api/projects/{project}/status", json={"status": "archived"}, headers=admin.headers
    )

    assert response.status_code == 200
    [event] = await status_events(project)
    assert event["actor_id"] == admin.id
    assert event["payload"] == {"from": "draft", "to": "archived", "ownerId": str(owner.id)}


async def test_a_full_builder_journey_from_draft_to_ready_and_back_to_draft(
    client: httpx.AsyncClient,
) -> None:
    owner = await signed_in(client, "builder")
    project = await create_project(owner)
    journey = ["in_development", "ready", "archived", "draft", "in_development", "draft"]

    for target in journey:
        response = await client.put(
            f"/api/projects/{project}/status", json={"status": target}, headers=owner.headers
        )
        assert response.status_code == 200, (target, response.text)

    moves = [(e["payload"]["from"], e["payload"]["to"]) for e in await status_events(project)]
    assert moves == list(zip(["draft", *journey[:-1]], journey, strict=True))


@pytest.mark.parametrize("source", ALL_STATUSES)
async def test_marketplace_moves_a_project_only_along_the_allowed_edges(app: Any, source: str) -> None:
    user = await create_user("builder")
    project = await create_project(Account(id=user.id, email=user.email, persona="builder"))
    marketplace = uuid4()

    outcomes: dict[str, object] = {}
    for target in ALL_STATUSES:
        await put_in(project, source)
        events_before = await status_events(project)
        async with sessionmaker()() as db:
            try:
                await project_service.set_marketplace_status(db, marketplace, project, ProjectStatus(target))
                await commit(db)
                outcomes[target] = "moved"
            except Conflict as refusal:
                await db.rollback()
                outcomes[target] = (refusal.code, refusal.details)

        new_events = (await status_events(project))[len(events_before) :]
        async with sessionmaker()() as db:
            now = (await db.get(Project, project)).status  # type: ignore[union-attr]
        if outcomes[target] == "moved":
            assert now == target
            assert [(e["actor_id"], e["payload"]) for e in new_events] == [
                (marketplace, {"from": source, "to": target, "ownerId": str(user.id)})
            ]
        else:
            assert now == source, f"{source} -> {target} changed the status"
            assert new_events == [], f"{source} -> {target} wrote an event"

    assert outcomes == {
        target: "moved"
        if (source, target) in MARKETPLACE_MOVES
        else ("invalid_status_transition", {"from": source, "to": target})
        for target in ALL_STATUSES
    }
