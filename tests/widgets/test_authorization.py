"""Who may call what on widgets: every route of the domain against every persona, as one table.

The foundation's matrix leaves ``/api/widgets`` and ``/widget/`` to this one. Every case gets a
fresh world: a builder's listed project that an end user bought, the buyer's live widget
``{widget}`` (allowed on ``SITE``) and the builder's preview widget ``{preview}``.

Personas (the columns of ``MATRIX``): ``anonymous`` (no token), ``owner`` (the end user who owns
``{widget}``), ``other_end_user``, ``builder`` (of the project), ``super_admin``.

The management API takes the persona's access token. The runtime that ``embed.js`` calls knows
no Bazaar account: a visitor is whoever holds a session token from an allowed page. Its rows
say which credential the persona presents:

* ``(session)``: the persona opens its own visitor session from ``SITE`` (its access token sent
  along, and ignored) and presents that session token (beacons: in the body, as
  ``navigator.sendBeacon`` does, with the persona's access token still in ``Authorization``);
* ``(user token)``: the persona presents its access token where the session token belongs;
* ``another site``: the request comes from a page the widget does not allow.

Preflights and the ``embed.js`` script are public: the persona's token changes nothing there.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.routing import APIRoute

from app.core.runtime import runtime
from app.widgets import assets
from app.widgets import runtime as widget_runtime
from app.widgets.router import router as management_router
from tests.factories import Account, signed_in
from tests.matrix import assert_error_shape, event_count, matrix_cases, module_app, module_client, route_key
from tests.widgets.steps import SITE, bought_project, generate

PERSONAS = ("anonymous", "owner", "other_end_user", "builder", "super_admin")
OTHER_SITE = "https://elsewhere.example.net"
PREFIXES = ("/api/widgets", "/widget/")

# ``{me}`` is the caller's own user id (the owner's for anonymous callers); ``{version}`` the
# current embed.js version. Columns: anonymous, owner, other_end_user, builder, super_admin.
# fmt: off
MATRIX: dict[str, tuple[int, ...]] = {
    #                                                                 anon  owner  other  builder  admin
    "POST /api/widgets/generate":                                     (401,  201,   403,   201,     403),
    "GET /api/widgets/user/{owner}":                                  (401,  200,   404,   404,     200),
    "GET /api/widgets/user/{me}":                                     (401,  200,   200,   200,     200),
    "GET /api/widgets/{widget}":                                      (401,  200,   404,   404,     200),
    "GET /api/widgets/{missing}":                                     (401,  404,   404,   404,     404),
    "PUT /api/widgets/{widget}/config":                               (401,  200,   404,   404,     403),
    "POST /api/widgets/{widget}/rotate-secret":                       (401,  200,   404,   404,     403),
    "GET /api/widgets/{widget}/analytics":                            (401,  200,   404,   200,     200),
    "GET /api/widgets/{widget}/customers":                            (401,  200,   404,   404,     200),
    "POST /widget/v1/session":                                        (201,  201,   201,   201,     201),
    "POST /widget/v1/session (another site)":                         (403,  403,   403,   403,     403),
    "POST /widget/v1/chat (session)":                                 (200,  200,   200,   200,     200),
    "POST /widget/v1/chat (session, another site)":                   (403,  403,   403,   403,     403),
    "POST /widget/v1/chat (user token)":                              (401,  401,   401,   401,     401),
    "POST /api/widgets/{widget}/track-usage (session)":               (202,  202,   202,   202,     202),
    "POST /api/widgets/{widget}/track-usage (session, another site)": (403,  403,   403,   403,     403),
    "POST /api/widgets/{preview}/track-usage (session)":              (403,  403,   403,   403,     403),
    "POST /api/widgets/{missing}/track-usage (session)":              (404,  404,   404,   404,     404),
    "POST /api/widgets/{widget}/track-usage (user token)":            (401,  401,   401,   401,     401),
    "OPTIONS /widget/v1/session":                                     (204,  204,   204,   204,     204),
    "OPTIONS /widget/v1/chat":                                        (204,  204,   204,   204,     204),
    "OPTIONS /api/widgets/{widget}/track-usage":                      (204,  204,   204,   204,     204),
    "GET /widget/v1/embed.js":                                        (200,  200,   200,   200,     200),
    "GET /widget/v1/embed.{version}.js":                              (200,  200,   200,   200,     200),
}
# fmt: on

# The error code behind each refusal that is not plain authentication (401: not_authenticated).
NOT_MINE = dict.fromkeys(("other_end_user", "builder"), "widget_not_found")
CODES: dict[str, dict[str, str]] = {
    "POST /api/widgets/generate": dict.fromkeys(("other_end_user", "super_admin"), "purchase_required"),
    "GET /api/widgets/user/{owner}": dict.fromkeys(("other_end_user", "builder"), "user_not_found"),
    "GET /api/widgets/{widget}": NOT_MINE,
    "GET /api/widgets/{missing}": dict.fromkeys(PERSONAS, "widget_not_found"),
    "PUT /api/widgets/{widget}/config": {**NOT_MINE, "super_admin": "not_owner"},
    "POST /api/widgets/{widget}/rotate-secret": {**NOT_MINE, "super_admin": "not_owner"},
    "GET /api/widgets/{widget}/analytics": {"other_end_user": "widget_not_found"},
    "GET /api/widgets/{widget}/customers": NOT_MINE,
    "POST /widget/v1/session (another site)": dict.fromkeys(PERSONAS, "origin_not_allowed"),
    "POST /widget/v1/chat (session, another site)": dict.fromkeys(PERSONAS, "origin_not_allowed"),
    "POST /widget/v1/chat (user token)": {
        "anonymous": "session_required",
        **dict.fromkeys(PERSONAS[1:], "invalid_session"),
    },
    "POST /api/widgets/{widget}/track-usage (session, another site)": dict.fromkeys(
        PERSONAS, "origin_not_allowed"
    ),
    "POST /api/widgets/{preview}/track-usage (session)": dict.fromkeys(
        PERSONAS, "session_for_another_widget"
    ),
    "POST /api/widgets/{missing}/track-usage (session)": dict.fromkeys(PERSONAS, "widget_not_found"),
    "POST /api/widgets/{widget}/track-usage (user token)": {
        "anonymous": "session_required",
        **dict.fromkeys(PERSONAS[1:], "invalid_session"),
    },
}


@dataclass
class World:
    builder: Account
    owner: Account
    project: UUID
    widget: dict[str, Any]
    preview: dict[str, Any]
    actor: Account | None  # None: anonymous

    @property
    def me(self) -> Account:
        return self.actor or self.owner


def _beacons(_: World) -> dict[str, Any]:
    return {
        "events": [
            {"eventId": str(uuid4()), "kind": "impression", "occurredAt": "2026-11-26T10:00:00Z"},
            {"eventId": str(uuid4()), "kind": "open", "occurredAt": "2026-11-26T10:00:01Z"},
        ]
    }


BODIES: dict[str, Callable[[World], dict[str, Any]]] = {
    "POST /api/widgets/generate": lambda w: {"projectId": str(w.project), "allowedOrigins": [SITE]},
    "PUT /api/widgets/{widget}/config": lambda _: {"name": "Renamed", "appearance": {"title": "Ask us"}},
    "POST /widget/v1/session": lambda w: {"widgetKey": w.widget["publicKey"]},
    "POST /widget/v1/session (another site)": lambda w: {"widgetKey": w.widget["publicKey"]},
    "POST /widget/v1/chat (session)": lambda _: {"message": "Do you ship abroad?"},
    "POST /widget/v1/chat (session, another site)": lambda _: {"message": "Do you ship abroad?"},
    "POST /widget/v1/chat (user token)": lambda _: {"message": "Do you ship abroad?"},
    "POST /api/widgets/{widget}/track-usage (session)": _beacons,
    "POST /api/widgets/{widget}/track-usage (session, another site)": _beacons,
    "POST /api/widgets/{preview}/track-usage (session)": _beacons,
    "POST /api/widgets/{missing}/track-usage (session)": _beacons,
    "POST /api/widgets/{widget}/track-usage (user token)": _beacons,
}

CASES = matrix_cases(MATRIX, PERSONAS)

app = module_app()
client = module_client()


async def make_world(client: httpx.AsyncClient, persona: str) -> World:
    shop = await bought_project(client)
    widget = await generate(client, shop.buyer, shop.project, name="Shop chat")
    preview = await generate(client, shop.builder, shop.project, name="Preview")
    actor: Account | None = {"owner": shop.buyer, "builder": shop.builder}.get(persona)
    if persona == "other_end_user":
        actor = await signed_in(client, "end_user")
    elif persona == "super_admin":
        actor = await signed_in(client, "super_admin")
    return World(shop.builder, shop.buyer, shop.project, widget, preview, actor)


async def usage_landed() -> int:
    """Beacons handed to the data platform so far: the Redis stream's length (or, without Redis,
    the outbox, which ``event_count`` counts)."""
    settings = runtime().settings
    if settings.redis_url is None:
        return 0
    r = aioredis.Redis.from_url(settings.redis_url)
    try:
        return int(await r.xlen(settings.redis_prefix + settings.usage_stream))
    finally:
        await r.aclose()


async def visitor_session(client: httpx.AsyncClient, world: World, persona: str) -> str:
    """The persona, as a visitor of ``SITE``, opens its own session (its access token, if any,
    goes along and makes no difference)."""
    response = await client.post(
        "/widget/v1/session",
        json={"widgetKey": world.widget["publicKey"], "visitorId": f"visitor-{persona}"},
        headers={**(world.actor.headers if world.actor else {}), "Origin": SITE},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


@pytest.mark.parametrize(("endpoint", "persona", "expected"), CASES)
async def test_persona_gets_the_status_the_matrix_promises(
    client: httpx.AsyncClient, endpoint: str, persona: str, expected: int
) -> None:
    world = await make_world(client, persona)
    method, template = endpoint.split()[:2]
    mode = endpoint.partition("(")[2].rstrip(")")
    path = template.format(
        widget=world.widget["id"],
        preview=world.preview["id"],
        missing=uuid4(),
        owner=world.owner.id,
        me=world.me.id,
        version=assets.embed_script().version,
    )
    runtime_route = path.startswith("/widget/") or path.endswith("/track-usage")
    origin = OTHER_SITE if "another site" in mode else SITE
    body = BODIES[endpoint](world) if endpoint in BODIES else None
    headers = {**(world.actor.headers if world.actor else {}), "Idempotency-Key": str(uuid4())}
    if runtime_route:
        headers["Origin"] = origin
    if method == "OPTIONS":
        headers["Access-Control-Request-Method"] = "POST"
    if mode.startswith("session"):
        token = await visitor_session(client, world, persona)
        if path.endswith("/track-usage"):
            assert body is not None
            body["token"] = token
        else:
            headers["Authorization"] = f"Bearer {token}"
    events_before, landed_before = await event_count(), await usage_landed()

    response = await client.request(method, path, json=body, headers=headers)

    assert response.status_code == expected, response.text
    if 400 <= expected < 500:
        error = assert_error_shape(response)
        wanted = "not_authenticated" if expected == 401 and not runtime_route else CODES[endpoint][persona]
        assert error["code"] == wanted, error
        assert await event_count() == events_before, "a refused request must change nothing"
        assert await usage_landed() == landed_before, "a refused beacon must not be landed"
    if expected == 401 and not runtime_route:
        assert response.headers["www-authenticate"] == "Bearer"
    if method == "GET":
        assert await event_count() == events_before, "reading must change nothing"
    elif expected < 300 and not runtime_route:
        assert await event_count() > events_before, "a change must be recorded"
    if runtime_route:
        _check_runtime_answer(response, endpoint, origin)
        if expected == 202:
            assert body is not None
            assert response.json() == {"accepted": len(body["events"])}
            landed = await usage_landed() - landed_before + await event_count() - events_before
            assert landed == len(body["events"]), "accepted beacons go to the usage stream"
    else:
        _check_management_answer(response, endpoint, world, persona)


def _check_runtime_answer(response: httpx.Response, endpoint: str, origin: str) -> None:
    """A visitor's answers are readable only by the allowed page that opened the session."""
    allowed_origin = response.headers.get("access-control-allow-origin")
    if endpoint.startswith("GET /widget/v1/embed"):
        assert allowed_origin == "*"  # a public script any page may load
        assert response.headers["content-type"].startswith("application/javascript")
    elif origin == OTHER_SITE and endpoint.startswith("POST /widget/v1/session"):
        # The refusal is readable, so the script stops at once; it holds no token.
        assert allowed_origin == OTHER_SITE
        assert "token" not in response.json()
    elif origin == OTHER_SITE:
        assert allowed_origin is None, "another site must not read a visitor's answers"
    elif response.status_code < 300:
        assert allowed_origin == SITE
    if endpoint == "POST /widget/v1/chat (session)":
        assert response.json()["message"]["content"], "the project answered"
    if endpoint.startswith("OPTIONS"):
        assert "POST" in response.headers["access-control-allow-methods"]


