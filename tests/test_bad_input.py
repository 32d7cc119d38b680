"""Bad input is refused with the documented error shape, never a 500, and changes nothing.

Every test checks the refusal and that no row or outbox event was written: a sign-up that was
refused leaves no account, a refused project change leaves the project as it was.
"""

import base64
import json
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import jwt
import pytest

from app.core.config import Settings
from app.core.db import sessionmaker
from app.users.service import user_service
from tests.conftest import http_client, running_app
from tests.factories import PASSWORD, Account, create_project, events_of, signed_in, unique_email

JSON = {"content-type": "application/json"}


def sign_up_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "email": unique_email("signup"),
        "password": PASSWORD,
        "name": "New user",
        "persona": "builder",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


def refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is the documented error shape with this status and code; returns the error."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, body
    assert error["code"] == code, body
    assert isinstance(error["message"], str), body
    assert error["message"], body
    assert isinstance(error["details"], dict), body
    return dict(error)


def outcome(response: httpx.Response) -> tuple[int, str]:
    """(status, error code) of a refusal in the documented error shape."""
    error = refused(response, response.status_code, response.json().get("error", {}).get("code"))
    return response.status_code, error["code"]


def invalid_fields(error: dict[str, Any]) -> list[tuple[str, ...]]:
    return [tuple(e["loc"]) for e in error["details"]["errors"]]


async def assert_no_account(email: str | None) -> None:
    """No sign-up happened: no ``user.created`` event, and no account with that email."""
    assert [e for e in await events_of("user.created") if e["payload"].get("signup")] == []
    if email is not None:
        async with sessionmaker()() as db:
            assert await user_service.get_by_email(db, email) is None, f"an account for {email} exists"


async def project_state(client: httpx.AsyncClient, owner: Account, project: uuid.UUID) -> dict[str, Any]:
    response = await client.get(f"/api/projects/{project}", headers=owner.headers)
    assert response.status_code == 200
    return dict(response.json())


# --- malformed JSON and bodies that are not JSON objects ---------------------------------------

NOT_JSON: dict[str, tuple[bytes, dict[str, str], int, str]] = {
    # case: (raw body, headers, status, code)
    "truncated": (b'{"email": "a@example.com", "password": ', JSON, 400, "malformed_json"),
    "single quotes": (b"{'email': 'a@example.com'}", JSON, 400, "malformed_json"),
    "trailing comma": (b'{"email": "a@example.com",}', JSON, 400, "malformed_json"),
    "form-encoded": (b"email=a@example.com&password=x", JSON, 400, "malformed_json"),
    "nested 5000 deep": (b"[" * 5000 + b"]" * 5000, JSON, 400, "bad_request"),
    "invalid utf-8": (b'{"email": "\xff\xfe"}', JSON, 400, "bad_request"),
    "json array": (b"[]", JSON, 422, "validation_error"),
    "json string": (b'"a string"', JSON, 422, "validation_error"),
    "json null": (b"null", JSON, 422, "validation_error"),
    # FastAPI parses JSON only when the request says it is JSON.
    "no content-type": (
        json.dumps(sign_up_body(email="a@example.com")).encode(),
        {},
        422,
        "validation_error",
    ),
    "text/plain": (
        json.dumps(sign_up_body(email="a@example.com")).encode(),
        {"content-type": "text/plain"},
        422,
        "validation_error",
    ),
}


async def test_sign_up_body_that_is_not_a_json_object_is_refused_and_creates_no_account(
    client: httpx.AsyncClient,
) -> None:
    outcomes = {}
    for case, (raw, headers, _, _) in NOT_JSON.items():
        response = await client.post("/api/users", content=raw, headers=headers)
        outcomes[case] = outcome(response)

    assert outcomes == {case: (status, code) for case, (_, _, status, code) in NOT_JSON.items()}
    await assert_no_account("a@example.com")


async def test_malformed_json_project_update_leaves_the_project_unchanged(client: httpx.AsyncClient) -> None:
    owner = await signed_in(client, "builder")
    project = await create_project(owner, name="Stable")
    before = await project_state(client, owner, project)

    response = await client.put(
        f"/api/projects/{project}", content=b'{"name": "Changed"', headers={**owner.headers, **JSON}
    )

    refused(response, 400, "malformed_json")
    assert await project_state(client, owner, project) == before
    assert await events_of("project.updated") == []


