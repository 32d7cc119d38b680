"""``GET /widget/v1/embed.js`` (app/widgets/assets.py): the script any website may load, cached
sensibly at its stable address and forever at its versioned one."""

import gzip
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.core.errors import install_error_handlers
from app.widgets import assets

SOURCE = Path(assets.WIDGET_DIR) / "embed.js"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    application = FastAPI()
    install_error_handlers(application)
    application.include_router(assets.router)
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        yield http


def shipped() -> bytes:
    built = Path(assets.WIDGET_DIR) / "dist" / "embed.js"
    return (built if built.is_file() else SOURCE).read_bytes()


async def test_the_stable_address_serves_the_script_for_any_site_cached_for_an_hour(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/widget/v1/embed.js", headers={"Accept-Encoding": "identity"})

    assert response.status_code == 200
    assert response.content == shipped()
    assert response.headers["content-type"] == "application/javascript; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=3600"
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "content-encoding" not in response.headers


async def test_a_browser_revalidates_with_the_etag_and_gets_a_304(client: httpx.AsyncClient) -> None:
    first = await client.get("/widget/v1/embed.js")
    etag = first.headers["etag"]

    again = await client.get("/widget/v1/embed.js", headers={"If-None-Match": etag})
    stale = await client.get("/widget/v1/embed.js", headers={"If-None-Match": '"someotherversion"'})

    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == "public, max-age=3600"
    assert stale.status_code == 200
    assert stale.content == shipped()


async def test_browsers_that_accept_gzip_get_it_compressed_under_their_own_etag(
    client: httpx.AsyncClient,
) -> None:
    plain = await client.get("/widget/v1/embed.js", headers={"Accept-Encoding": "identity"})
    # httpx decodes gzip transparently: read the raw bytes to see what travelled.
    async with client.stream("GET", "/widget/v1/embed.js", headers={"Accept-Encoding": "gzip, br"}) as zipped:
        raw = b"".join([chunk async for chunk in zipped.aiter_raw()])

    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["vary"] == "Accept-Encoding"
    assert gzip.decompress(raw) == shipped()
    assert len(raw) < len(shipped()) / 2
    assert zipped.headers["etag"] != plain.headers["etag"]
    refused = await client.get("/widget/v1/embed.js", headers={"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in refused.headers


async def test_the_versioned_address_is_immutable_and_unknown_versions_are_404(
    client: httpx.AsyncClient,
) -> None:
    version = hashlib.sha256(shipped()).hexdigest()[:8]
    assert assets.embed_script().versioned_path == f"/widget/v1/embed.{version}.js"

    pinned = await client.get(f"/widget/v1/embed.{version}.js")
    other = "0" * 8 if version != "0" * 8 else "1" * 8
    unknown = await client.get(f"/widget/v1/embed.{other}.js")
    garbage = await client.get("/widget/v1/embed.<script>.js")

    assert pinned.status_code == 200
    assert pinned.content == shipped()
    assert pinned.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert pinned.headers["access-control-allow-origin"] == "*"
    for response in (unknown, garbage):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "widget_script_not_found"


async def test_an_edited_script_is_served_at_once_under_a_new_version(
    client: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "embed.js"
    script.write_text("/* v1 */")
    monkeypatch.setattr(assets, "SCRIPT_CANDIDATES", (tmp_path / "dist" / "embed.js", script))
    first = await client.get("/widget/v1/embed.js")

    script.write_text("/* version two */")
    second = await client.get("/widget/v1/embed.js")
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "embed.js").write_text("/* built */")
    built = await client.get("/widget/v1/embed.js")

    assert (first.text, second.text, built.text) == ("/* v1 */", "/* version two */", "/* built */")
    assert len({first.headers["etag"], second.headers["etag"], built.headers["etag"]}) == 3


async def test_a_server_without_the_script_says_so(
    client: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(assets, "SCRIPT_CANDIDATES", (tmp_path / "missing.js",))

    response = await client.get("/widget/v1/embed.js")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "widget_script_missing"