def _check_management_answer(response: httpx.Response, endpoint: str, world: World, persona: str) -> None:
    """What is returned is what was asked for, and nothing secret leaks beyond its moment."""
    if response.status_code >= 300:
        assert world.widget["secretKey"] not in response.text
        return
    returned = response.json()
    if endpoint == "POST /api/widgets/generate":
        assert returned["kind"] == ("preview" if persona == "builder" else "live")
        assert returned["secretKey"].startswith("sk_")
    elif endpoint == "POST /api/widgets/{widget}/rotate-secret":
        assert returned["id"] == world.widget["id"]
        assert returned["secretKey"] != world.widget["secretKey"]
    elif endpoint == "GET /api/widgets/{widget}/customers":
        assert returned["widgetId"] == world.widget["id"]
        assert (returned["items"], returned["pagination"]["total"]) == ([], 0), "no customer chatted"
    elif "items" in returned:
        asked = response.url.path.rsplit("/", 1)[-1]
        assert all(item["userId"] == asked for item in returned["items"])
        widgets_of = {str(world.owner.id): 1, str(world.builder.id): 1}  # the live one, the preview
        assert returned["pagination"]["total"] == widgets_of.get(asked, 0)
    else:
        assert returned.get("widgetId", returned.get("id")) == world.widget["id"]
        assert "secretKey" not in returned