# --- wrong types, unknown and missing fields -------------------------------------------------

SIGN_UP_WRONG_TYPES: list[tuple[str, Any]] = [
    ("email", 123),
    ("email", "not-an-email"),
    ("password", 12345678901),
    ("password", "short"),
    ("name", {"first": "A"}),
    ("name", ""),
    ("persona", "wizard"),
    ("personas", "builder"),
    ("metadata", "not-an-object"),
]


async def test_sign_up_with_a_wrong_type_is_422_naming_the_field(client: httpx.AsyncClient) -> None:
    invalid = {}
    for field, value in SIGN_UP_WRONG_TYPES:
        response = await client.post("/api/users", json=sign_up_body(**{field: value}))
        invalid[(field, repr(value))] = invalid_fields(refused(response, 422, "validation_error"))

    assert invalid == {(field, repr(value)): [("body", field)] for field, value in SIGN_UP_WRONG_TYPES}
    await assert_no_account(None)


async def test_sign_up_without_a_required_field_is_422_naming_it(client: httpx.AsyncClient) -> None:
    for missing in ["email", "password", "name", "persona"]:
        response = await client.post("/api/users", json=sign_up_body(**{missing: ...}))

        error = refused(response, 422, "validation_error")
        assert error["details"]["errors"] == [
            {"loc": ["body", missing], "type": "missing", "message": "Field required"}
        ]
    await assert_no_account(None)


async def test_sign_up_with_an_unknown_field_is_422_even_a_tempting_one(client: httpx.AsyncClient) -> None:
    body = sign_up_body(plan="business", status="active")

    response = await client.post("/api/users", json=body)

    error = refused(response, 422, "validation_error")
    assert sorted(invalid_fields(error)) == [("body", "plan"), ("body", "status")]
    assert {e["type"] for e in error["details"]["errors"]} == {"extra_forbidden"}
    await assert_no_account(body["email"])


async def test_project_create_with_wrong_types_or_missing_name_creates_nothing(
    client: httpx.AsyncClient,
) -> None:
    owner = await signed_in(client, "builder")
    bad_bodies: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
        "name is a number": ({"name": 42}, ("body", "name")),
        "name is empty": ({"name": ""}, ("body", "name")),
        "name is missing": ({"description": "no name"}, ("body", "name")),
        "mcpServers is a string": ({"name": "A", "mcpServers": "srv"}, ("body", "mcpServers")),
        "mcpServers holds a number": ({"name": "A", "mcpServers": [1]}, ("body", "mcpServers", "0")),
        "metadata is a list": ({"name": "A", "metadata": []}, ("body", "metadata")),
        "llm is a number": ({"name": "A", "llm": 5}, ("body", "llm")),
        "description too long": ({"name": "A", "description": "x" * 5001}, ("body", "description")),
        "unknown status field": ({"name": "A", "status": "published"}, ("body", "status")),
        "unknown owner field": ({"name": "A", "userId": str(uuid.uuid4())}, ("body", "userId")),
    }
    invalid = {}
    for case, (body, _) in bad_bodies.items():
        response = await client.post("/api/projects", json=body, headers=owner.headers)
        invalid[case] = invalid_fields(refused(response, 422, "validation_error"))

    assert invalid == {case: [loc] for case, (_, loc) in bad_bodies.items()}
    assert await events_of("project.") == []
    listed = await client.get("/api/projects", headers=owner.headers)
    assert listed.json()["pagination"]["total"] == 0


async def test_project_update_cannot_set_fields_outside_the_schema(client: httpx.AsyncClient) -> None:
    owner = await signed_in(client, "builder")
    other = await signed_in(client, "builder")
    project = await create_project(owner)
    before = await project_state(client, owner, project)

    for body in [
        {"status": "published"},
        {"userId": str(other.id)},
        {"deletedAt": "2020-01-01T00:00:00Z"},
        {"name": "Fine", "files": []},
    ]:
        response = await client.put(f"/api/projects/{project}", json=body, headers=owner.headers)
        refused(response, 422, "validation_error")

    assert await project_state(client, owner, project) == before
    assert await events_of("project.updated") == []


