"""The widget's browser script, ``embed.js``, served to any website that embeds a widget.

``GET /widget/v1/embed.js`` is the stable address end users paste into their pages: cached for
an hour, then revalidated with its ETag. ``GET /widget/v1/embed.<sha8>.js`` names one exact
version (the first 8 hex digits of its SHA-256) and is cached for a year; an unknown version is a
404, never a different script. A built ``widget/dist/embed.js`` wins over the source
``widget/embed.js``. Both are static files, not API operations, so they stay out of the OpenAPI
schema (like ``/docs``).
"""

import gzip
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request, Response

from app.core.errors import NotFound, ServiceUnavailable

WIDGET_DIR = Path(__file__).resolve().parents[2] / "widget"
SCRIPT_CANDIDATES = (WIDGET_DIR / "dist" / "embed.js", WIDGET_DIR / "embed.js")
STABLE_PATH = "/widget/v1/embed.js"
STABLE_CACHE = "public, max-age=3600"
VERSIONED_CACHE = "public, max-age=31536000, immutable"
_DIGEST = re.compile(r"[0-9a-f]{8}")

router = APIRouter(tags=["widgets"])


@dataclass(frozen=True, slots=True)
class EmbedScript:
    content: bytes
    gzipped: bytes
    sha256: str

    @property
    def version(self) -> str:
        return self.sha256[:8]

    @property
    def versioned_path(self) -> str:
        """The immutable address of this exact script (for snippets that pin a version)."""
        return f"/widget/v1/embed.{self.version}.js"

    def etag(self, *, gzipped: bool) -> str:
        # Two representations, two strong validators.
        return f'"{self.sha256[:32]}{"-gz" if gzipped else ""}"'


_loaded: dict[tuple[str, int, int], EmbedScript] = {}


def embed_script() -> EmbedScript:
    """The script as it is on disk now; read and hashed again only when the file changes."""
    path = next((candidate for candidate in SCRIPT_CANDIDATES if candidate.is_file()), None)
    if path is None:
        raise ServiceUnavailable(
            "The widget script is not installed on this server", code="widget_script_missing"
        )
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    script = _loaded.get(key)
    if script is None:
        content = path.read_bytes()
        script = EmbedScript(
            content=content,
            gzipped=gzip.compress(content, compresslevel=9, mtime=0),
            sha256=hashlib.sha256(content).hexdigest(),
        )
        _loaded.clear()
        _loaded[key] = script
    return script


def _accepts_gzip(accept_encoding: str) -> bool:
    for part in accept_encoding.lower().split(","):
        coding, *params = (piece.strip() for piece in part.split(";"))
        if coding in ("gzip", "*"):
            return _positive(next((param[2:] for param in params if param.startswith("q=")), "1"))
    return False


def _positive(quality: str) -> bool:
    try:
        return float(quality) > 0
    except ValueError:
        return False


def _matches(if_none_match: str, etag: str) -> bool:
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag in tags


def _script_response(request: Request, script: EmbedScript, cache_control: str) -> Response:
    gzipped = _accepts_gzip(request.headers.get("accept-encoding", ""))
    etag = script.etag(gzipped=gzipped)
    headers = {
        "Cache-Control": cache_control,
        "ETag": etag,
        "Vary": "Accept-Encoding",
        "Access-Control-Allow-Origin": "*",
        "Cross-Origin-Resource-Policy": "cross-origin",
        "X-Content-Type-Options": "nosniff",
    }
    if _matches(request.headers.get("if-none-match", ""), etag):
        return Response(status_code=304, headers=headers)
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    return Response(
        content=script.gzipped if gzipped else script.content,
        headers=headers,
        media_type="application/javascript; charset=utf-8",
    )


@router.get(STABLE_PATH, include_in_schema=False)
def get_embed_script(request: Request) -> Response:
    """The current widget script, at the address end users paste into their pages."""
    return _script_response(request, embed_script(), STABLE_CACHE)


@router.get("/widget/v1/embed.{version}.js", include_in_schema=False)
def get_versioned_embed_script(version: str, request: Request) -> Response:
    """The widget script of one exact version, cacheable forever."""
    script = embed_script()
    if not _DIGEST.fullmatch(version) or version != script.version:
        raise NotFound("No widget script has this version", code="widget_script_not_found")
    return _script_response(request, script, VERSIONED_CACHE)
