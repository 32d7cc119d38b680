"""The official stripe SDK against the local fake: every resource the marketplace uses."""

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe

from tests.fakes import FakeStripe, sign_webhook, stripe_fee

CHECKOUT: Any = {
    "mode": "payment",
    "success_url": "https://bazaar.test/success",
    "cancel_url": "https://bazaar.test/cancel",
    "client_reference_id": "buyer-1",
    "customer_email": "buyer@example.com",
    "line_items": [
        {
            "quantity": 2,
            "price_data": {"currency": "usd", "unit_amount": 500, "product_data": {"name": "App"}},
        },
        {
            "quantity": 1,
            "price_data": {"currency": "usd", "unit_amount": 250, "product_data": {"name": "Pro"}},
        },
    ],
    "metadata": {"purchase_id": "pur_1"},
    "payment_intent_data": {"metadata": {"purchase_id": "pur_1"}, "transfer_group": "purchase-pur_1"},
}
CARD: Any = {"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
CARD_NO_REDIRECTS: Any = {**CARD, "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"}}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeStripe]:
    with FakeStripe() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeStripe) -> FakeStripe:
    server.reset()
    return server


@pytest.fixture
def client(fake: FakeStripe) -> stripe.StripeClient:
    return fake.client()


def onboarded_account(fake: FakeStripe, client: stripe.StripeClient) -> str:
    account = client.v1.accounts.create(
        {"type": "express", "capabilities": {"transfers": {"requested": True}}}
    )
    fake.complete_onboarding(account.id)
    return account.id


def paid_charge(fake: FakeStripe, client: stripe.StripeClient) -> Any:
    event = fake.complete_checkout(client.v1.checkout.sessions.create(CHECKOUT).id)
    return fake.charges[fake.payment_intents[event["data"]["object"]["payment_intent"]]["latest_charge"]]


# ---- server, wire format, auth -----------------------------------------------------------------


def test_starts_on_a_free_port_and_stops() -> None:
    with FakeStripe() as one, FakeStripe() as two:
        assert one.base_url.startswith("http://127.0.0.1:")
        assert one.base_url != two.base_url
        assert httpx.get(f"{one.base_url}/v1/charges/ch_x").status_code == 401
        url = one.base_url
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/v1/charges/ch_x")