async def test_user_update_cannot_set_plan_or_status(client: httpx.AsyncClient) -> None:
    user = await signed_in(client, "builder")

    for body in [{"plan": "business"}, {"status": "active"}, {"id": str(uuid.uuid4())}]:
        response = await client.put(f"/api/users/{user.id}", json=body, headers=user.headers)
        refused(response, 422, "validation_error")

    profile = (await client.get(f"/api/users/{user.id}", headers=user.headers)).json()
    assert profile["plan"] == "free"
    assert await events_of("user.updated") == []


async def test_status_change_without_or_with_a_bad_status_is_422(client: httpx.AsyncClient) -> None:
    owner = await signed_in(client, "builder")
    project = await create_project(owner)

    for body in [{}, {"status": None}, {"status": "launched"}, {"status": ["ready"]}]:
        response = await client.put(f"/api/projects/{project}/status", json=body, headers=owner.headers)
        error = refused(response, 422, "validation_error")
        assert invalid_fields(error) == [("body", "status")]

    assert (await project_state(client, owner, project))["status"] == "draft"
    assert await events_of("project.status_changed") == []


async def test_login_with_missing_or_mistyped_fields_is_422_and_starts_no_session(
    client: httpx.AsyncClient,
) -> None:
    for body in [{"email": "a@example.com"}, {"password": PASSWORD}, {"email": ["a"], "password": PASSWORD}]:
        response = await client.post("/api/auth/login", json=body)
        refused(response, 422, "validation_error")

    assert await events_of("session.") == []


# --- oversized bodies ---------------------------------------------------------------------------


def padded_sign_up(size: int) -> tuple[bytes, str]:
    """A valid sign-up body padded with JSON whitespace to exactly ``size`` bytes."""
    email = unique_email("big")
    raw = json.dumps(sign_up_body(email=email)).encode()
    assert len(raw) <= size
    return raw[:-1] + b" " * (size - len(raw)) + b"}", email


async def _chunks(raw: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(raw), size):
        yield raw[start : start + size]


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
async def test_body_over_the_limit_is_413_and_creates_no_account(
    client: httpx.AsyncClient, settings: Settings, streamed: bool
) -> None:
    limit = settings.max_request_body_bytes
    raw, email = padded_sign_up(limit + 1)
    content: bytes | AsyncIterator[bytes] = _chunks(raw) if streamed else raw

    response = await client.post("/api/users", content=content, headers=JSON)

    sent = response.request.headers
    assert ("content-length" not in sent) if streamed else (sent["content-length"] == str(limit + 1))
    error = refused(response, 413, "payload_too_large")
    assert error["details"] == {"maxBytes": limit}
    await assert_no_account(email)


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
async def test_body_exactly_at_the_limit_is_accepted(
    client: httpx.AsyncClient, settings: Settings, streamed: bool
) -> None:
    raw, email = padded_sign_up(settings.max_request_body_bytes)
    content: bytes | AsyncIterator[bytes] = _chunks(raw) if streamed else raw

    response = await client.post("/api/users", content=content, headers=JSON)

    assert response.status_code == 201, response.text
    assert response.json()["email"] == email


async def test_body_limit_follows_the_setting(make_settings: Callable[..., Settings]) -> None:
    small = make_settings(max_request_body_bytes=1024)
    raw, email = padded_sign_up(1025)
    async with running_app(small) as application:
        async with http_client(application) as http:
            too_big = await http.post("/api/users", content=raw, headers=JSON)
            streamed = await http.post("/api/users", content=_chunks(raw, 100), headers=JSON)

            error = refused(too_big, 413, "payload_too_large")
            assert error["details"] == {"maxBytes": 1024}
            refused(streamed, 413, "payload_too_large")
            await assert_no_account(email)


