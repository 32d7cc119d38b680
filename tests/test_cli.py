"""The `bazaar` command, run as a user runs it: in its own process, against the test database."""

import os
import subprocess
import sys

from tests.factories import create_user, events_of, login
from tests.files.steps import run_worker

DEMO_PASSWORD = "bazaar-demo-pass"


def bazaar(
    database_url: str, *args: str, stdin: str | None = None, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(DATABASE_URL=database_url, LOG_LEVEL="WARNING", **extra_env)
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env=env,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
    )


async def test_create_admin_bootstraps_a_super_admin_who_can_log_in(client, database_url):
    result = bazaar(
        database_url, "create-admin", "--email", "Root@Example.com", "--password", "a-strong-password"
    )
    assert result.returncode == 0, result.stderr
    assert "created super admin root@example.com" in result.stdout
    tokens = await login(client, "root@example.com", "a-strong-password")
    assert tokens["user"]["activePersona"] == "super_admin"
    assert "users:manage" in tokens["user"]["permissions"]


async def test_create_admin_promotes_an_existing_account_without_changing_its_password(client, database_url):
    builder = await create_user("builder")
    result = bazaar(database_url, "create-admin", "--email", builder.email)
    assert result.returncode == 0, result.stderr
    assert "updated super admin" in result.stdout
    tokens = await login(client, builder.email, persona="super_admin")
    assert sorted(tokens["user"]["personas"]) == ["builder", "super_admin"]


async def test_create_admin_refuses_a_short_password(client, database_url):
    result = bazaar(database_url, "create-admin", "--email", "x@example.com", "--password", "short")
    assert result.returncode == 2
    response = await client.post("/api/auth/login", json={"email": "x@example.com", "password": "short"})
    assert response.status_code == 401


async def test_seed_demo_prints_logins_that_work_and_runs_only_once_with_if_empty(
    client, database_url, settings
):
    result = bazaar(database_url, "seed-demo", "--if-empty", FILES_DIR=str(settings.local_files_dir()))
    assert result.returncode == 0, result.stderr
    emails = [line.split()[-1] for line in result.stdout.splitlines() if line.startswith("  ")]
    assert len(emails) >= 5
    for email in emails:
        tokens = await login(client, email, DEMO_PASSWORD)
        assert tokens["user"]["email"] == email
    builder = await login(client, "ada@builders.example", DEMO_PASSWORD)
    projects = await client.get(
        "/api/projects", headers={"Authorization": f"Bearer {builder['accessToken']}"}
    )
    statuses = {p["status"] for p in projects.json()["items"]}
    assert statuses == {"draft", "in_development", "published"}
    shop = await login(client, "sam@shop.example", DEMO_PASSWORD)
    bought = await client.get(
        f"/api/marketplace/purchases/user/{shop['user']['id']}",
        headers={"Authorization": f"Bearer {shop['accessToken']}"},
    )
    assert {p["status"] for p in bought.json()["items"]} == {"completed"}
    assert bought.json()["pagination"]["total"] == 2
    # Every purchase comes with a week of its widget's usage, for the analytics to show.
    usage = [e["payload"] for e in await events_of("usage.beacon")]
    shops = {p["userId"] for p in bought.json()["items"]} | {shop["user"]["id"]}
    widgets_of_sam = {b["widget_id"] for b in usage if b["end_user_id"] in shops}
    assert len(widgets_of_sam) == 2
    assert len({b["received_at"][:10] for b in usage}) == 7
    # The Support Copilot has a help centre queued for processing; once the worker has run, the
    # offline model (no API key) answers from it in the studio chat.
    ada = {"Authorization": f"Bearer {builder['accessToken']}"}
    [copilot] = [p for p in projects.json()["items"] if p["name"] == "Support Copilot"]
    [knowledge] = copilot["files"]
    assert (knowledge["name"], knowledge["status"]) == ("help-centre.md", "queued")
    await run_worker(settings)
    answer = await client.post(
        f"/api/projects/{copilot['id']}/chat",
        json={"message": "How many days do I have to return an item for a refund?"},
        headers=ada,
    )
    assert answer.status_code == 200, answer.text
    message = answer.json()["message"]
    assert "30 days" in message["content"]
    assert message["metadata"]["citations"][0]["fileName"] == "help-centre.md"

    again = bazaar(database_url, "seed-demo", "--if-empty")
    assert again.returncode == 0
    assert "already has users" in again.stdout


def test_db_upgrade_is_idempotent(database_url):
    result = bazaar(database_url, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert "upgraded to head" in result.stdout


def test_commands_explain_a_missing_database_url():
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "app", "db", "upgrade"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "DATABASE_URL is not set" in result.stderr


async def test_create_admin_for_a_new_account_without_a_password_says_how_to_give_one(client, database_url):
    result = bazaar(database_url, "create-admin", "--email", "nopass@example.com", stdin="")
    assert result.returncode == 2
    assert "--password" in result.stderr
    assert "Traceback" not in result.stderr