def test_bracket_form_encoding_is_parsed_into_nested_params(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    client.v1.checkout.sessions.create(CHECKOUT, {"idempotency_key": "purchase-pur_1"})
    request = fake.requests[-1]
    assert (request.method, request.path, request.idempotency_key) == (
        "POST",
        "/v1/checkout/sessions",
        "purchase-pur_1",
    )
    assert request.params["line_items"][0] == {
        "quantity": "2",
        "price_data": {"currency": "usd", "unit_amount": "500", "product_data": {"name": "App"}},
    }
    assert request.params["payment_intent_data"]["transfer_group"] == "purchase-pur_1"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"


def test_missing_or_wrong_api_key_is_401_in_stripe_shape(fake: FakeStripe) -> None:
    response = httpx.post(f"{fake.base_url}/v1/transfers", data={"amount": "1"})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "code" in response.json()["error"]
    wrong = stripe.StripeClient("sk_test_wrong", base_addresses={"api": fake.base_url}, max_network_retries=0)
    with pytest.raises(stripe.AuthenticationError):
        wrong.v1.charges.retrieve("ch_x")


def test_unknown_params_and_missing_params_are_rejected(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.transfers.create({"amount": 1, "currency": "usd", "destination": "acct_x", "typo": 1})
    assert unknown.value.code == "parameter_unknown"
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.checkout.sessions.create({**CHECKOUT, "line_items": [{"quantity": 1}]})
    assert (missing.value.code, missing.value.param) == ("parameter_missing", "line_items[0][price_data]")


@pytest.mark.parametrize(
    ("kind", "object_id"),
    [
        ("checkout.sessions", "cs_test_nope"),
        ("payment_intents", "pi_nope"),
        ("charges", "ch_nope"),
        ("balance_transactions", "txn_nope"),
        ("accounts", "acct_nope"),
        ("transfers", "tr_nope"),
        ("refunds", "re_nope"),
    ],
)
def test_unknown_ids_are_resource_missing(client: stripe.StripeClient, kind: str, object_id: str) -> None:
    service: Any = client.v1
    for part in kind.split("."):
        service = getattr(service, part)
    with pytest.raises(stripe.InvalidRequestError) as error:
        service.retrieve(object_id)
    assert (error.value.http_status, error.value.code) == (404, "resource_missing")
    assert object_id in error.value.user_message


# ---- idempotency -------------------------------------------------------------------------------


def test_idempotent_retry_returns_the_same_object_and_creates_once(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    destination = onboarded_account(fake, client)
    params: Any = {"amount": 700, "currency": "usd", "destination": destination, "transfer_group": "g"}
    first = client.v1.transfers.create(params, {"idempotency_key": "payout-1"})
    again = client.v1.transfers.create(params, {"idempotency_key": "payout-1"})
    assert first.id == again.id
    assert first.id.startswith("tr_")
    assert len(fake.transfers) == 1
    assert [r.replayed for r in fake.requests if r.path == "/v1/transfers"] == [False, True]


def test_same_idempotency_key_with_other_params_is_an_idempotency_error(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    destination = onboarded_account(fake, client)
    client.v1.transfers.create(
        {"amount": 700, "currency": "usd", "destination": destination}, {"idempotency_key": "k"}
    )
    with pytest.raises(stripe.IdempotencyError) as error:
        client.v1.transfers.create(
            {"amount": 800, "currency": "usd", "destination": destination}, {"idempotency_key": "k"}
        )
    assert error.value.http_status == 400
    assert len(fake.transfers) == 1


def test_sdk_sends_a_fresh_idempotency_key_on_every_post(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    client.v1.checkout.sessions.create(CHECKOUT)
    client.v1.checkout.sessions.create(CHECKOUT)
    keys = {r.idempotency_key for r in fake.requests}
    assert len(keys) == 2
    assert None not in keys
    assert len(fake.checkout_sessions) == 2


# ---- checkout ----------------------------------------------------------------------------------


def test_checkout_session_create_retrieve_and_complete(fake: FakeStripe, client: stripe.StripeClient) -> None:
    session = client.v1.checkout.sessions.create(CHECKOUT)
    assert session.id.startswith("cs_test_")
    assert session.object == "checkout.session"
    assert session.url
    assert session.url.startswith("https://checkout.stripe.com/")
    assert (session.status, session.payment_status) == ("open", "unpaid")
    assert (session.amount_total, session.currency) == (1250, "usd")
    assert session.metadata.to_dict() == {"purchase_id": "pur_1"}  # StripeObject is not a dict
    assert session.client_reference_id == "buyer-1"
    assert session.payment_intent is None

    event = fake.complete_checkout(session.id)
    assert event["type"] == "checkout.session.completed"
    assert event["id"].startswith("evt_")
    assert event["livemode"] is False
    assert event["api_version"] == stripe.api_version
    paid = client.v1.checkout.sessions.retrieve(session.id)
    assert (paid.status, paid.payment_status) == ("complete", "paid")
    assert paid.to_dict() == event["data"]["object"]

    pi = client.v1.payment_intents.retrieve(
        paid.payment_intent, {"expand": ["latest_charge.balance_transaction"]}
    )
    assert pi.status == "succeeded"
    assert pi.metadata.to_dict() == {"purchase_id": "pur_1"}
    assert pi.transfer_group == "purchase-pur_1"
    charge: Any = pi.latest_charge
    assert charge.object == "charge"
    assert charge.balance_transaction.fee == 66  # 36.25 -> 36, + 30
    assert charge.balance_transaction.net == 1250 - 66
    assert [e["type"] for e in fake.events] == [
        "charge.succeeded",
        "payment_intent.succeeded",
        "checkout.session.completed",
    ]


def test_expired_checkout_session(fake: FakeStripe, client: stripe.StripeClient) -> None:
    session = client.v1.checkout.sessions.create(CHECKOUT)
    assert fake.expire_checkout(session.id)["type"] == "checkout.session.expired"
    assert client.v1.checkout.sessions.retrieve(session.id).status == "expired"
    with pytest.raises(ValueError, match="expired"):
        fake.complete_checkout(session.id)


# ---- payment intents, charges, balance transactions --------------------------------------------


def test_confirmed_payment_intent_succeeds_with_charge_and_fee(client: stripe.StripeClient) -> None:
    pi = client.v1.payment_intents.create(
        {**CARD_NO_REDIRECTS, "metadata": {"order": "o1"}, "transfer_group": "order-o1"}
    )
    assert pi.id.startswith("pi_")
    assert (pi.status, pi.amount_received) == ("succeeded", 1000)
    assert client.v1.payment_intents.retrieve(pi.id).to_dict() == pi.to_dict()
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.id.startswith("ch_")
    assert (charge.paid, charge.payment_intent, charge.transfer_group) == (True, pi.id, "order-o1")
    txn = client.v1.balance_transactions.retrieve(charge.balance_transaction)
    assert txn.id.startswith("txn_")
    assert (txn.amount, txn.fee, txn.net, txn.source) == (1000, 59, 941, charge.id)


def test_confirm_without_return_url_needs_redirects_disabled(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError, match="return_url"):
        client.v1.payment_intents.create(CARD)
    assert client.v1.payment_intents.create({**CARD, "return_url": "https://x"}).status == "succeeded"


def test_unconfirmed_payment_intent_waits_for_payment_method(client: stripe.StripeClient) -> None:
    pi = client.v1.payment_intents.create({"amount": 1000, "currency": "usd"})
    assert (pi.status, pi.latest_charge) == ("requires_payment_method", None)


@pytest.mark.parametrize(
    ("method", "decline_code"),
    [
        ("pm_card_chargeDeclined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
    ],
)
def test_declined_card_raises_card_error(
    fake: FakeStripe, client: stripe.StripeClient, method: str, decline_code: str
) -> None:
    with pytest.raises(stripe.CardError) as error:
        client.v1.payment_intents.create({**CARD_NO_REDIRECTS, "payment_method": method})
    assert (error.value.http_status, error.value.code) == (402, "card_declined")
    assert error.value.error
    assert error.value.error.decline_code == decline_code
    [pi] = fake.payment_intents.values()
    assert pi["status"] == "requires_payment_method"
    assert fake.charges[pi["latest_charge"]]["status"] == "failed"
    assert fake.events[-1]["type"] == "payment_intent.payment_failed"


def test_declined_card_is_replayed_for_the_same_idempotency_key(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    params: Any = {**CARD_NO_REDIRECTS, "payment_method": "pm_card_chargeDeclined"}
    for _ in range(2):
        with pytest.raises(stripe.CardError):
            client.v1.payment_intents.create(params, {"idempotency_key": "pay-1"})
    assert len(fake.payment_intents) == 1


@pytest.mark.parametrize(("amount", "fee"), [(50, 31), (500, 45), (1000, 59), (1234, 66), (10000, 320)])
def test_stripe_fee_is_2_9_percent_plus_30_rounded_half_up(amount: int, fee: int) -> None:
    assert stripe_fee(amount) == fee


# ---- connect accounts and transfers ------------------------------------------------------------


def test_express_account_onboarding(fake: FakeStripe, client: stripe.StripeClient) -> None:
    account = client.v1.accounts.create(
        {
            "type": "express",
            "country": "US",
            "email": "seller@example.com",
            "capabilities": {"card_payments": {"requested": True}, "transfers": {"requested": True}},
        }
    )
    assert account.id.startswith("acct_")
    assert (account.details_submitted, account.charges_enabled, account.payouts_enabled) == (
        False,
        False,
        False,
    )
    link = client.v1.account_links.create(
        {
            "account": account.id,
            "refresh_url": "https://bazaar.test/refresh",
            "return_url": "https://bazaar.test/return",
            "type": "account_onboarding",
        }
    )
    assert link.url.startswith("https://connect.stripe.com/")
    assert link.expires_at > time.time()

    event = fake.complete_onboarding(account.id)
    assert event["type"] == "account.updated"
    assert event["data"]["previous_attributes"]["details_submitted"] is False
    done = client.v1.accounts.retrieve(account.id)
    assert (done.details_submitted, done.charges_enabled, done.payouts_enabled) == (True, True, True)
    assert done.to_dict() == event["data"]["object"]


def test_account_link_for_unknown_account_is_rejected(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as error:
        client.v1.account_links.create(
            {
                "account": "acct_nope",
                "refresh_url": "https://r",
                "return_url": "https://r",
                "type": "account_onboarding",
            }
        )
    assert error.value.param == "account"


def test_transfer_create_and_retrieve(fake: FakeStripe, client: stripe.StripeClient) -> None:
    destination = onboarded_account(fake, client)
    charge = paid_charge(fake, client)
    transfer = client.v1.transfers.create(
        {
            "amount": 1000,
            "currency": "usd",
            "destination": destination,
            "transfer_group": "purchase-pur_1",
            "source_transaction": charge["id"],
            "metadata": {"purchase_id": "pur_1"},
        }
    )
    assert transfer.object == "transfer"
    assert (transfer.amount, transfer.destination, transfer.transfer_group) == (
        1000,
        destination,
        "purchase-pur_1",
    )
    assert client.v1.transfers.retrieve(transfer.id).metadata.to_dict() == {"purchase_id": "pur_1"}
    assert fake.transfers[transfer.id]["source_transaction"] == charge["id"]


def test_transfer_to_unknown_or_unonboarded_destination_fails(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.transfers.create({"amount": 100, "currency": "usd", "destination": "acct_nope"})
    assert (unknown.value.http_status, unknown.value.param) == (400, "destination")
    fresh = client.v1.accounts.create({"type": "express", "capabilities": {"transfers": {"requested": True}}})
    with pytest.raises(stripe.InvalidRequestError, match="capabilities"):
        client.v1.transfers.create({"amount": 100, "currency": "usd", "destination": fresh.id})
    assert fake.transfers == {}


def test_transfer_failure_injection_for_partial_failures(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    sellers = [onboarded_account(fake, client) for _ in range(3)]
    fake.fail_transfers_to(sellers[1])
    results = {}
    for seller in sellers:
        try:
            client.v1.transfers.create(
                {"amount": 300, "currency": "usd", "destination": seller}, {"idempotency_key": f"t-{seller}"}
            )
            results[seller] = "ok"
        except stripe.InvalidRequestError as error:
            results[seller] = error.code
    assert results == {sellers[0]: "ok", sellers[1]: "balance_insufficient", sellers[2]: "ok"}
    # Like Stripe, the same key replays the failure; a new key is a fresh attempt (which now succeeds).
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.transfers.create(
            {"amount": 300, "currency": "usd", "destination": sellers[1]},
            {"idempotency_key": f"t-{sellers[1]}"},
        )
    client.v1.transfers.create({"amount": 300, "currency": "usd", "destination": sellers[1]})
    assert len(fake.transfers) == 3


def test_transfer_failure_injection_can_return_server_errors(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    destination = onboarded_account(fake, client)
    fake.fail_transfers_to(None, times=2, status=500, code="api_error", message="boom")
    for _ in range(2):
        with pytest.raises(stripe.APIError):
            client.v1.transfers.create({"amount": 100, "currency": "usd", "destination": destination})
    client.v1.transfers.create({"amount": 100, "currency": "usd", "destination": destination})


def test_transfers_cannot_exceed_their_source_charge(fake: FakeStripe, client: stripe.StripeClient) -> None:
    destination = onboarded_account(fake, client)
    charge = paid_charge(fake, client)
    params: Any = {"currency": "usd", "destination": destination, "source_transaction": charge["id"]}
    client.v1.transfers.create({**params, "amount": 1000})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.transfers.create({**params, "amount": 251})


# ---- refunds -----------------------------------------------------------------------------------


def test_partial_then_full_refund(fake: FakeStripe, client: stripe.StripeClient) -> None:
    pi = client.v1.payment_intents.create(CARD_NO_REDIRECTS)
    partial = client.v1.refunds.create({"payment_intent": pi.id, "amount": 400})
    assert partial.id.startswith("re_")
    assert (partial.status, partial.amount, partial.charge) == ("succeeded", 400, pi.latest_charge)
    rest = client.v1.refunds.create({"charge": pi.latest_charge})
    assert rest.amount == 600
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (1000, True)
    assert client.v1.refunds.retrieve(rest.id).amount == 600
    assert fake.events[-1]["type"] == "charge.refunded"
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.refunds.create({"payment_intent": pi.id})
    assert again.value.code == "charge_already_refunded"


def test_refund_larger_than_charge_is_rejected(client: stripe.StripeClient) -> None:
    pi = client.v1.payment_intents.create(CARD_NO_REDIRECTS)
    with pytest.raises(stripe.InvalidRequestError) as error:
        client.v1.refunds.create({"payment_intent": pi.id, "amount": 1001})
    assert error.value.param == "amount"


# ---- webhooks ----------------------------------------------------------------------------------


def test_signed_event_verifies_with_the_sdk(fake: FakeStripe, client: stripe.StripeClient) -> None:
    session = client.v1.checkout.sessions.create(CHECKOUT)
    body, headers = fake.webhook_request(fake.complete_checkout(session.id), "whsec_test")
    event = client.construct_event(body, headers["Stripe-Signature"], "whsec_test")
    assert event.type == "checkout.session.completed"
    assert event.data.object["id"] == session.id
    legacy = stripe.Webhook.construct_event(body, headers["Stripe-Signature"], "whsec_test")
    assert legacy.id == event.id


def test_signature_matches_the_sdks_own_test_helper() -> None:
    payload = json.dumps({"id": "evt_1", "object": "event"})
    expected = stripe.WebhookSignature.generate_signature_header(payload, "whsec_x", timestamp=1700000000)
    assert sign_webhook(payload.encode(), "whsec_x", timestamp=1700000000) == expected


def test_tampered_payload_wrong_secret_and_old_timestamp_are_rejected(fake: FakeStripe) -> None:
    event = fake.event("payment_intent.succeeded", {"id": "pi_1", "object": "payment_intent", "amount": 1000})
    body, headers = fake.webhook_request(event, "whsec_test")
    signature = headers["Stripe-Signature"]
    assert stripe.WebhookSignature.verify_header(body, signature, "whsec_test")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(body.replace(b"1000", b"9999"), signature, "whsec_test")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(body, signature, "whsec_other")
    old = sign_webhook(body, "whsec_test", timestamp=int(time.time()) - 301)
    with pytest.raises(stripe.SignatureVerificationError, match="tolerance"):
        stripe.WebhookSignature.verify_header(body, old, "whsec_test", tolerance=300)


def test_any_event_can_be_built(fake: FakeStripe) -> None:
    obj = {"id": "acct_1", "object": "account", "charges_enabled": True}
    event = fake.event("account.updated", obj, previous_attributes={"charges_enabled": False})
    assert event["data"] == {"object": obj, "previous_attributes": {"charges_enabled": False}}
    assert fake.events_of_type("account.updated") == [event]


# ---- async -------------------------------------------------------------------------------------


# The SDK's httpx client passes the form body as data=str, which httpx deprecates.
@pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")
async def test_async_context_manager_and_async_sdk_calls() -> None:
    async with FakeStripe() as fake:
        client = fake.client()
        session = await client.v1.checkout.sessions.create_async(CHECKOUT)
        fake.complete_checkout(session.id)
        paid = await client.v1.checkout.sessions.retrieve_async(session.id)
        assert paid.payment_status == "paid"
        with pytest.raises(stripe.CardError):
            await client.v1.payment_intents.create_async(
                {**CARD_NO_REDIRECTS, "payment_method": "pm_card_chargeDeclined"}
            )
