"""Health, readiness, metrics, request ids, structured logs and the OpenAPI contract."""

import json

import pytest

from tests.conftest import http_client, running_app
from tests.factories import signed_in


async def test_healthz_and_readyz_report_database_and_redis(client, settings):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    expected_redis = "ok" if settings.redis_url else "embedded"
    assert ready.json()["checks"] == {"database": "ok", "redis": expected_redis}


async def test_readyz_is_503_with_the_failing_check_when_redis_is_down(make_settings):
    async with running_app(make_settings(redis_url="redis://127.0.0.1:1/0")) as application:
        async with http_client(application) as http:
            response = await http.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["error"]["code"] == "not_ready"
    assert body["error"]["details"]["database"] == "ok"
    assert body["error"]["details"]["redis"].startswith("error")


async def test_metrics_count_requests_by_route_template_not_by_id(client):
    account = await signed_in(client, "builder")
    for _ in range(3):
        await client.get("/api/projects/00000000-0000-7000-8000-000000000001", headers=account.headers)
    text = (await client.get("/metrics")).text
    line = next(
        ln
        for ln in text.splitlines()
        if ln.startswith("bazaar_http_requests_total")
        and 'route="/api/projects/{project_id}"' in ln
        and 'status="404"' in ln
    )
    assert float(line.rsplit(" ", 1)[1]) >= 3
    assert "00000000-0000-7000" not in text
    assert "bazaar_http_request_duration_seconds_bucket" in text


async def test_request_id_is_echoed_or_generated(client):
    echoed = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    generated = await client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert generated.headers["x-request-id"] != "bad id with spaces"
    assert len(generated.headers["x-request-id"]) == 32


async def test_access_log_is_one_json_object_per_request_with_its_request_id(make_settings, capsys):
    async with running_app(make_settings(log_level="INFO", log_json=True)) as application:
        async with http_client(application) as http:
            await http.get("/healthz", headers={"X-Request-ID": "log-check-1"})
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
    entry = next(e for e in lines if e.get("request_id") == "log-check-1")
    assert entry["logger"] == "bazaar.access"
    assert entry["route"] == "/healthz"
    assert entry["status"] == 200
    assert entry["duration_ms"] >= 0


async def test_unknown_route_and_wrong_method_use_the_error_shape(client):
    missing = await client.get("/api/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = await client.patch("/api/auth/me")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"


PUBLIC = {
    ("POST", "/api/auth/login"),
    ("POST", "/api/auth/refresh-token"),
    ("POST", "/api/users"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/api/marketplace/projects"),
    ("POST", "/api/billing/webhooks/stripe"),  # authenticated by its Stripe signature
}
# Anonymous callers are welcome, but a token (when sent) is honoured.
OPTIONAL_AUTH = {("POST", "/api/users"), ("GET", "/api/marketplace/projects/{project_id}")}


@pytest.fixture
async def openapi(client):
    return (await client.get("/openapi.json")).json()


async def test_openapi_documents_auth_and_errors_for_every_api_route(openapi):
    operations = [
        (method.upper(), path, op)
        for path, item in openapi["paths"].items()
        for method, op in item.items()
        if path.startswith("/api/")
    ]
    assert len(operations) >= 20
    for method, path, op in operations:
        secured = bool(op.get("security"))
        assert secured == ((method, path) not in PUBLIC or (method, path) in OPTIONAL_AUTH), (method, path)
        error_codes = [code for code in op["responses"] if code.startswith("4")]
        assert error_codes, f"{method} {path} documents no error response"
        for code in error_codes:
            content = op["responses"][code]["content"]["application/json"]
            assert "example" in content or "schema" in content, (method, path, code)
        assert op.get("description") or op.get("summary"), (method, path)


async def test_openapi_request_bodies_carry_examples(openapi):
    schemas = openapi["components"]["schemas"]
    for name in ("LoginRequest", "UserCreate", "ProjectCreate", "ProjectStatusUpdate", "PersonaSwitch"):
        assert schemas[name].get("examples"), name
