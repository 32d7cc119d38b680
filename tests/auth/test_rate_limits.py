"""Login attempts are limited per account and per client IP, with Redis and without."""

import httpx
import pytest

from tests.factories import PASSWORD, create_user

LIMITS = {"login_rate_limit_account": "3/minute", "login_rate_limit_ip": "5/minute"}

with_and_without_redis = pytest.mark.parametrize(
    "settings_changes", [LIMITS, {**LIMITS, "redis_url": None}], ids=["redis", "in_process"]
)
tight_limits = pytest.mark.parametrize("settings_changes", [LIMITS], ids=["tight"])


async def attempt(client: httpx.AsyncClient, email: str, password: str = "wrong-password") -> httpx.Response:
    return await client.post("/api/auth/login", json={"email": email, "password": password})


def assert_rate_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "rate_limited"
    retry_after = int(response.headers["Retry-After"])
    assert 0 < retry_after <= 61


@with_and_without_redis
async def test_account_limit_blocks_even_the_right_password(client):
    user = await create_user("builder")
    for _ in range(3):
        assert (await attempt(client, user.email)).status_code == 401

    blocked = await attempt(client, user.email, PASSWORD)

    assert_rate_limited(blocked)


@tight_limits
async def test_account_limit_counts_successful_logins_and_ignores_email_case(client):
    user = await create_user("end_user")
    assert (await attempt(client, user.email, PASSWORD)).status_code == 200
    assert (await attempt(client, user.email.upper(), PASSWORD)).status_code == 200
    assert (await attempt(client, user.email.title())).status_code == 401

    assert_rate_limited(await attempt(client, user.email, PASSWORD))


@tight_limits
async def test_account_limit_follows_the_account_across_ips(app, client):
    user = await create_user("builder")
    for _ in range(3):
        await attempt(client, user.email)
    transport = httpx.ASGITransport(app=app, client=("10.0.0.9", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as elsewhere:
        assert_rate_limited(await attempt(elsewhere, user.email, PASSWORD))


@with_and_without_redis
async def test_ip_limit_blocks_other_accounts_from_the_same_ip(app, client):
    first = await create_user("builder")
    second = await create_user("end_user")
    for _ in range(3):
        assert (await attempt(client, first.email)).status_code == 401
    for _ in range(2):
        assert (await attempt(client, second.email)).status_code == 401

    blocked = await attempt(client, second.email, PASSWORD)

    assert_rate_limited(blocked)
    # The second account itself is under its limit: from another IP it signs in.
    transport = httpx.ASGITransport(app=app, client=("10.0.0.9", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as elsewhere:
        assert (await attempt(elsewhere, second.email, PASSWORD)).status_code == 200


@tight_limits
async def test_unknown_emails_count_against_the_ip(client):
    for n in range(5):
        response = await attempt(client, f"nobody{n}@example.com")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_credentials"

    assert_rate_limited(await attempt(client, "nobody-else@example.com"))


async def test_default_limits_let_a_user_retry_a_few_times(client):
    user = await create_user("builder")
    for _ in range(4):
        assert (await attempt(client, user.email)).status_code == 401

    assert (await attempt(client, user.email, PASSWORD)).status_code == 200


@tight_limits
async def test_x_forwarded_for_does_not_dodge_the_ip_limit_unless_trusted(client):
    for n in range(5):
        headers = {"X-Forwarded-For": f"203.0.113.{n}"}
        body = {"email": f"nobody{n}@example.com", "password": "wrong-password"}
        assert (await client.post("/api/auth/login", json=body, headers=headers)).status_code == 401

    spoofed = await client.post(
        "/api/auth/login",
        json={"email": "nobody9@example.com", "password": "wrong-password"},
        headers={"X-Forwarded-For": "203.0.113.99"},
    )

    assert_rate_limited(spoofed)


@pytest.mark.parametrize("settings_changes", [{**LIMITS, "trust_forwarded_for": True}], ids=["proxy"])
async def test_behind_a_trusted_proxy_each_forwarded_ip_has_its_own_limit(client):
    for n in range(5):
        body = {"email": f"nobody{n}@example.com", "password": "wrong-password"}
        await client.post("/api/auth/login", json=body, headers={"X-Forwarded-For": "203.0.113.7"})
    # The proxy appends the address it saw; what the client wrote before it picks no new bucket.
    blocked = await client.post(
        "/api/auth/login",
        json={"email": "nobody9@example.com", "password": "wrong-password"},
        headers={"X-Forwarded-For": "192.0.2.55, 203.0.113.7"},
    )
    other_ip = await client.post(
        "/api/auth/login",
        json={"email": "nobody9@example.com", "password": "wrong-password"},
        headers={"X-Forwarded-For": "198.51.100.1"},
    )

    assert_rate_limited(blocked)
    assert other_ip.status_code == 401
