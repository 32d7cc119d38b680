"""The widget journey end to end in a real Chromium, with nothing stubbed: the real API served
over HTTP (the test's app, on 127.0.0.1), the fake LLM as the project's model, an end user who
bought the project and generated a widget for their site. A visitor of that site opens the
widget from the API's own snippet, asks, watches the answer stream in; the beacons reach the
usage stream, the worker lands them, the pipeline builds the warehouse and the widget's
analytics count the visit. The same snippet on a site the end user did not allow shows nothing.
"""

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import uuid4

import httpx
import pytest
import redis.asyncio as aioredis
import uvicorn
from fastapi import FastAPI
from playwright.async_api import Page, expect

from app.core.config import Settings
from app.core.usage import STREAM_FIELD
from tests.browser.support import ARTIFACTS, ServerThread, eventually, host_pages, requires_chromium, snippet
from tests.e2e.test_analytics_journey import land_everything, run_pipeline
from tests.fakes.llm_server import FakeLLM, Reply
from tests.llm.helpers import configure_model, fake_llm, fake_llm_server
from tests.widgets.steps import bought_project, generate

__all__ = ["fake_llm", "fake_llm_server"]

pytestmark = requires_chromium

ANSWER = "Our showroom on Quay Street opens from nine to five, Monday to Saturday."


@pytest.fixture
def api_socket() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


@pytest.fixture
def settings_changes(api_socket: socket.socket) -> dict[str, Any]:
    # The snippet the API generates names this server.
    port = api_socket.getsockname()[1]
    return {"public_base_url": f"http://127.0.0.1:{port}", "llm_timeout_seconds": 10.0, "llm_max_retries": 0}


@pytest.fixture
async def api_origin(app: FastAPI, api_socket: socket.socket, settings: Settings) -> AsyncIterator[str]:
    """The test's app (already started) served over HTTP from the test's own event loop."""
    config = uvicorn.Config(
        app, lifespan="off", log_level="warning", access_log=False, timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[api_socket]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    yield settings.public_base_url
    server.should_exit = True
    await task


class Site:
    """A website on its own origin whose pages carry whatever snippet it is given."""

    def __init__(self, api_origin: str) -> None:
        self.code: str | None = None
        self.server = ServerThread(host_pages(lambda: api_origin, lambda: self.code)).start()
        self.origin = self.server.origin


@pytest.fixture
def shop_site(api_origin: str) -> Iterator[Site]:
    site = Site(api_origin)
    yield site
    site.server.stop()


@pytest.fixture
def copycat_site(api_origin: str) -> Iterator[Site]:
    site = Site(api_origin)
    yield site
    site.server.stop()


async def stream_kinds(redis: aioredis.Redis, stream: str) -> list[str]:
    entries = await redis.xrange(stream)
    return sorted(json.loads(fields[STREAM_FIELD.encode()])["kind"] for _, fields in entries)


async def test_a_visitor_chats_on_the_end_users_site_and_the_visit_reaches_the_widgets_analytics(
    client: httpx.AsyncClient,
    settings: Settings,
    fake_llm: FakeLLM,
    page: Page,
    api_origin: str,
    shop_site: Site,
    copycat_site: Site,
) -> None:
    model = await configure_model(
        f"fake/gpt-{uuid4().hex[:6]}", base_url=fake_llm.openai_base_url, provider_name="fake"
    )
    shop = await bought_project(client, llm=model)
    widget = await generate(
        client,
        shop.buyer,
        shop.project,
        allowedOrigins=[shop_site.origin],
        appearance={"title": "Harbour help", "launcherText": "Ask Harbour", "primaryColor": "#0f766e"},
    )
    assert widget["code"] == snippet(api_origin, widget["publicKey"])
    shop_site.code = copycat_site.code = widget["code"]
    fake_llm.script(Reply(text=ANSWER, chunk_chars=6, input_tokens=140, output_tokens=21))

    # The visitor opens the widget and asks.
    await page.goto(f"{shop_site.origin}/shop.html")
    launcher = page.get_by_role("button", name="Ask Harbour")
    await expect(launcher).to_be_visible()
    await expect(launcher).to_have_css("background-color", "rgb(15, 118, 110)")
    await launcher.click()
    await expect(page.get_by_role("dialog", name="Harbour help")).to_be_visible()
    await page.evaluate(
        """() => {
            window.__pieces = 0;
            const log = document.querySelector('bazaar-chat-widget').shadowRoot.querySelector('[role=log]');
            const isText = (r) => r.type === "characterData" || [...r.addedNodes].some((n) => !n.tagName);
            new MutationObserver((records) => {
                window.__pieces += records.filter(isText).length;
            }).observe(log, {subtree: true, characterData: true, childList: true});
        }"""
    )
    box = page.get_by_role("textbox", name="Your message")
    await box.fill("When is the showroom open?")
    await box.press("Enter")

    answer = page.locator(".msg.bot").last
    await expect(answer).to_have_text(ANSWER)
    assert await page.evaluate("window.__pieces") >= 5, "the answer is rendered delta by delta"
    assert fake_llm.requests[0].body["messages"][-1]["content"] == "When is the showroom open?"
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "widget-open.png")

    # The visitor leaves: the queued beacons go with sendBeacon, into the usage stream.
    await page.goto("about:blank")
    redis = aioredis.Redis.from_url(settings.redis_url or "")
    stream = settings.redis_prefix + settings.usage_stream
    try:
        for _ in range(300):
            if await stream_kinds(redis, stream) == ["impression", "message", "open", "tokens"]:
                break
            await asyncio.sleep(0.05)
        assert await stream_kinds(redis, stream) == ["impression", "message", "open", "tokens"]

        # The worker lands them (and the outbox), the pipeline builds and publishes the warehouse.
        await land_everything(settings, redis)
    finally:
        await redis.aclose()
    run_pipeline(settings)

    analytics = await client.get(f"/api/widgets/{widget['id']}/analytics", headers=shop.buyer.headers)
    assert analytics.status_code == 200, analytics.text
    assert analytics.json()["usage"] == {"impressions": 1, "opens": 1, "messages": 1, "tokens": 161}

    # The same snippet copied onto a site the end user did not allow: no widget at all.
    warnings: list[str] = []
    page.on("console", lambda message: warnings.append(message.text) if message.type == "warning" else None)
    await page.goto(f"{copycat_site.origin}/shop.html")
    await eventually(lambda: any("chat widget is off" in text for text in warnings), message=f"{warnings}")
    assert await page.evaluate("document.querySelectorAll('bazaar-chat-widget').length") == 0