# --- bad tokens -----------------------------------------------------------------------------------


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims_of(account: Account, **changes: Any) -> dict[str, Any]:
    """The claims of a genuine access token of ``account`` (as the server issued them)."""
    claims = jwt.decode(account.access_token, options={"verify_signature": False})
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def forge(account: Account, settings: Settings, how: str) -> str:
    secret = settings.jwt_secret_value()
    alg = settings.jwt_algorithm
    now = int(time.time())
    if how == "garbage":
        return "not-a-jwt"
    if how == "three-garbage-segments":
        return "abc.def.ghi"
    if how == "wrong-signature":
        return str(jwt.encode(claims_of(account), "another-secret-of-sufficient-length!!", algorithm=alg))
    if how == "expired":
        return str(jwt.encode(claims_of(account, iat=now - 3600, exp=now - 60), secret, algorithm=alg))
    if how.startswith("missing-"):
        return str(
            jwt.encode(claims_of(account, **{how.removeprefix("missing-"): None}), secret, algorithm=alg)
        )
    if how == "sub-not-a-uuid":
        return str(jwt.encode(claims_of(account, sub="admin"), secret, algorithm=alg))
    if how == "alg-none":
        return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims_of(account))}."
    if how == "other-hs-algorithm":
        other = "HS512" if alg != "HS512" else "HS256"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
            return str(jwt.encode(claims_of(account), secret, algorithm=other))
    if how == "genuine-claims-resigned":
        return str(jwt.encode(claims_of(account), secret, algorithm=alg))
    raise AssertionError(how)


