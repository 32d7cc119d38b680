"""Payments tests run against the local fake Stripe (real HTTP, Stripe's signing scheme)."""

from collections.abc import Iterator
from typing import Any

import pytest

from app.payments.providers import reset_providers
from tests.fakes import FakeStripe


@pytest.fixture(scope="session")
def stripe_server() -> Iterator[FakeStripe]:
    with FakeStripe() as fake:
        yield fake


@pytest.fixture
def fake(stripe_server: FakeStripe) -> FakeStripe:
    stripe_server.reset()
    return stripe_server


@pytest.fixture
def settings_changes(stripe_server: FakeStripe) -> dict[str, Any]:
    return {
        "payment_provider": "stripe",
        "stripe_api_key": stripe_server.api_key,
        "stripe_webhook_secret": stripe_server.webhook_secret,
        "stripe_api_base": stripe_server.base_url,
    }


@pytest.fixture(autouse=True)
def _fresh_providers() -> Iterator[None]:
    """Providers are built once per process from the settings; each test has its own."""
    reset_providers()
    yield
    reset_providers()
