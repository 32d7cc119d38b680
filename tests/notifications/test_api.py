"""The notifications' API as its users meet it: an administrator sends, the recipient reads their
inbox, marks things read and chooses their channels; administrators edit the templates."""

import asyncio
from typing import Any
from uuid import UUID, uuid4

import httpx
from sqlalchemy import func, select, text

from app.core.db import commit, sessionmaker
from app.core.principal import Principal
from app.models import (
    EmailDelivery,
    Notification,
    NotificationBroadcast,
    NotificationCategory,
    NotificationTemplate,
)
from app.notifications.schemas import Preferences, PreferencesUpdate
from app.notifications.service import notification_service
from app.notifications.templates import seed_templates
from tests.factories import Account, events_of, signed_in
from tests.matrix import assert_error_shape


async def send(
    client: httpx.AsyncClient, admin: Account, user: Account | UUID, **body: Any
) -> httpx.Response:
    user_id = user.id if isinstance(user, Account) else user
    body.setdefault("title", "Hello")
    body.setdefault("message", "A message")
    if "type" in body:
        body.pop("title")
        body.pop("message")
    return await client.post(
        "/api/notifications/send", json={"userId": str(user_id), **body}, headers=admin.headers
    )


async def sent(client: httpx.AsyncClient, admin: Account, user: Account, **body: Any) -> dict[str, Any]:
    response = await send(client, admin, user, **body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def inbox(client: httpx.AsyncClient, user: Account, query: str = "") -> dict[str, Any]:
    response = await client.get(f"/api/notifications/user/{user.id}{query}", headers=user.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def stored(model: Any, user_id: UUID) -> int:
    async with sessionmaker()() as db:
        stmt = select(func.count()).select_from(model).where(model.user_id == user_id)
        return int(await db.scalar(stmt) or 0)


async def test_an_admin_sends_and_the_user_finds_it_in_their_inbox(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    user = await signed_in(client, "end_user")

    answer = await sent(
        client, admin, user, title="Maintenance", message="Sunday 02:00", data={"url": "/status"}, email=False
    )

    notification = answer["notification"]
    assert answer["emailed"] is False
    assert notification["userId"] == str(user.id)
    assert (notification["type"], notification["category"]) == ("announcement", "announcements")
    assert (notification["title"], notification["message"]) == ("Maintenance", "Sunday 02:00")
    assert notification["data"] == {"url": "/status"}
    assert notification["read"] is False
    assert notification["readAt"] is None
    mine = await inbox(client, user)
    assert [n["id"] for n in mine["items"]] == [notification["id"]]
    assert mine["unreadCount"] == 1
    assert mine["pagination"] == {"total": 1, "page": 1, "limit": 20}
    [event] = await events_of("notification.sent")
    assert event["actor_id"] == admin.id
    assert event["payload"]["notificationId"] == notification["id"]
    assert await stored(EmailDelivery, user.id) == 0, "email: false sends no email"


async def test_a_template_send_renders_the_variables(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    user = await signed_in(client, "builder")

    answer = await sent(
        client, admin, user, type="welcome", variables={"name": "Ada", "dashboardUrl": "https://b.example/"}
    )

    assert answer["notification"]["title"] == "Welcome to Bazaar, Ada"
    assert "https://b.example/" in answer["notification"]["message"]
    assert answer["emailed"] is True, "account notices are emailed by default"
    assert await stored(EmailDelivery, user.id) == 1


async def test_the_unread_filter_counts_and_pages_newest_first(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    user = await signed_in(client, "end_user")
    ids = [
        (await sent(client, admin, user, title=f"n{i}", email=False))["notification"]["id"] for i in range(5)
    ]
    for read in (ids[0], ids[3]):
        response = await client.put(f"/api/notifications/{read}/read", headers=user.headers)
        assert response.status_code == 200, response.text

    pages = [await inbox(client, user, f"?limit=2&page={page}") for page in (1, 2, 3)]
    unread = await inbox(client, user, "?unread=true")

    newest_first = list(reversed(ids))
    assert [n["id"] for page in pages for n in page["items"]] == newest_first
    assert {page["pagination"]["total"] for page in pages} == {5}
    assert {page["unreadCount"] for page in pages} == {3}
    assert [n["id"] for n in unread["items"]] == [ids[4], ids[2], ids[1]]
    assert (unread["pagination"]["total"], unread["unreadCount"]) == (3, 3)
    oldest_first = await inbox(client, user, "?sort=createdAt")
    assert [n["id"] for n in oldest_first["items"]] == ids


async def test_reading_twice_keeps_the_first_read_and_records_it_once(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    user = await signed_in(client, "end_user")
    notification_id = (await sent(client, admin, user, email=False))["notification"]["id"]

    first = await client.put(f"/api/notifications/{notification_id}/read", headers=user.headers)
    second = await client.put(f"/api/notifications/{notification_id}/read", headers=user.headers)

    assert first.status_code == second.status_code == 200
    assert first.json()["read"] is True
    assert first.json()["readAt"] is not None
    assert second.json()["readAt"] == first.json()["readAt"]
    [event] = await events_of("notification.read")
    assert event["payload"] == {
        "userId": str(user.id),
        "notificationIds": [notification_id],
        "count": 1,
        "all": False,
    }
    assert (await inbox(client, user))["unreadCount"] == 0


async def test_mark_all_read_marks_only_the_callers_unread_ones(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    user = await signed_in(client, "end_user")
    neighbour = await signed_in(client, "end_user")
    ids = [(await sent(client, admin, user, email=False))["notification"]["id"] for _ in range(3)]
    await sent(client, admin, neighbour, email=False)
    await client.put(f"/api/notifications/{ids[0]}/read", headers=user.headers)

    response = await client.put("/api/notifications/read-all", headers=user.headers)
    again = await client.put("/api/notifications/read-all", headers=user.headers)

    assert response.status_code == 200, response.text
    assert response.json() == {"updated": 2}
    assert again.json() == {"updated": 0}
    assert (await inbox(client, user))["unreadCount"] == 0
    assert all(n["read"] for n in (await inbox(client, user))["items"])
    assert (await inbox(client, neighbour))["unreadCount"] == 1
    reads = await events_of("notification.read")
    assert [e["payload"]["all"] for e in reads] == [False, True], "one event per call that read something"
    assert sorted(reads[1]["payload"]["notificationIds"]) == sorted(ids[1:])
    assert reads[1]["payload"]["count"] == 2


async def test_preferences_show_every_category_and_change_only_what_is_given(
    client: httpx.AsyncClient,
) -> None:
    user = await signed_in(client, "builder")

    defaults = await client.get("/api/notifications/preferences", headers=user.headers)
    changed = await client.put(
        "/api/notifications/preferences",
        json={"announcements": {"inApp": False}, "sales": {"email": False}},
        headers=user.headers,
    )
    again = await client.get("/api/notifications/preferences", headers=user.headers)

    assert set(defaults.json()) == set(NotificationCategory)
    assert all(channels == {"inApp": True, "email": True} for channels in defaults.json().values())
    assert changed.status_code == 200, changed.text
    assert changed.json() == again.json()
    assert again.json()["announcements"] == {"inApp": False, "email": True}
    assert again.json()["sales"] == {"inApp": True, "email": False}
    assert again.json()["account"] == {"inApp": True, "email": True}
    [event] = await events_of("notification.preferences_updated")
    assert event["payload"]["categories"] == {
        "announcements": {"inApp": False, "email": True},
        "sales": {"inApp": True, "email": False},
    }


async def test_setting_a_preference_to_what_it_is_records_nothing(client: httpx.AsyncClient) -> None:
    user = await signed_in(client, "builder")

    response = await client.put(
        "/api/notifications/preferences", json={"account": {"inApp": True}}, headers=user.headers
    )

    assert response.status_code == 200
    assert await events_of("notification.preferences_updated") == []


def test_the_preference_shapes_name_every_category() -> None:
    assert set(Preferences.model_fields) == set(NotificationCategory)
    assert set(PreferencesUpdate.model_fields) == set(NotificationCategory)


async def test_preferences_decide_what_a_send_delivers(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    user = await signed_in(client, "end_user")
    await client.put(
        "/api/notifications/preferences", json={"announcements": {"inApp": False}}, headers=user.headers
    )

    email_only = await sent(client, admin, user)
    await client.put(
        "/api/notifications/preferences",
        json={"announcements": {"inApp": True, "email": False}},
        headers=user.headers,
    )
    in_app_only = await sent(client, admin, user)

    assert email_only == {"notification": None, "emailed": True}
    assert in_app_only["notification"] is not None
    assert in_app_only["emailed"] is False
    assert await stored(EmailDelivery, user.id) == 1
    assert (await inbox(client, user))["pagination"]["total"] == 1


async def test_a_send_is_visible_only_to_its_recipient(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    recipient = await signed_in(client, "end_user")
    snoop = await signed_in(client, "builder")
    notification_id = (await sent(client, admin, recipient, email=False))["notification"]["id"]

    theirs = await client.get(f"/api/notifications/user/{recipient.id}", headers=snoop.headers)
    read_theirs = await client.put(f"/api/notifications/{notification_id}/read", headers=snoop.headers)
    read_missing = await client.put(f"/api/notifications/{uuid4()}/read", headers=snoop.headers)
    admin_reads = await client.put(f"/api/notifications/{notification_id}/read", headers=admin.headers)
    mark_all = await client.put("/api/notifications/read-all", headers=snoop.headers)

    assert (await inbox(client, snoop))["pagination"]["total"] == 0
    assert theirs.status_code == 404
    assert assert_error_shape(theirs)["code"] == "user_not_found"
    assert read_theirs.status_code == read_missing.status_code == admin_reads.status_code == 404
    assert read_theirs.json() == read_missing.json()
    assert mark_all.json() == {"updated": 0}
    recipients_view = await inbox(client, recipient)
    assert recipients_view["unreadCount"] == 1, "nobody else marked it read"
    admins_view = await client.get(f"/api/notifications/user/{recipient.id}", headers=admin.headers)
    assert admins_view.json()["items"] == recipients_view["items"]


async def test_bad_sends_are_4xx_json_and_change_nothing(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    user = await signed_in(client, "end_user")
    welcome = {"name": "Ada", "dashboardUrl": "x"}
    cases: dict[str, tuple[dict[str, Any], int, str]] = {
        "unknown type": ({"type": "no.such", "variables": {}}, 422, "template_unknown"),
        "missing variable": (
            {"type": "welcome", "variables": {"name": "A"}},
            422,
            "template_variables_invalid",
        ),
        "extra variable": (
            {"type": "welcome", "variables": {**welcome, "x": 1}},
            422,
            "template_variables_invalid",
        ),
        "type and title": ({"type": "welcome", "variables": welcome, "title": "T"}, 422, "validation_error"),
        "title only": ({"title": "T"}, 422, "validation_error"),
        "variables without type": (
            {"title": "T", "message": "M", "variables": {"a": 1}},
            422,
            "validation_error",
        ),
        "email not a bool": ({"title": "T", "message": "M", "email": "yes"}, 422, "validation_error"),
        "title too long": ({"title": "x" * 201, "message": "M"}, 422, "validation_error"),
        "nul in message": ({"title": "T", "message": "a\x00b"}, 422, "validation_error"),
        "unknown field": ({"title": "T", "message": "M", "priority": "high"}, 422, "validation_error"),
    }

    outcomes = {}
    for case, (body, _, _) in cases.items():
        response = await client.post(
            "/api/notifications/send", json={"userId": str(user.id), **body}, headers=admin.headers
        )
        outcomes[case] = (response.status_code, assert_error_shape(response)["code"])
    missing_user = await send(client, admin, uuid4())

    assert outcomes == {case: (status, code) for case, (_, status, code) in cases.items()}
    assert (missing_user.status_code, assert_error_shape(missing_user)["code"]) == (404, "user_not_found")
    assert await stored(Notification, user.id) == 0
    assert await stored(EmailDelivery, user.id) == 0
    assert await events_of("notification.") == []


async def test_the_variables_error_says_what_is_missing_and_unknown(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    user = await signed_in(client, "end_user")

    response = await send(client, admin, user, type="welcome", variables={"name": "A", "colour": "red"})

    assert assert_error_shape(response)["details"] == {
        "template": "welcome",
        "missing": ["dashboardUrl"],
        "unknown": ["colour"],
    }


async def test_a_deleted_user_cannot_be_sent_to(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    user = await signed_in(client, "end_user")
    deleted = await client.delete(f"/api/users/{user.id}", headers=admin.headers)
    assert deleted.status_code == 204

    response = await send(client, admin, user)

    assert (response.status_code, assert_error_shape(response)["code"]) == (404, "user_not_found")
    assert await stored(Notification, user.id) == 0


async def test_a_send_retried_with_its_idempotency_key_is_sent_once(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    user = await signed_in(client, "end_user")
    headers = {**admin.headers, "Idempotency-Key": "send-1"}
    body = {"userId": str(user.id), "title": "Once", "message": "only once"}

    first = await client.post("/api/notifications/send", json=body, headers=headers)
    retry = await client.post("/api/notifications/send", json=body, headers=headers)
    other = await client.post("/api/notifications/send", json={**body, "title": "Twice"}, headers=headers)

    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.json() == first.json()
    assert (other.status_code, assert_error_shape(other)["code"]) == (409, "idempotency_key_reused")
    assert await stored(Notification, user.id) == 1
    assert len(await events_of("notification.sent")) == 1


async def template(client: httpx.AsyncClient, admin: Account, kind: str) -> dict[str, Any]:
    response = await client.get(f"/api/notifications/templates/{kind}", headers=admin.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_admins_list_every_template(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")

    response = await client.get("/api/notifications/templates?limit=100", headers=admin.headers)

    assert response.status_code == 200, response.text
    types = [t["type"] for t in response.json()["items"]]
    assert {"announcement", "welcome"} <= set(types)
    assert types == sorted(types)
    assert response.json()["pagination"]["total"] == len(types)
    welcome = next(t for t in response.json()["items"] if t["type"] == "welcome")
    assert welcome["variables"] == ["name", "dashboardUrl"]
    assert welcome["category"] == "account"
    assert welcome["editedBy"] is None
    by_category = await client.get("/api/notifications/templates?sort=category", headers=admin.headers)
    assert (by_category.status_code, assert_error_shape(by_category)["code"]) == (422, "invalid_sort")


async def test_an_edit_of_a_seeded_template_survives_the_next_seeding(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    async with sessionmaker()() as db:
        await seed_templates(db)
        await commit(db)

    edit = await client.put(
        "/api/notifications/templates/welcome", json={"title": "Hello {{ name }}"}, headers=admin.headers
    )
    async with sessionmaker()() as db:
        await seed_templates(db)
        await commit(db)

    assert edit.status_code == 200, edit.text
    assert edit.json()["updatedAt"] is not None
    assert (await template(client, admin, "welcome"))["title"] == "Hello {{ name }}"


async def test_an_edited_template_is_used_by_the_next_send_and_escapes_html(
    client: httpx.AsyncClient,
) -> None:
    admin = await signed_in(client, "super_admin")
    user = await signed_in(client, "end_user")
    attack = '<script>alert("x")</script>'

    edit = await client.put(
        "/api/notifications/templates/announcement",
        json={"title": "News: {{ title }}", "html": "<h1>{{ title }}</h1><p>{{ message }}</p>"},
        headers=admin.headers,
    )
    preview = await client.post(
        "/api/notifications/templates/announcement/preview",
        json={"variables": {"title": "Hi", "message": attack}},
        headers=admin.headers,
    )
    answer = await sent(client, admin, user, title="Hi", message=attack)

    assert edit.status_code == 200, edit.text
    assert edit.json()["editedBy"] == str(admin.id)
    assert edit.json()["message"] == "{{ message }}", "fields not given stay"
    assert (await template(client, admin, "announcement"))["title"] == "News: {{ title }}"
    assert preview.status_code == 200, preview.text
    assert preview.json()["title"] == "News: Hi"
    assert preview.json()["message"] == attack, "the text part is plain text"
    assert preview.json()["html"] == ("<h1>Hi</h1><p>&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;</p>")
    assert answer["notification"]["title"] == "News: Hi"
    async with sessionmaker()() as db:
        email = (await db.scalars(select(EmailDelivery).where(EmailDelivery.user_id == user.id))).one()
    assert email.html_body == preview.json()["html"]
    assert "<script>" not in email.html_body
    [event] = await events_of("notification_template.updated")
    assert event["payload"] == {"type": "announcement", "fields": ["html", "title"]}


async def test_a_preview_sends_nothing_and_can_try_unsaved_text(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")

    preview = await client.post(
        "/api/notifications/templates/welcome/preview",
        json={"variables": {"name": "Ada", "dashboardUrl": "u"}, "title": "Hey {{ name }}"},
        headers=admin.headers,
    )
    wrong = await client.post(
        "/api/notifications/templates/welcome/preview",
        json={"variables": {"name": "Ada"}},
        headers=admin.headers,
    )

    assert preview.status_code == 200, preview.text
    assert preview.json()["title"] == "Hey Ada"
    assert "Ada" in preview.json()["html"]
    assert (await template(client, admin, "welcome"))["title"] == "Welcome to Bazaar, {{ name }}"
    assert (wrong.status_code, assert_error_shape(wrong)["code"]) == (422, "template_variables_invalid")
    assert await events_of("notification") == []


async def test_invalid_template_edits_are_422_and_change_nothing(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    before = await template(client, admin, "welcome")
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "undeclared variable": ({"title": "Hi {{ password }}"}, "template_invalid"),
        "does not parse": ({"html": "<p>{{ name </p>"}, "template_invalid"),
        "unclosed block": ({"message": "{% if name %}hi"}, "template_invalid"),
        "variables of a sent type": ({"variables": ["name"]}, "template_variables_fixed"),
        "bad variable name": ({"variables": ["not a name"]}, "validation_error"),
        "empty title": ({"title": ""}, "validation_error"),
        "unknown field": ({"category": "sales"}, "validation_error"),
    }

    outcomes = {}
    for case, (body, _) in cases.items():
        response = await client.put("/api/notifications/templates/welcome", json=body, headers=admin.headers)
        outcomes[case] = (response.status_code, assert_error_shape(response)["code"])
    missing = await client.put(
        "/api/notifications/templates/no.such", json={"title": "x"}, headers=admin.headers
    )

    assert outcomes == {case: (422, code) for case, (_, code) in cases.items()}
    assert (missing.status_code, assert_error_shape(missing)["code"]) == (404, "template_not_found")
    assert await template(client, admin, "welcome") == before
    assert await events_of("notification_template.") == []
    async with sessionmaker()() as db:
        edited = await db.scalar(select(func.count()).where(NotificationTemplate.edited_by.is_not(None)))
    assert edited == 0


async def test_a_template_that_fails_at_render_time_is_a_422_not_a_500(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    user = await signed_in(client, "end_user")
    edit = await client.put(
        "/api/notifications/templates/announcement",
        json={"title": "{{ title.nothing_here }}"},
        headers=admin.headers,
    )
    assert edit.status_code == 200, edit.text

    response = await send(client, admin, user)

    assert (response.status_code, assert_error_shape(response)["code"]) == (422, "template_render_failed")
    assert await stored(Notification, user.id) == 0


async def test_a_template_whose_operation_fails_on_a_value_is_a_422_for_preview_send_and_broadcast(
    client: httpx.AsyncClient,
) -> None:
    admin = await signed_in(client, "super_admin")
    user = await signed_in(client, "end_user")
    # Parses and uses only its variables, so it is saved; "text" + 1 raises TypeError in the sandbox.
    edit = await client.put(
        "/api/notifications/templates/announcement", json={"title": "{{ title + 1 }}"}, headers=admin.headers
    )
    assert edit.status_code == 200, edit.text

    preview = await client.post(
        "/api/notifications/templates/announcement/preview",
        json={"variables": {"title": "T", "message": "M"}},
        headers=admin.headers,
    )
    sending = await send(client, admin, user)
    broadcast = await client.post(
        "/api/notifications/broadcast",
        json={"audience": "all", "title": "T", "message": "M"},
        headers=admin.headers,
    )

    for response in (preview, sending, broadcast):
        error = assert_error_shape(response)
        assert (response.status_code, error["code"]) == (422, "template_render_failed"), response.text
        assert error["details"] == {"template": "announcement"}
    assert await stored(Notification, user.id) == 0
    async with sessionmaker()() as db:
        assert await db.scalar(select(func.count()).select_from(NotificationBroadcast)) == 0
    assert await events_of("notification.broadcast_created") == []


async def test_an_admin_asking_for_the_inbox_of_nobody_gets_404(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")

    response = await client.get(f"/api/notifications/user/{uuid4()}", headers=admin.headers)

    assert (response.status_code, assert_error_shape(response)["code"]) == (404, "user_not_found")


async def test_two_concurrent_preference_changes_of_one_category_both_stick(
    client: httpx.AsyncClient,
) -> None:
    user = await signed_in(client, "builder")
    principal = Principal(user.id, uuid4(), "builder", ("builder",))
    async with sessionmaker()() as first, sessionmaker()() as second:
        # The first change is made and not committed yet when the second one starts.
        await notification_service.update_preferences(
            first, principal, PreferencesUpdate.model_validate({"sales": {"email": False}})
        )
        pid = await (await second.connection()).scalar(text("SELECT pg_backend_pid()"))
        other = asyncio.create_task(
            notification_service.update_preferences(
                second, principal, PreferencesUpdate.model_validate({"sales": {"inApp": False}})
            )
        )
        await waits_on_a_lock(pid)
        await commit(first)
        await other
        await commit(second)

    stored_now = await client.get("/api/notifications/preferences", headers=user.headers)
    assert stored_now.json()["sales"] == {"inApp": False, "email": False}
    changes = [e["payload"]["categories"] for e in await events_of("notification.preferences_updated")]
    assert changes == [
        {"sales": {"inApp": True, "email": False}},
        {"sales": {"inApp": False, "email": False}},
    ]


async def waits_on_a_lock(pid: int) -> None:
    """Until the backend ``pid`` is blocked on a lock (asked each time in a new transaction: one
    transaction keeps seeing its first snapshot of ``pg_stat_activity``)."""
    async with asyncio.timeout(30):
        while True:
            async with sessionmaker()() as db:
                waiting = await db.scalar(
                    text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :pid"),
                    {"pid": pid},
                )
            if waiting:
                return
            await asyncio.sleep(0.01)


async def test_bad_paths_and_queries_are_422_naming_the_parameter(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    user = await signed_in(client, "end_user")
    await sent(client, admin, user, email=False)
    requests: list[tuple[Account, str, str, tuple[str, str]]] = [
        (user, "GET", "/api/notifications/user/abc", ("path", "user_id")),
        (user, "PUT", "/api/notifications/not-a-uuid/read", ("path", "notification_id")),
        (user, "GET", f"/api/notifications/user/{user.id}?unread=maybe", ("query", "unread")),
        (user, "GET", f"/api/notifications/user/{user.id}?limit=1000", ("query", "limit")),
        (admin, "GET", "/api/notifications/broadcasts/1", ("path", "broadcast_id")),
        (admin, "POST", "/api/notifications/emails/1/retry", ("path", "delivery_id")),
        (admin, "GET", "/api/notifications/emails?status=lost", ("query", "status")),
        (admin, "GET", f"/api/notifications/templates/{'x' * 65}", ("path", "template_type")),
    ]

    for account, method, path, where in requests:
        response = await client.request(method, path, headers=account.headers)
        error = assert_error_shape(response)
        assert (response.status_code, error["code"]) == (422, "validation_error"), path
        assert [tuple(e["loc"]) for e in error["details"]["errors"]] == [where], path

    unsorted = await client.get(f"/api/notifications/user/{user.id}?sort=title", headers=user.headers)
    assert assert_error_shape(unsorted)["details"] == {"allowed": ["createdAt"]}
    emails = await client.get("/api/notifications/emails?sort=attempts", headers=admin.headers)
    assert (emails.status_code, assert_error_shape(emails)["code"]) == (422, "invalid_sort")
    assert await events_of("notification.read") == []
    assert (await inbox(client, user))["unreadCount"] == 1


async def test_bad_preferences_are_422_and_change_nothing(client: httpx.AsyncClient) -> None:
    user = await signed_in(client, "builder")
    bad = {
        "unknown category": ({"marketing": {"email": False}}, [("body", "marketing")]),
        "unknown channel": ({"sales": {"sms": True}}, [("body", "sales", "sms")]),
        "not a bool": ({"sales": {"email": "no"}}, [("body", "sales", "email")]),
        "not an object": ({"sales": False}, [("body", "sales")]),
        "a good one with a bad one": (
            {"sales": {"email": False}, "marketing": {}},
            [("body", "marketing")],
        ),
    }

    for case, (body, locs) in bad.items():
        response = await client.put("/api/notifications/preferences", json=body, headers=user.headers)
        error = assert_error_shape(response)
        assert (response.status_code, error["code"]) == (422, "validation_error"), case
        assert [tuple(e["loc"]) for e in error["details"]["errors"]] == locs, case

    unchanged = await client.get("/api/notifications/preferences", headers=user.headers)
    assert all(channels == {"inApp": True, "email": True} for channels in unchanged.json().values())
    assert await events_of("notification.") == []
