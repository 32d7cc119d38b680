"""``widget/embed.js`` in a real Chromium, against the stub runtime (tests/browser/support.py):
what a visitor of an end user's website sees and does, and what the script sends."""

import time
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.browser.support import (
    ARTIFACTS,
    GONE_KEY,
    LIVE_KEY,
    WIDGET_ID,
    StubRuntime,
    eventually,
    requires_chromium,
)

pytestmark = requires_chromium

ANSWER = "The showroom on Quay Street opens from nine to five, Monday to Saturday. <b>Welcome!</b>"


async def open_page(page: Page, site: str, name: str = "shop", **query: str) -> None:
    query = {"key": LIVE_KEY, **query}
    await page.goto(f"{site}/{name}.html?" + "&".join(f"{k}={v}" for k, v in query.items()))


def launcher(page: Page):  # type: ignore[no-untyped-def]
    return page.get_by_role("button", name="Ask Harbour")


def panel(page: Page):  # type: ignore[no-untyped-def]
    return page.get_by_role("dialog", name="Harbour help")


async def ask(page: Page, question: str) -> None:
    box = page.get_by_role("textbox", name="Your message")
    await box.fill(question)
    await box.press("Enter")


async def active_in_widget(page: Page) -> dict[str, Any] | None:
    """Which element of the widget has the focus (through the shadow root), if any."""
    return await page.evaluate(
        """() => {
            const host = document.querySelector('bazaar-chat-widget');
            const active = host && host.shadowRoot.activeElement;
            return document.activeElement === host && active
                ? {tag: active.tagName.toLowerCase(), cls: active.className} : null;
        }"""
    )


async def test_the_launcher_opens_a_chat_panel_styled_by_the_widgets_appearance(
    page: Page, site: str, runtime: StubRuntime
) -> None:
    runtime.appearance["position"] = "bottom-left"
    await open_page(page, site)

    await expect(launcher(page)).to_be_visible()
    await expect(launcher(page)).to_have_attribute("aria-expanded", "false")
    await expect(launcher(page)).to_have_css("background-color", "rgb(15, 118, 110)")  # #0f766e
    box = await launcher(page).bounding_box()
    assert box is not None
    assert box["x"] < 640, "bottom-left puts the launcher on the left"

    await launcher(page).click()

    await expect(panel(page)).to_be_visible()
    await expect(launcher(page)).to_have_attribute("aria-expanded", "true")
    await expect(panel(page).get_by_role("heading", name="Harbour help")).to_be_visible()
    await expect(page.get_by_role("log")).to_have_attribute("aria-live", "polite")
    await expect(page.get_by_role("log")).to_contain_text("Hi! Ask me about Harbour Lamps.")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "widget-open-stub.png")


async def test_the_pages_css_cannot_reach_the_widget_and_the_widget_leaves_the_page_alone(
    page: Page, site: str
) -> None:
    await page.goto(f"{site}/hostile.html")  # the page without the snippet, for comparison
    page_globals = set(await page.evaluate("Object.keys(window)"))

    await open_page(page, site, "hostile")
    await launcher(page).click()
    await ask(page, "Hello?")

    # The page's rules (red text, hidden divs, lime buttons) still apply to the page...
    await expect(page.locator("#page-div")).to_be_hidden()
    await expect(page.locator("#page-text")).to_have_css("color", "rgb(255, 0, 0)")
    # ...and not to anything inside the widget.
    await expect(launcher(page)).to_be_visible()
    await expect(launcher(page)).to_have_css("background-color", "rgb(15, 118, 110)")
    await expect(launcher(page)).to_have_css("color", "rgb(255, 255, 255)")
    await expect(panel(page)).to_be_visible()
    await expect(page.get_by_role("log")).to_be_visible()
    answer = page.locator(".msg.bot").last
    await expect(answer).to_have_text(ANSWER)
    await expect(answer).not_to_have_css("color", "rgb(255, 0, 0)")
    await expect(answer).not_to_have_css("font-size", "30px")
    await expect(page.get_by_role("textbox", name="Your message")).not_to_have_css(
        "background-color", "rgb(0, 255, 0)"
    )
    # One global and no style in the document: everything else lives in the shadow root.
    assert set(await page.evaluate("Object.keys(window)")) - page_globals == {"BazaarWidget"}
    assert await page.evaluate("document.querySelectorAll('style, link[rel=stylesheet]').length") == 1
    assert await page.evaluate("document.querySelectorAll('bazaar-chat-widget').length") == 1