async def test_a_token_forged_like_the_bad_ones_but_correctly_is_accepted(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """Control for the cases below: they fail for the one defect each has, not for the recipe."""
    account = await signed_in(client, "builder")
    token = forge(account, settings, "genuine-claims-resigned")

    response = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 200, response.text


BAD_TOKENS = {
    # how the token is broken: the error code every endpoint answers with
    "garbage": "invalid_token",
    "three-garbage-segments": "invalid_token",
    "wrong-signature": "invalid_token",
    "expired": "token_expired",
    "missing-sid": "invalid_token",
    "missing-sub": "invalid_token",
    "missing-persona": "invalid_token",
    "missing-exp": "invalid_token",
    "missing-iat": "invalid_token",
    "missing-jti": "invalid_token",
    "sub-not-a-uuid": "invalid_token",
    "alg-none": "invalid_token",
    "other-hs-algorithm": "invalid_token",
}


async def test_bad_bearer_token_is_401_everywhere_and_changes_nothing(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    account = await signed_in(client, "builder")
    events_before = await events_of()

    codes = {}
    for how in BAD_TOKENS:
        headers = {"Authorization": f"Bearer {forge(account, settings, how)}"}
        me = await client.get("/api/auth/me", headers=headers)
        create = await client.post("/api/projects", json={"name": "Sneaky"}, headers=headers)
        # A bad token on sign-up is an error, not a fallback to anonymous sign-up.
        sign_up = await client.post("/api/users", json=sign_up_body(), headers=headers)
        assert {r.headers.get("www-authenticate") for r in (me, create, sign_up)} == {"Bearer"}, how
        codes[how] = {outcome(me), outcome(create), outcome(sign_up)}

    assert codes == {how: {(401, code)} for how, code in BAD_TOKENS.items()}
    assert await events_of() == events_before


async def test_authorization_header_that_is_not_a_bearer_token_is_401(client: httpx.AsyncClient) -> None:
    headers = [
        "Basic dXNlckBleGFtcGxlLmNvbTpwYXNzd29yZA==",
        "Bearer",
        "Bearer    ",
        "Token abc",
        "bearer-abc",
    ]

    codes = {}
    for header in headers:
        me = await client.get("/api/auth/me", headers={"Authorization": header})
        sign_up = await client.post("/api/users", json=sign_up_body(), headers={"Authorization": header})
        codes[header] = {outcome(me), outcome(sign_up)}

    assert codes == {header: {(401, "invalid_token")} for header in headers}
    assert await events_of() == []


# --- paths and query strings ------------------------------------------------------------------


async def test_invalid_uuid_in_a_path_is_422_naming_the_parameter(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    requests: list[tuple[str, str, dict[str, Any] | None, str]] = [
        ("GET", "/api/users/123", None, "user_id"),
        ("PUT", "/api/users/not-a-uuid", {"name": "X"}, "user_id"),
        ("DELETE", "/api/users/not-a-uuid", None, "user_id"),
        ("GET", "/api/users/xyz/projects", None, "user_id"),
        ("PUT", "/api/users/xyz/status", {"status": "suspended"}, "user_id"),
        ("PUT", "/api/users/xyz/subscription", {"plan": "pro"}, "user_id"),
        ("GET", "/api/projects/not-a-uuid", None, "project_id"),
        ("PUT", "/api/projects/1", {"name": "X"}, "project_id"),
        ("DELETE", "/api/projects/1", None, "project_id"),
        ("PUT", "/api/projects/1/status", {"status": "archived"}, "project_id"),
        ("GET", "/api/projects/user/abc", None, "user_id"),
        ("GET", "/api/projects?userId=abc", None, "userId"),
        ("GET", "/api/users/xyz/analytics", None, "user_id"),
        ("GET", "/api/analytics/user/123", None, "user_id"),
        ("GET", "/api/projects/1/analytics", None, "project_id"),
        ("GET", "/api/analytics/projects/1", None, "project_id"),
        ("GET", "/api/widgets/1/analytics", None, "widget_id"),
        ("GET", "/api/analytics/widgets/1", None, "widget_id"),
        ("GET", "/api/analytics/revenue?builderId=abc", None, "builderId"),
        ("GET", "/api/analytics/usage?projectId=abc", None, "projectId"),
    ]
    events_before = await events_of()

    for method, path, body, param in requests:
        response = await client.request(method, path, json=body, headers=admin.headers)
        error = refused(response, 422, "validation_error")
        where = "query" if "?" in path else "path"
        assert invalid_fields(error) == [(where, param)], (method, path)

    assert await events_of() == events_before


async def test_bad_pagination_or_filter_is_422_naming_the_parameter(client: httpx.AsyncClient) -> None:
    owner = await signed_in(client, "builder")
    bad = {
        "page=0": "page",
        "page=-1": "page",
        "page=abc": "page",
        "limit=0": "limit",
        "limit=1000": "limit",
        "limit=ten": "limit",
        "sort=" + "x" * 41: "sort",
        "q=" + "x" * 201: "q",
        "status=launched": "status",
    }

    invalid = {}
    for query in bad:
        response = await client.get(f"/api/projects?{query}", headers=owner.headers)
        invalid[query] = invalid_fields(refused(response, 422, "validation_error"))

    assert invalid == {query: [("query", param)] for query, param in bad.items()}
    assert (await client.get("/api/projects?page=1&limit=100", headers=owner.headers)).status_code == 200


async def test_sorting_by_an_unknown_field_is_422_listing_the_allowed_ones(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    builder = await signed_in(client, "builder")
    cases = [
        ("/api/projects?sort=unknownField", admin, ["createdAt", "name", "updatedAt"]),
        ("/api/projects?sort=-status", admin, ["createdAt", "name", "updatedAt"]),
        (f"/api/projects/user/{builder.id}?sort=prompt", builder, ["createdAt", "name", "updatedAt"]),
        (f"/api/users/{builder.id}/projects?sort=userId", builder, ["createdAt", "name", "updatedAt"]),
        ("/api/users?sort=passwordHash", admin, ["createdAt", "email", "name"]),
        ("/api/users?sort=-password_hash", admin, ["createdAt", "email", "name"]),
    ]

    for path, account, allowed in cases:
        response = await client.get(path, headers=account.headers)
        error = refused(response, 422, "invalid_sort")
        assert error["details"] == {"allowed": allowed}, path


# --- valid JSON the database cannot store ----------------------------------------------------


DEEP_METADATA = b'{"name": "A", "metadata": ' + b'{"a": ' * 300 + b"1" + b"}" * 300 + b"}"
UNSTORABLE: dict[str, tuple[str, str, bytes | None]] = {
    "nul-in-name": ("POST", "/api/projects", b'{"name": "a\\u0000b"}'),
    "nul-in-metadata": ("POST", "/api/projects", b'{"name": "A", "metadata": {"k": "\\u0000"}}'),
    "nan-in-metadata": ("POST", "/api/projects", b'{"name": "A", "metadata": {"score": NaN}}'),
    "infinity-in-metadata": ("POST", "/api/projects", b'{"name": "A", "metadata": {"n": 1e400}}'),
    "metadata-300-deep": ("POST", "/api/projects", DEEP_METADATA),
    "nul-in-search": ("GET", "/api/projects?q=a%00b", None),
}


@pytest.mark.parametrize("case", UNSTORABLE)
async def test_valid_json_the_database_cannot_store_is_refused_with_4xx_not_500(
    client: httpx.AsyncClient, case: str
) -> None:
    owner = await signed_in(client, "builder")
    method, path, raw = UNSTORABLE[case]

    response = await client.request(method, path, content=raw, headers={**owner.headers, **JSON})

    assert 400 <= response.status_code < 500, response.text
    assert await events_of("project.") == []
