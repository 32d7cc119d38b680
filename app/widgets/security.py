"""What makes a widget safe to embed: its keys, the origins it may run on, the identity
signature of a host site's user, and the short-lived session token of a visitor.

* The public key (``pk_live_...``) is in the page's HTML: it only names the widget.
* The secret key (``sk_...``) stays on the host site's server: it signs the host's user ids
  with an expiry (``hex(HMAC-SHA256(secret, "widgetId|userId|exp"))``).
* A session token is an HS256 JWT signed with a key derived from ``JWT_SECRET`` for this use
  only, so it can never pass for an access token (nor the other way round).
"""

import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import jwt

PUBLIC_KEY_PREFIX = "pk_live_"
SECRET_KEY_PREFIX = "sk_"
TOKEN_TYPE = "widget_session"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")

# Public suffixes: names under which anyone can register or get a site of their own, so a
# wildcard on one (``https://*.github.io``) would let every stranger's site embed the widget. No
# public suffix list library is installed (and none is added for this), so this is a curated
# list of the common ones, plus the usual country-code second levels (``co.uk``, ``com.au``,
# ``ne.jp``, ...) by pattern below. A single label (``*.com``, ``*.dev``) is refused anyway. Not
# exhaustive: an owner can still allow a suffix this list misses, at their own risk.
PUBLIC_SUFFIXES = frozenset(
    """
    github.io githubusercontent.com gitlab.io bitbucket.io codeberg.page
    pages.dev workers.dev vercel.app now.sh netlify.app netlify.com
    herokuapp.com herokudns.com onrender.com fly.dev railway.app web.app
    firebaseapp.com appspot.com cloudfunctions.net run.app azurewebsites.net
    azurestaticapps.net cloudapp.net blob.core.windows.net cloudfront.net
    amazonaws.com s3.amazonaws.com elasticbeanstalk.com awsapps.com
    digitaloceanspaces.com ondigitalocean.app glitch.me repl.co replit.app
    replit.dev ngrok.io ngrok.app ngrok-free.app ngrok.dev trycloudflare.com
    loca.lt surge.sh readthedocs.io webflow.io wixsite.com squarespace.com
    myshopify.com blogspot.com wordpress.com tumblr.com weebly.com
    carrd.co notion.site framer.app deno.dev val.run stackblitz.io
    csb.app gitpod.io ddns.net duckdns.org no-ip.org dyndns.org
    localhost.run nip.io sslip.io xip.io
    ltd.uk plc.uk me.uk net.uk nhs.uk police.uk sch.uk eu.org
    us.com uk.com eu.com de.com cn.com jpn.com za.com gb.net
    in.net us.org co.com kiwi.nz blogspot.co.uk
    """.split()
)
# co.uk, com.au, org.br, ac.jp, ne.jp, gov.in, ...: a generic second level under a country code.
_COUNTRY_SECOND_LEVEL = re.compile(
    r"^(?:ac|co|com|edu|gen|go|gob|gouv|gov|govt|info|ltd|mil|ne|net|nic|nom|or|org|plc|sch|biz)"
    r"\.[a-z]{2}$"
)


def is_public_suffix(host: str) -> bool:
    """Whether ``host`` (lower case, no port) is a name under which anyone gets a site: a
    single label (a top-level domain), a known public suffix, or a country's generic second
    level."""
    return "." not in host or host in PUBLIC_SUFFIXES or bool(_COUNTRY_SECOND_LEVEL.match(host))


def new_public_key() -> str:
    return PUBLIC_KEY_PREFIX + secrets.token_urlsafe(24)


def new_secret_key() -> str:
    return SECRET_KEY_PREFIX + secrets.token_urlsafe(32)


# An identity signature may name an expiry at most this far ahead: a signature is a credential
# anyone who sees the page can replay until it expires, so it must not live for months.
IDENTITY_MAX_AHEAD_SECONDS = 24 * 3600


class InvalidIdentity(Exception):
    """``code``: ``identity_invalid`` (wrong signature, or an expiry too far ahead) or
    ``identity_expired`` (a right signature whose expiry has passed)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def identity_message(widget_id: UUID | str, user_id: str, expires: int) -> bytes:
    """``widgetId|userId|exp``: the widget's id (a UUID, no ``|``) first and the decimal expiry
    last, so the user id between them is unambiguous whatever it contains."""
    return f"{widget_id}|{user_id}|{expires}".encode()


def identity_signature(secret_key: str, widget_id: UUID | str, user_id: str, expires: int) -> str:
    """What the host site's server computes for its signed-in user."""
    message = identity_message(widget_id, user_id, expires)
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()


def verify_identity(
    secret_key: str, widget_id: UUID, user_id: str, expires: int, signature: str, *, now: int
) -> None:
    """Raise ``InvalidIdentity`` unless ``signature`` signs this widget, user and expiry, and the
    expiry is in the future but at most ``IDENTITY_MAX_AHEAD_SECONDS`` ahead. The signature is
    checked first: only a genuine signature is told that it expired.

    Constant-time, case-insensitive on the hex. Compared as bytes: ``compare_digest`` raises on
    a ``str`` that is not ASCII, and a malformed signature is simply not valid."""
    expected = identity_signature(secret_key, widget_id, user_id, expires).encode("ascii")
    given = signature.strip().lower().encode("utf-8", "surrogatepass")
    if not hmac.compare_digest(expected, given):
        raise InvalidIdentity("identity_invalid")
    if expires <= now:
        raise InvalidIdentity("identity_expired")
    if expires > now + IDENTITY_MAX_AHEAD_SECONDS:
        raise InvalidIdentity("identity_invalid")


