"""Origins, identity signatures and session tokens, without the API."""

import time
from uuid import uuid4

import pytest

from app.widgets.security import (
    InvalidOrigin,
    InvalidSession,
    identity_is_valid,
    identity_signature,
    issue_session_token,
    normalise_origin,
    origin_allowed,
    read_session_token,
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


def test_an_identity_signature_is_the_hex_hmac_of_the_user_id() -> None:
    signature = identity_signature("sk_secret", "customer-42")
    assert len(signature) == 64
    assert identity_is_valid("sk_secret", "customer-42", signature.upper())
    assert not identity_is_valid("sk_secret", "customer-43", signature)
    assert not identity_is_valid("sk_other", "customer-42", signature)


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