async def test_a_keyboard_only_visitor_opens_asks_and_closes_with_focus_where_it_belongs(
    page: Page, site: str, runtime: StubRuntime
) -> None:
    await open_page(page, site)
    await expect(launcher(page)).to_be_visible()

    # Tab through the page's own controls to the launcher.
    for _ in range(10):
        await page.keyboard.press("Tab")
        if await active_in_widget(page) == {"tag": "button", "cls": "launcher"}:
            break
    else:
        pytest.fail("the launcher is not reachable with Tab")

    await page.keyboard.press("Enter")
    await expect(panel(page)).to_be_visible()
    assert await active_in_widget(page) == {"tag": "textarea", "cls": ""}, "focus moves into the panel"

    await page.keyboard.type("When are you open?")
    await page.keyboard.press("Enter")
    await expect(page.locator(".msg.bot").last).to_have_text(ANSWER)
    assert runtime.chats[0].body == {"message": "When are you open?"}

    await page.keyboard.press("Escape")
    await expect(panel(page)).to_be_hidden()
    await expect(launcher(page)).to_have_attribute("aria-expanded", "false")
    assert await active_in_widget(page) == {"tag": "button", "cls": "launcher"}, (
        "focus returns to the launcher"
    )

    # The close button works from the keyboard too, and the conversation is still there.
    await page.keyboard.press("Enter")
    await expect(panel(page)).to_be_visible()
    await expect(page.locator(".msg.user")).to_have_text(["When are you open?"])
    close = page.get_by_role("button", name="Close chat")
    await close.focus()
    await page.keyboard.press("Enter")
    await expect(panel(page)).to_be_hidden()
    assert await active_in_widget(page) == {"tag": "button", "cls": "launcher"}


async def test_the_answer_streams_into_the_bubble_as_text(
    page: Page, site: str, runtime: StubRuntime
) -> None:
    await open_page(page, site)
    await launcher(page).click()
    # Record the answer bubble's text at every animation frame while it streams.
    await page.evaluate(
        """() => {
            window.__frames = [];
            const root = document.querySelector('bazaar-chat-widget').shadowRoot;
            const sample = () => {
                const bubbles = root.querySelectorAll('.msg.bot');
                window.__frames.push(bubbles.length > 1 ? bubbles[bubbles.length - 1].textContent : null);
                requestAnimationFrame(sample);
            };
            requestAnimationFrame(sample);
        }"""
    )

    await ask(page, "When are you open?")

    answer = page.locator(".msg.bot").last
    await expect(answer).to_have_text(ANSWER)
    frames: list[str | None] = await page.evaluate("window.__frames")
    seen = [text for text in dict.fromkeys(frames) if text]
    assert len(seen) >= 3, f"the answer should appear piece by piece, saw {seen}"
    assert all(ANSWER.startswith(text) for text in seen)
    assert seen[-1] == ANSWER
    # Untrusted text is text: the model's "<b>" is shown, not rendered.
    assert await answer.locator("b").count() == 0
    await expect(answer).not_to_have_attribute("aria-busy", "true")
    assert runtime.chats[0].headers["accept"] == "text/event-stream"

    # The next question continues the same conversation.
    await ask(page, "And on Sunday?")
    await expect(page.locator(".msg.bot")).to_have_count(3)
    await expect(page.locator(".msg.bot").last).to_have_text(ANSWER)
    assert runtime.chats[1].body == {
        "message": "And on Sunday?",
        "conversationId": "0193a000-0000-7000-8000-0000000c0001",
    }


async def test_usage_beacons_arrive_batched_with_the_time_to_the_first_word(
    page: Page, site: str, runtime: StubRuntime
) -> None:
    await open_page(page, site)
    await launcher(page).click()
    await ask(page, "When are you open?")
    await expect(page.locator(".msg.bot").last).to_have_text(ANSWER)

    await eventually(lambda: {"message", "tokens"} <= set(runtime.kinds()), message=f"got {runtime.kinds()}")

    assert sorted(runtime.kinds()) == ["impression", "message", "open", "tokens"]
    events = {event["kind"]: event for event in runtime.beacon_events()}
    assert events["message"]["latencyMs"] >= 150, "at least the stub's delay before the first delta"
    assert events["tokens"]["count"] == 150
    assert len({event["eventId"] for event in events.values()}) == 4
    assert all(event["occurredAt"].endswith("Z") for event in events.values())
    for batch in runtime.beacons:
        assert batch.origin == site
        assert batch.path == f"/api/widgets/{WIDGET_ID}/track-usage"
        assert batch.headers["content-type"].lower() == "text/plain;charset=utf-8", "a simple CORS request"
        assert batch.body["token"] in runtime.tokens
        assert batch.headers["sec-fetch-mode"] == "cors", "batches go with fetch(keepalive)"