# --- origins --------------------------------------------------------------------------------


class InvalidOrigin(ValueError):
    pass


def _valid_host(host: str) -> bool:
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return True
    labels = host.split(".")
    return len(host) <= 253 and all(_LABEL.match(label) for label in labels)


def normalise_origin(text: str, *, allow_wildcard: bool = False) -> str:
    """``scheme://host[:port]`` in canonical form (lower case, default port dropped).

    With ``allow_wildcard``, ``https://*.example.com`` (subdomains of example.com, not
    example.com itself) is accepted too. Raises ``InvalidOrigin`` with a reason."""
    text = text.strip()
    if text == "*":
        raise InvalidOrigin("'*' would let any site embed the widget; list the sites instead")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidOrigin(f"{text!r} is not a URL origin") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidOrigin(f"{text!r}: the scheme must be http or https")
    if parts.username is not None or parts.password is not None:
        raise InvalidOrigin(f"{text!r}: an origin has no user name or password")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidOrigin(f"{text!r}: an origin is scheme://host[:port], without a path")
    host = (parts.hostname or "").lower()
    if parts.netloc.startswith("[") or ":" in host:
        host = f"[{host.strip('[]')}]"
    wildcard = host.startswith("*.")
    if wildcard:
        if not allow_wildcard:
            raise InvalidOrigin(f"{text!r}: a wildcard is not an origin")
        host = host[2:]
        if is_public_suffix(host):
            raise InvalidOrigin(
                f"{text!r}: {host!r} is a public suffix, anyone can have a site under it; a wildcard "
                "must cover subdomains of your own domain (*.example.com)"
            )
    if not host or not _valid_host(host) or "*" in host:
        raise InvalidOrigin(f"{text!r}: the host name is not valid")
    netloc = ("*." if wildcard else "") + host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    return f"{scheme}://{netloc}"


def origin_allowed(origin: str, allowed: Sequence[str]) -> bool:
    """Whether the browser's (normalised) ``Origin`` is one of ``allowed``: an exact match, or
    a subdomain of a wildcard entry with the same scheme and port."""
    if origin in allowed:
        return True
    scheme, _, rest = origin.partition("://")
    for entry in allowed:
        entry_scheme, _, entry_rest = entry.partition("://")
        if entry_scheme != scheme or not entry_rest.startswith("*."):
            continue
        suffix = entry_rest[1:]  # ".example.com[:port]"
        if rest.endswith(suffix) and len(rest) > len(suffix):
            return True
    return False


# --- session tokens -------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionClaims:
    widget_id: UUID
    visitor_id: str
    customer_id: str | None
    origin: str
    session_id: str
    expires_at: int


class InvalidSession(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _session_key(jwt_secret: str) -> bytes:
    return hmac.new(jwt_secret.encode(), b"bazaar widget session tokens", hashlib.sha256).digest()


def issue_session_token(
    jwt_secret: str,
    ttl_seconds: int,
    *,
    widget_id: UUID,
    visitor_id: str,
    customer_id: str | None,
    origin: str,
) -> tuple[str, SessionClaims]:
    now = int(time.time())
    claims = SessionClaims(
        widget_id=widget_id,
        visitor_id=visitor_id,
        customer_id=customer_id,
        origin=origin,
        session_id=secrets.token_urlsafe(12),
        expires_at=now + ttl_seconds,
    )
    payload: dict[str, Any] = {
        "typ": TOKEN_TYPE,
        "wid": str(widget_id),
        "vid": visitor_id,
        "cid": customer_id,
        "org": origin,
        "sid": claims.session_id,
        "iat": now,
        "exp": claims.expires_at,
    }
    return jwt.encode(payload, _session_key(jwt_secret), algorithm="HS256"), claims


def read_session_token(jwt_secret: str, token: str, *, verify_expiry: bool = True) -> SessionClaims:
    """Verify signature, type and (unless told not to) expiry;
    ``InvalidSession("session_expired" | "invalid_session")``."""
    try:
        payload = jwt.decode(
            token,
            _session_key(jwt_secret),
            algorithms=["HS256"],
            options={
                "require": ["typ", "wid", "vid", "org", "sid", "exp", "iat"],
                "verify_exp": verify_expiry,
            },
        )
        if payload["typ"] != TOKEN_TYPE:
            raise InvalidSession("invalid_session")
        customer = payload.get("cid")
        return SessionClaims(
            widget_id=UUID(str(payload["wid"])),
            visitor_id=str(payload["vid"]),
            customer_id=None if customer is None else str(customer),
            origin=str(payload["org"]),
            session_id=str(payload["sid"]),
            expires_at=int(payload["exp"]),
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidSession("session_expired") from exc
    except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
        raise InvalidSession("invalid_session") from exc