def _domain_routes(app: FastAPI) -> set[tuple[str, str]]:
    """The domain's routes: those in the OpenAPI schema under its prefixes (whichever module
    declares them, e.g. a widget's analytics) and the ones its routers keep out of the schema
    (preflights, the embed script)."""
    routes = {
        route_key(method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
        if path.startswith(PREFIXES)
    }
    for domain_router in (management_router, widget_runtime.router, assets.router):
        for route in domain_router.routes:
            if isinstance(route, APIRoute) and route.path.startswith(PREFIXES):
                routes |= {route_key(method, route.path) for method in route.methods or ()}
    return routes


def test_matrix_covers_every_widget_route(app: FastAPI) -> None:
    in_matrix = {route_key(*endpoint.split()[:2]) for endpoint in MATRIX}
    assert _domain_routes(app) == in_matrix
    assert set(BODIES) <= set(MATRIX)
    assert set(CODES) <= set(MATRIX)
    assert all(len(codes) == len(PERSONAS) for codes in MATRIX.values())


async def test_no_bazaar_account_opens_the_runtime_without_a_session(client: httpx.AsyncClient) -> None:
    """Even the widget's owner and an administrator, with their access tokens and an allowed
    Origin, are strangers to the runtime: only a session token counts, and nothing is landed."""
    world = await make_world(client, "super_admin")
    assert world.actor is not None
    landed_before = await usage_landed()

    for account in (world.owner, world.actor):
        headers = {**account.headers, "Origin": SITE}
        chat = await client.post("/widget/v1/chat", json={"message": "Hi"}, headers=headers)
        beacons = await client.post(
            f"/api/widgets/{world.widget['id']}/track-usage",
            content=orjson.dumps({**_beacons(world), "token": account.access_token}),
            headers={"Content-Type": "text/plain", "Origin": SITE},
        )
        assert (chat.status_code, chat.json()["error"]["code"]) == (401, "invalid_session")
        assert (beacons.status_code, beacons.json()["error"]["code"]) == (401, "invalid_session")

    assert await usage_landed() == landed_before


async def test_a_session_token_is_no_access_token(client: httpx.AsyncClient) -> None:
    """The other direction: a visitor's session token opens none of the management API."""
    world = await make_world(client, "owner")
    token = await visitor_session(client, world, "owner")
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid4())}

    read = await client.get(f"/api/widgets/{world.widget['id']}", headers=headers)
    rotate = await client.post(f"/api/widgets/{world.widget['id']}/rotate-secret", headers=headers)
    mine = await client.get(f"/api/widgets/user/{world.owner.id}", headers=headers)

    assert [r.status_code for r in (read, rotate, mine)] == [401, 401, 401]
    assert {assert_error_shape(r)["code"] for r in (read, rotate, mine)} == {"invalid_token"}
    still = await client.get(f"/api/widgets/{world.widget['id']}", headers=world.owner.headers)
    assert still.status_code == 200
    assert still.json()["updatedAt"] == world.widget["updatedAt"], "the secret must not have rotated"


async def test_someone_elses_widget_looks_exactly_like_a_missing_one(client: httpx.AsyncClient) -> None:
    world = await make_world(client, "other_end_user")
    assert world.actor is not None

    for snoop in (world.actor, world.builder):
        theirs = await client.get(f"/api/widgets/{world.widget['id']}", headers=snoop.headers)
        missing = await client.get(f"/api/widgets/{uuid4()}", headers=snoop.headers)
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json() == missing.json()
        change = await client.put(
            f"/api/widgets/{world.widget['id']}/config",
            json={"behaviour": {"allowedOrigins": [OTHER_SITE]}},
            headers=snoop.headers,
        )
        assert change.status_code == 404

    session = await client.post(
        "/widget/v1/session", json={"widgetKey": world.widget["publicKey"]}, headers={"Origin": OTHER_SITE}
    )
    assert session.status_code == 403, "the snoops' attempts must not have allowed their site"
