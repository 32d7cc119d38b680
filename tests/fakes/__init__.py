"""Local fakes of third-party services, for tests that must never reach the network."""

from tests.fakes.stripe_server import FakeStripe, RecordedRequest, sign_webhook, stripe_fee

__all__ = ["FakeStripe", "RecordedRequest", "sign_webhook", "stripe_fee"]
