"""Origins, identity signatures and session tokens, without the API."""

import hashlib
import hmac
import time
from uuid import UUID, uuid4

import pytest

from app.widgets.security import (
    IDENTITY_MAX_AHEAD_SECONDS,
    InvalidIdentity,
    InvalidOrigin,
    InvalidSession,
    identity_signature,
    issue_session_token,
    normalise_origin,
    origin_allowed,
    read_session_token,
    verify_identity,
)


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("https://Shop.Example.com", "https://shop.example.com"),
        ("https://shop.example.com/", "https://shop.example.com"),
        ("https://shop.example.com:443", "https://shop.example.com"),
        ("http://localhost:8080", "http://localhost:8080"),
        ("http://127.0.0.1:3000", "http://127.0.0.1:3000"),
        ("http://[::1]:8000", "http://[::1]:8000"),
    ],
)
def test_origins_are_kept_in_one_canonical_form(given: str, canonical: str) -> None:
    assert normalise_origin(given) == canonical


@pytest.mark.parametrize(
    "refused",
    [
        "*",
        "shop.example.com",
        "ftp://shop.example.com",
        "https://shop.example.com/path",
        "https://shop.example.com?q=1",
        "https://user:pw@shop.example.com",
        "https://*.com",
        "https://shop.*.com",
        "https://exa mple.com",
        "https://",
        "null",
    ],
)
def test_what_is_not_an_origin_is_refused_with_a_reason(refused: str) -> None:
    with pytest.raises(InvalidOrigin):
        normalise_origin(refused, allow_wildcard=True)


def test_a_wildcard_is_only_accepted_where_allowed() -> None:
    assert normalise_origin("https://*.Example.com", allow_wildcard=True) == "https://*.example.com"
    with pytest.raises(InvalidOrigin):
        normalise_origin("https://*.example.com")


def test_a_wildcard_covers_subdomains_with_the_same_scheme_and_port_only() -> None:
    allowed = ["https://*.example.com", "http://localhost:3000"]
    assert origin_allowed("https://shop.example.com", allowed)
    assert origin_allowed("https://a.b.example.com", allowed)
    assert not origin_allowed("https://example.com", allowed)
    assert not origin_allowed("http://shop.example.com", allowed)
    assert not origin_allowed("https://shop.example.com:8443", allowed)
    assert not origin_allowed("https://evilexample.com", allowed)
    assert not origin_allowed("https://example.com.evil.io", allowed)
    assert origin_allowed("http://localhost:3000", allowed)
    assert not origin_allowed("http://localhost:3001", allowed)


@pytest.mark.parametrize(
    "public_suffix",
    [
        "https://*.com",
        "https://*.dev",
        "https://*.co.uk",
        "https://*.com.au",
        "https://*.ne.jp",
        "https://*.github.io",
        "https://*.GitHub.io",
        "https://*.herokuapp.com",
        "https://*.vercel.app",
        "https://*.s3.amazonaws.com",
        "http://*.co.uk:8080",
    ],
)
def test_a_wildcard_over_a_public_suffix_is_refused(public_suffix: str) -> None:
    """Anyone can have a site under these: the wildcard would let strangers embed the widget."""
    with pytest.raises(InvalidOrigin) as refused:
        normalise_origin(public_suffix, allow_wildcard=True)
    assert "public suffix" in str(refused.value)


@pytest.mark.parametrize(
    "own_domain",
    [
        "https://*.example.com",
        "https://*.example.co.uk",
        "https://*.alice.github.io",
        "https://*.shop.com.au",
    ],
)
def test_a_wildcard_over_a_domain_of_ones_own_is_accepted(own_domain: str) -> None:
    assert normalise_origin(own_domain, allow_wildcard=True) == own_domain


WIDGET = uuid4()
NOW = 1_800_000_000