async def test_queued_beacons_leave_with_send_beacon_when_the_page_goes_away(
    page: Page, site: str, runtime: StubRuntime
) -> None:
    await open_page(page, site)
    await expect(launcher(page)).to_be_visible()
    await launcher(page).click()
    await expect(panel(page)).to_be_visible()

    # Long before the next batch is due, the visitor leaves.
    await page.goto("about:blank")

    await eventually(lambda: {"impression", "open"} <= set(runtime.kinds()), message=f"got {runtime.kinds()}")
    [batch] = runtime.beacons
    assert batch.headers["sec-fetch-mode"] == "no-cors", "navigator.sendBeacon sent it"
    assert batch.headers["content-type"].lower() == "text/plain;charset=utf-8"
    assert [event["kind"] for event in batch.body["events"]] == ["impression", "open"]


async def test_a_page_hidden_after_its_token_expired_renews_it_before_sending_beacons(
    page: Page, site: str, runtime: StubRuntime
) -> None:
    runtime.token_ttl_seconds = 1
    await open_page(page, site)
    await expect(launcher(page)).to_be_visible()
    await page.wait_for_timeout(1200)  # the tab sat idle: the token ran out
    runtime.token_ttl_seconds = 3600

    # A new event: the script renews the token at once, not at the next batch.
    async with page.expect_response(lambda response: response.url.endswith("/widget/v1/session")) as renewal:
        await launcher(page).click()
    await (await renewal.value).finished()
    await page.evaluate("() => new Promise((settled) => setTimeout(settled, 0))")  # the script read it
    await page.goto("about:blank")

    await eventually(lambda: {"impression", "open"} <= set(runtime.kinds()), message=f"got {runtime.kinds()}")
    assert runtime.batches_with_an_expired_token() == []


UNSENT = f"bazaar-widget:unsent:{LIVE_KEY}"


async def test_beacons_a_hidden_page_cannot_send_validly_go_with_the_tabs_next_page_view(
    page: Page, site: str, runtime: StubRuntime
) -> None:
    runtime.token_ttl_seconds = 1
    await open_page(page, site)
    await expect(launcher(page)).to_be_visible()
    await page.wait_for_timeout(1200)  # the token ran out...
    runtime.sessions_unavailable = True  # ...and cannot be renewed right now
    await launcher(page).click()
    await eventually(lambda: len(runtime.sessions) == 2, message="no renewal was attempted")
    runtime.sessions_unavailable, runtime.token_ttl_seconds = False, 3600

    await open_page(page, site, "hostile")  # the visitor goes on to another page of the site

    await eventually(lambda: runtime.kinds().count("impression") == 2 and "open" in runtime.kinds())
    assert runtime.batches_with_an_expired_token() == [], "an expired token loses the batch"
    assert sorted(runtime.kinds()) == ["impression", "impression", "open"]
    assert len({event["eventId"] for event in runtime.beacon_events()}) == 3
    # Sent, so no longer kept for a next page view.
    await page.wait_for_function(f"sessionStorage.getItem({UNSENT!r}) === null")


REFUSED_UNREADABLE = "could not be reached or refused this page"


@pytest.mark.parametrize(
    ("allowed", "key", "warning", "attempts"),
    [
        # The server cannot tell these pages apart from any other site: a bare refusal, tried
        # three times like an unreachable server.
        pytest.param(False, LIVE_KEY, REFUSED_UNREADABLE, 3, id="origin-not-allowed"),
        pytest.param(True, "pk_live_nobody", REFUSED_UNREADABLE, 3, id="unknown-key"),
        # A readable refusal is final at once.
        pytest.param(True, GONE_KEY, "widget_unavailable", 1, id="widget-unavailable"),
    ],
)
async def test_a_refused_session_shows_no_launcher_and_warns_the_developer(
    page: Page,
    site: str,
    other_site: str,
    runtime: StubRuntime,
    allowed: bool,
    key: str,
    warning: str,
    attempts: int,
) -> None:
    warnings: list[str] = []
    page.on("console", lambda message: warnings.append(message.text) if message.type == "warning" else None)

    await open_page(page, site if allowed else other_site, key=key)

    await eventually(lambda: any(warning in text for text in warnings), message=f"warnings: {warnings}")
    assert len(runtime.sessions) == attempts
    assert await page.evaluate("document.querySelectorAll('bazaar-chat-widget').length") == 0
    await expect(page.get_by_role("button", name="Ask Harbour")).to_have_count(0)


