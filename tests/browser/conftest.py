"""A real Chromium (the system's ``/usr/bin/chromium``; Playwright never downloads one) driven by
Playwright's async API, one browser per test session and a fresh context (cookies, storage) per
test, plus the stub runtime and two host-page origins: one the widget allows, one it does not."""

from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.browser.support import CHROMIUM, ServerThread, StubRuntime, host_pages


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        await chromium.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    yield context
    await context.close()


@pytest.fixture
async def page(context: BrowserContext) -> Page:
    return await context.new_page()


@pytest.fixture
def stub() -> Iterator[tuple[StubRuntime, ServerThread]]:
    runtime = StubRuntime()
    server = ServerThread(runtime.app()).start()
    yield runtime, server
    server.stop()


@pytest.fixture
def runtime(stub: tuple[StubRuntime, ServerThread]) -> StubRuntime:
    return stub[0]


@pytest.fixture
def widget_origin(stub: tuple[StubRuntime, ServerThread]) -> str:
    return stub[1].origin


@pytest.fixture
def site(runtime: StubRuntime, widget_origin: str) -> Iterator[str]:
    """The origin of an end user's website that the widget allows."""
    server = ServerThread(host_pages(lambda: widget_origin)).start()
    runtime.allowed_origins.add(server.origin)
    yield server.origin
    server.stop()


@pytest.fixture
def other_site(widget_origin: str) -> Iterator[str]:
    """The origin of a website that copied the snippet without being allowed."""
    server = ServerThread(host_pages(lambda: widget_origin)).start()
    yield server.origin
    server.stop()