def test_an_identity_signature_is_the_hex_hmac_of_widget_user_and_expiry() -> None:
    expires = NOW + 600
    signature = identity_signature("sk_secret", WIDGET, "customer-42", expires)

    message = f"{WIDGET}|customer-42|{expires}".encode()
    assert signature == hmac.new(b"sk_secret", message, hashlib.sha256).hexdigest()
    verify_identity("sk_secret", WIDGET, "customer-42", expires, signature.upper(), now=NOW)


@pytest.mark.parametrize(
    ("secret", "widget", "user", "expires"),
    [
        ("sk_other", WIDGET, "customer-42", NOW + 600),  # another secret (rotated, say)
        ("sk_secret", uuid4(), "customer-42", NOW + 600),  # another widget of the same owner
        ("sk_secret", WIDGET, "customer-43", NOW + 600),  # another user
        ("sk_secret", WIDGET, "customer-42", NOW + 6000),  # a later expiry than signed
    ],
)
def test_an_identity_signature_verifies_nothing_but_what_it_signed(
    secret: str, widget: UUID, user: str, expires: int
) -> None:
    signature = identity_signature("sk_secret", WIDGET, "customer-42", NOW + 600)

    with pytest.raises(InvalidIdentity) as refused:
        verify_identity(secret, widget, user, expires, signature, now=NOW)

    assert refused.value.code == "identity_invalid"


@pytest.mark.parametrize(
    ("expires", "outcome"),
    [
        (NOW - 3600, "identity_expired"),
        (NOW, "identity_expired"),
        (NOW + 1, None),
        (NOW + IDENTITY_MAX_AHEAD_SECONDS, None),
        (NOW + IDENTITY_MAX_AHEAD_SECONDS + 1, "identity_invalid"),  # a near-permanent credential
        (NOW + 365 * 24 * 3600, "identity_invalid"),
    ],
)
def test_an_identity_expires_and_may_not_be_signed_for_more_than_a_day(
    expires: int, outcome: str | None
) -> None:
    signature = identity_signature("sk_secret", WIDGET, "customer-42", expires)

    if outcome is None:
        verify_identity("sk_secret", WIDGET, "customer-42", expires, signature, now=NOW)
        return
    with pytest.raises(InvalidIdentity) as refused:
        verify_identity("sk_secret", WIDGET, "customer-42", expires, signature, now=NOW)
    assert refused.value.code == outcome


def test_a_forged_signature_is_invalid_not_expired() -> None:
    """Only a genuine signature is told that it expired."""
    with pytest.raises(InvalidIdentity) as refused:
        verify_identity("sk_secret", WIDGET, "customer-42", NOW - 60, "0" * 64, now=NOW)
    assert refused.value.code == "identity_invalid"


def test_a_session_token_round_trips_and_refuses_tampering_expiry_and_other_keys() -> None:
    widget_id = uuid4()
    token, claims = issue_session_token(
        "secret-a", 60, widget_id=widget_id, visitor_id="v_visitor01", customer_id="c1", origin="https://a.io"
    )
    read = read_session_token("secret-a", token)
    assert (read.widget_id, read.visitor_id, read.customer_id, read.origin) == (
        widget_id,
        "v_visitor01",
        "c1",
        "https://a.io",
    )
    assert read.expires_at == claims.expires_at
    with pytest.raises(InvalidSession) as wrong_key:
        read_session_token("secret-b", token)
    assert wrong_key.value.code == "invalid_session"
    header, payload, signature = token.split(".")
    with pytest.raises(InvalidSession):
        read_session_token("secret-a", f"{header}.{payload}x.{signature}")
    expired, _ = issue_session_token(
        "secret-a",
        -10,
        widget_id=widget_id,
        visitor_id="v_visitor01",
        customer_id=None,
        origin="https://a.io",
    )
    with pytest.raises(InvalidSession) as too_late:
        read_session_token("secret-a", expired)
    assert too_late.value.code == "session_expired"
    assert read_session_token("secret-a", expired, verify_expiry=False).expires_at < time.time()