async def test_a_widget_out_of_quota_says_so_as_soon_as_the_panel_opens(
    page: Page, site: str, runtime: StubRuntime
) -> None:
    runtime.quota_exhausted = True  # the session answers quota {remaining: 0}
    await open_page(page, site)

    await launcher(page).click()

    await expect(page.locator(".msg.notice")).to_have_text(
        "This assistant has answered all the messages it can this month. Please come back later."
    )
    await expect(page.get_by_role("textbox", name="Your message")).to_be_disabled()
    await expect(page.get_by_role("button", name="Send")).to_be_disabled()
    await page.get_by_role("button", name="Close chat").click()
    await launcher(page).click()
    await expect(page.locator(".msg.notice")).to_have_count(1)  # said once, not at every opening
    await page.goto("about:blank")  # hand over the queued beacons
    await eventually(lambda: "open" in runtime.kinds())
    assert runtime.chats == [], "nothing was sent that could only be refused"
    assert "message" not in runtime.kinds()


async def test_a_widget_running_out_of_quota_mid_conversation_says_so_politely(
    page: Page, site: str, runtime: StubRuntime
) -> None:
    await open_page(page, site)
    await launcher(page).click()
    await expect(page.get_by_role("textbox", name="Your message")).to_be_enabled()
    runtime.quota_exhausted = True  # the month's last message went to another visitor

    await ask(page, "Are you open today?")

    await expect(page.locator(".msg.notice")).to_have_text(
        "This assistant has answered its 100 messages for this month. Please come back later."
    )
    await expect(page.get_by_role("textbox", name="Your message")).to_be_disabled()
    await expect(page.get_by_role("button", name="Send")).to_be_disabled()
    await page.goto("about:blank")  # hand over the queued beacons
    await eventually(lambda: "open" in runtime.kinds())
    assert "message" not in runtime.kinds(), "a refused message is not usage"


@pytest.mark.parametrize("readable", [True, False], ids=["readable-401", "401-without-cors"])
async def test_a_revoked_session_is_renewed_without_the_visitor_noticing(
    page: Page, site: str, runtime: StubRuntime, readable: bool
) -> None:
    await open_page(page, site)
    await launcher(page).click()
    await ask(page, "First question")
    await expect(page.locator(".msg.bot").last).to_have_text(ANSWER)

    runtime.revoke_tokens(readable=readable)  # e.g. the token expired while the tab slept
    await ask(page, "Second question")

    await expect(page.locator(".msg.bot")).to_have_count(3)
    await expect(page.locator(".msg.bot").last).to_have_text(ANSWER)
    await expect(page.locator(".msg.notice")).to_have_count(0)
    assert len(runtime.sessions) == 2
    questions = [chat.body["message"] for chat in runtime.chats]
    assert questions == ["First question", "Second question", "Second question"]
    assert runtime.chats[2].headers["authorization"] == f"Bearer {next(iter(runtime.tokens))}"


async def test_a_session_close_to_its_expiry_is_renewed_before_use(
    page: Page, site: str, runtime: StubRuntime
) -> None:
    runtime.token_ttl_seconds = 1
    await open_page(page, site)
    await launcher(page).click()
    await eventually(lambda: len(runtime.sessions) == 1)
    await page.wait_for_timeout(1200)  # let the one-second token run out
    runtime.token_ttl_seconds = 3600  # the renewed one lasts

    await ask(page, "Still there?")

    await expect(page.locator(".msg.bot").last).to_have_text(ANSWER)
    assert len(runtime.sessions) == 2
    assert len(runtime.chats) == 1, "renewed before the call, not after a 401"


async def test_the_visitor_id_is_kept_across_visits(page: Page, site: str, runtime: StubRuntime) -> None:
    await open_page(page, site)
    await expect(launcher(page)).to_be_visible()
    await page.reload()
    await expect(launcher(page)).to_be_visible()

    first, second = runtime.sessions
    assert "visitorId" not in first.body
    issued = runtime.tokens[next(iter(runtime.tokens))]["visitorId"]
    assert second.body["visitorId"] == issued


def in_an_hour() -> int:
    return int(time.time()) + 3600


async def test_a_signed_in_user_of_the_site_chats_under_their_identity(
    page: Page, site: str, runtime: StubRuntime
) -> None:
    expires = in_an_hour()
    await open_page(page, site, user_id="alice", user_exp=str(expires), user_signature="sig-alice")
    await expect(launcher(page)).to_be_visible()
    assert runtime.sessions[0].body["identity"] == {
        "userId": "alice",
        "exp": expires,
        "signature": "sig-alice",
    }

    # The site signs someone else in without reloading.
    assert await page.evaluate(f"BazaarWidget.identify('bob', 'sig-bob', {expires})") is True
    await page.evaluate("BazaarWidget.open()")
    await ask(page, "Who am I?")
    await expect(page.locator(".msg.bot").last).to_have_text(ANSWER)
    token = runtime.chats[0].headers["authorization"].removeprefix("Bearer ")
    assert runtime.tokens[token]["userId"] == "bob"

    # A forged signature is refused and the widget stays bob's.
    assert await page.evaluate(f"BazaarWidget.identify('mallory', 'forged', {expires})") is False
    await page.evaluate("BazaarWidget.close()")
    await expect(panel(page)).to_be_hidden()


async def test_a_forged_identity_in_the_snippet_shows_no_launcher(
    page: Page, site: str, runtime: StubRuntime
) -> None:
    warnings: list[str] = []
    page.on("console", lambda message: warnings.append(message.text) if message.type == "warning" else None)

    await open_page(page, site, user_id="alice", user_exp=str(in_an_hour()), user_signature="forged")

    await eventually(lambda: any("identity_invalid" in text for text in warnings), message=f"{warnings}")
    assert await page.evaluate("document.querySelectorAll('bazaar-chat-widget').length") == 0


async def test_an_expired_identity_asks_the_site_for_a_fresh_signature(
    page: Page, site: str, runtime: StubRuntime
) -> None:
    warnings: list[str] = []
    page.on("console", lambda message: warnings.append(message.text) if message.type == "warning" else None)
    # The site's own code: on the widget's event, its server signs again and it calls identify().
    await page.add_init_script(
        """window.__expired = [];
        window.addEventListener('bazaar-widget:identity-expired', (event) => {
            window.__expired.push(event.detail.userId);
        });"""
    )
    signed_an_hour_ago = int(time.time()) - 3600

    await open_page(page, site, user_id="alice", user_exp=str(signed_an_hour_ago), user_signature="sig-alice")

    await eventually(lambda: any("identity_expired" in text for text in warnings), message=f"{warnings}")
    assert await page.evaluate("window.__expired") == ["alice"]
    await expect(launcher(page)).to_have_count(0)
    assert await page.evaluate(f"BazaarWidget.identify('alice', 'sig-alice', {in_an_hour()})") is True
    await expect(launcher(page)).to_be_visible()
    assert runtime.sessions[-1].body["identity"]["exp"] > time.time()


async def test_an_identity_without_its_expiry_stays_anonymous_and_says_why(
    page: Page, site: str, runtime: StubRuntime
) -> None:
    warnings: list[str] = []
    page.on("console", lambda message: warnings.append(message.text) if message.type == "warning" else None)

    await open_page(page, site, user_id="alice", user_signature="sig-alice")

    await expect(launcher(page)).to_be_visible()
    assert "identity" not in runtime.sessions[0].body
    assert any("exp" in text for text in warnings), warnings


async def test_the_snippet_loads_the_script_from_the_widget_server_with_its_cache_headers(
    page: Page, site: str, widget_origin: str
) -> None:
    async with page.expect_response(f"{widget_origin}/widget/v1/embed.js") as loaded:
        await open_page(page, site)
    response = await loaded.value
    assert response.status == 200
    headers = await response.all_headers()
    assert headers["content-type"] == "application/javascript; charset=utf-8"
    assert headers["cache-control"] == "public, max-age=3600"
    assert headers["x-content-type-options"] == "nosniff"
    await expect(launcher(page)).to_be_visible()
