"""A local fake of the Stripe API, spoken to by the official ``stripe`` SDK over real HTTP.

    with FakeStripe() as fake:                      # or: async with FakeStripe() as fake
        client = fake.client()                      # stripe.StripeClient aimed at fake.base_url
        session = client.v1.checkout.sessions.create({...})
        event = fake.complete_checkout(session.id)  # what the customer + Stripe do
        body, headers = fake.webhook_request(event)  # signed like Stripe, ready to POST to the app

State lives in plain dicts keyed by id (``fake.transfers``, ``fake.payment_intents``, ...), every
request is logged in ``fake.requests`` and every event Stripe would send is appended to
``fake.events``. Only what the marketplace uses is modelled; unknown routes answer 404.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import stripe
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes.serving import HttpFake

Obj = dict[str, Any]

# Stripe's test payment methods: None succeeds, a string is the decline code.
TEST_PAYMENT_METHODS: dict[str, str | None] = {
    "pm_card_visa": None,
    "pm_card_mastercard": None,
    "pm_card_chargeDeclined": "generic_decline",
    "pm_card_chargeDeclinedInsufficientFunds": "insufficient_funds",
}
DECLINE_MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
}
BALANCE_INSUFFICIENT = (
    "You have insufficient available funds in your Stripe account. Try adding funds directly to your "
    "available balance by creating Charges using the 4000000000000077 test card."
)
# Top-level parameters each create endpoint accepts; anything else is rejected like Stripe does.
ALLOWED = {
    "checkout.session": {
        "mode", "line_items", "success_url", "cancel_url", "metadata", "client_reference_id",
        "payment_intent_data", "customer_email", "customer", "expires_at", "payment_method_types",
        "locale", "allow_promotion_codes", "billing_address_collection", "submit_type", "ui_mode",
        "return_url", "currency", "expand",
    },
    "payment_intent": {
        "amount", "currency", "metadata", "transfer_group", "confirm", "payment_method",
        "payment_method_types", "automatic_payment_methods", "return_url", "description", "customer",
        "receipt_email", "capture_method", "off_session", "on_behalf_of", "transfer_data",
        "application_fee_amount", "statement_descriptor_suffix", "expand",
    },
    "account": {
        "type", "country", "email", "capabilities", "business_type", "metadata", "business_profile",
        "controller", "settings", "tos_acceptance", "individual", "company", "expand",
    },
    "account_link": {
        "account", "refresh_url", "return_url", "type", "collect", "collection_options", "expand",
    },
    "transfer": {
        "amount", "currency", "destination", "transfer_group", "metadata", "description",
        "source_transaction", "source_type", "expand",
    },
    "refund": {
        "payment_intent", "charge", "amount", "reason", "metadata", "refund_application_fee",
        "reverse_transfer", "expand",
    },
}  # fmt: skip


class StripeError(Exception):
    """An error answered in Stripe's shape. ``replayable``: an idempotent retry gets it again."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        replayable: bool = False,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status, self.replayable = status, replayable
        self.error = {"type": type, "message": message, "code": code, "param": param, **extra}

    def body(self) -> Obj:
        return {"error": {k: v for k, v in self.error.items() if v is not None or k == "code"}}


def new_id(prefix: str, length: int = 24) -> str:
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


def stripe_fee(amount: int) -> int:
    """Stripe's standard card pricing: 2.9% + 30 cents, rounded half up."""
    return (amount * 29 + 500) // 1000 + 30


def sign_webhook(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header Stripe sends: ``t=<ts>,v1=<hmac-sha256 of "<ts>.<payload>">``."""
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def parse_params(pairs: list[tuple[str, str]]) -> Obj:
    """``a[b][0][c]=v`` form pairs into nested dicts and lists, as Stripe reads them."""
    root: Obj = {}
    for key, value in pairs:
        path = [key.split("[", 1)[0], *re.findall(r"\[([^\]]*)\]", key)]
        node = root
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    nested: Obj = _listify(root)
    return nested


def _listify(node: Any, parent: str = "") -> Any:
    if not isinstance(node, dict):
        return node
    node = {k: _listify(v, k) for k, v in node.items()}
    if node and parent != "metadata" and all(k.isdigit() for k in node):
        return [node[k] for k in sorted(node, key=int)]
    return node


def _missing(param: str) -> StripeError:
    return StripeError(400, f"Missing required param: {param}.", code="parameter_missing", param=param)


def _str(params: Obj, name: str, label: str | None = None) -> str:
    value = params.get(name)
    if not isinstance(value, str) or value == "":
        raise _missing(label or name)
    return value


def _int(params: Obj, name: str, label: str | None = None, required: bool = True) -> int | None:
    value = params.get(name)
    if value is None and not required:
        return None
    if value in (None, ""):
        raise _missing(label or name)
    if not isinstance(value, str) or not re.fullmatch(r"-?\d+", value):
        raise StripeError(
            400, f"Invalid integer: {value}", code="parameter_invalid_integer", param=label or name
        )
    return int(value)


def _metadata(params: Obj, name: str = "metadata") -> dict[str, str]:
    meta = params.get(name) or {}
    if not isinstance(meta, dict) or len(meta) > 50:
        raise StripeError(400, "Invalid metadata: at most 50 keys.", param=name)
    for key, value in meta.items():
        if len(key) > 40 or len(value) > 500:
            raise StripeError(400, f"Metadata key {key!r} or its value is too long.", param=f"{name}[{key}]")
    return {k: v for k, v in meta.items() if v != ""}


def _check_params(params: Obj, kind: str) -> None:
    for name in params:
        if name not in ALLOWED[kind]:
            raise StripeError(
                400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name
            )


@dataclass
class RecordedRequest:
    method: str
    path: str
    params: Obj
    idempotency_key: str | None
    status: int = 0
    replayed: bool = False
    headers: dict[str, str] = field(default_factory=dict)


class FakeStripe(HttpFake):
    """In-memory Stripe on a real HTTP port. Start with ``with``/``async with`` or ``start()``/``stop()``."""

    server_name = "fake Stripe server"

    STORES: ClassVar[dict[str, tuple[str, str]]] = {  # URL segment -> (attribute, object name)
        "checkout/sessions": ("checkout_sessions", "checkout.session"),
        "payment_intents": ("payment_intents", "payment_intent"),
        "charges": ("charges", "charge"),
        "balance_transactions": ("balance_transactions", "balance_transaction"),
        "accounts": ("accounts", "account"),
        "transfers": ("transfers", "transfer"),
        "refunds": ("refunds", "refund"),
    }

    def __init__(self, api_key: str = "sk_test_fake", webhook_secret: str = "whsec_fake") -> None:
        self.api_key, self.webhook_secret = api_key, webhook_secret
        self.base_url = ""
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Forget every object, request, event and injected failure (keeps the server running)."""
        with self._lock:
            self.checkout_sessions: dict[str, Obj] = {}
            self.payment_intents: dict[str, Obj] = {}
            self.charges: dict[str, Obj] = {}
            self.balance_transactions: dict[str, Obj] = {}
            self.accounts: dict[str, Obj] = {}
            self.account_links: list[Obj] = []
            self.transfers: dict[str, Obj] = {}
            self.refunds: dict[str, Obj] = {}
            self.events: list[Obj] = []
            self.requests: list[RecordedRequest] = []
            self._session_pi_data: dict[str, Obj] = {}
            self._idempotency: dict[str, tuple[str, str, Obj, int, Obj]] = {}
            self._transfer_failures: list[list[Any]] = []  # [destination or None, times left, error]

    # ---- lifecycle ------------------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._asgi, methods=["GET", "POST", "DELETE"])])

    def client(self, **options: Any) -> stripe.StripeClient:
        """A StripeClient talking to this fake; no retries so failures surface at once."""
        options.setdefault("max_network_retries", 0)
        bases = {"api": self.base_url, "connect": self.base_url, "files": self.base_url}
        return stripe.StripeClient(api_key=self.api_key, base_addresses=bases, **options)  # type: ignore[arg-type]

    # ---- HTTP plumbing --------------------------------------------------------------------------

    async def _asgi(self, request: Request) -> JSONResponse:
        body = (await request.body()).decode()
        pairs = parse_qsl(request.url.query, keep_blank_values=True) + parse_qsl(body, keep_blank_values=True)
        record = RecordedRequest(
            request.method,
            request.url.path,
            parse_params(pairs),
            request.headers.get("idempotency-key"),
            headers=dict(request.headers),
        )
        status, payload = self._handle(record, request.headers.get("authorization", ""))
        headers = {"Request-Id": new_id("req_", 14)}
        if record.replayed:
            headers["Idempotent-Replayed"] = "true"
        return JSONResponse(payload, status_code=status, headers=headers)

    def _handle(self, rec: RecordedRequest, authorization: str) -> tuple[int, Obj]:
        with self._lock:
            self.requests.append(rec)
            try:
                rec.status, payload = self._respond(rec, authorization)
            except Exception as exc:  # a bug in the fake: say so instead of a bare 500
                rec.status, payload = (
                    500,
                    StripeError(500, f"fake Stripe crashed: {exc!r}", type="api_error").body(),
                )
            return rec.status, payload

    def _respond(self, rec: RecordedRequest, authorization: str) -> tuple[int, Obj]:
        key = rec.idempotency_key if rec.method == "POST" else None
        try:
            self._authenticate(authorization)
            if key and key in self._idempotency:
                method, path, params, status, payload = self._idempotency[key]
                if (method, path, params) != (rec.method, rec.path, rec.params):
                    raise StripeError(
                        400,
                        "Keys for idempotent requests can only be used with the same parameters they were "
                        f"first used with. Try using a key other than '{key}' if you meant to execute a "
                        "different request.",
                        type="idempotency_error",
                    )
                rec.replayed = True
                return status, payload
        except StripeError as exc:
            return exc.status, exc.body()
        try:
            status, payload = 200, self._route(rec.method, rec.path, rec.params)
        except StripeError as exc:
            if key and exc.replayable:
                self._idempotency[key] = (rec.method, rec.path, rec.params, exc.status, exc.body())
            return exc.status, exc.body()
        if key:
            self._idempotency[key] = (rec.method, rec.path, rec.params, status, payload)
        return status, payload

    def _authenticate(self, authorization: str) -> None:
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key:
            raise StripeError(
                401,
                "You did not provide an API key. You need to provide your API key in the Authorization "
                "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
            )
        if key != self.api_key:
            raise StripeError(401, f"Invalid API Key provided: {key[:8]}****{key[-4:]}")

    def _route(self, method: str, path: str, params: Obj) -> Obj:
        creators = {
            "/v1/checkout/sessions": self._create_checkout_session,
            "/v1/payment_intents": self._create_payment_intent,
            "/v1/accounts": self._create_account,
            "/v1/account_links": self._create_account_link,
            "/v1/transfers": self._create_transfer,
            "/v1/refunds": self._create_refund,
        }
        if method == "POST" and path in creators:
            return self._expand(copy.deepcopy(creators[path](params)), params.get("expand") or [])
        match = re.fullmatch(r"/v1/(checkout/sessions|[a-z_]+)/([A-Za-z0-9_]+)", path)
        if method == "GET" and match and match[1] in self.STORES:
            attr, name = self.STORES[match[1]]
            obj = getattr(self, attr).get(match[2])
            if obj is None:
                raise StripeError(404, f"No such {name}: '{match[2]}'", code="resource_missing", param="id")
            return self._expand(copy.deepcopy(obj), params.get("expand") or [])
        raise StripeError(404, f"Unrecognized request URL ({method}: {path}).")

    def find(self, object_id: str) -> Obj | None:
        """Any stored object by id."""
        for attr, _ in self.STORES.values():
            store: dict[str, Obj] = getattr(self, attr)
            if object_id in store:
                return store[object_id]
        return None

    def _expand(self, obj: Obj, paths: list[str]) -> Obj:
        for path in paths:
            head, _, rest = path.partition(".")
            value = obj.get(head)
            if isinstance(value, str) and (found := self.find(value)) is not None:
                value = obj[head] = copy.deepcopy(found)
            if isinstance(value, dict) and rest:
                self._expand(value, [rest])
        return obj

    # ---- resources ------------------------------------------------------------------------------

    def _create_checkout_session(self, params: Obj) -> Obj:
        _check_params(params, "checkout.session")
        if _str(params, "mode") != "payment":
            raise StripeError(400, "The fake supports only mode=payment.", param="mode")
        success_url = _str(params, "success_url")
        items = params.get("line_items")
        if not isinstance(items, list) or not items:
            raise _missing("line_items")
        total, currencies = 0, set()
        for i, item in enumerate(items):
            prefix = f"line_items[{i}]"
            quantity = _int(item, "quantity", f"{prefix}[quantity]") or 0
            price = item.get("price_data")
            if not isinstance(price, dict):
                raise _missing(f"{prefix}[price_data]")
            currencies.add(_str(price, "currency", f"{prefix}[price_data][currency]").lower())
            if "product" not in price and not (price.get("product_data") or {}).get("name"):
                raise _missing(f"{prefix}[price_data][product_data][name]")
            total += (_int(price, "unit_amount", f"{prefix}[price_data][unit_amount]") or 0) * quantity
        if len(currencies) > 1:
            raise StripeError(400, "All line items must share one currency.", param="line_items")
        pi_data = params.get("payment_intent_data") or {}
        session_id, now = new_id("cs_test_", 58), int(time.time())
        session = {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": total,
            "amount_total": total,
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": params.get("client_reference_id"),
            "created": now,
            "currency": currencies.pop(),
            "customer_details": None,
            "customer_email": params.get("customer_email"),
            "expires_at": int(params.get("expires_at") or now + 86400),
            "livemode": False,
            "metadata": _metadata(params),
            "mode": "payment",
            "payment_intent": None,
            "payment_status": "unpaid",
            "status": "open",
            "success_url": success_url,
            "url": f"https://checkout.stripe.com/c/pay/{session_id}",
        }
        self._session_pi_data[session_id] = {
            "metadata": _metadata(pi_data),
            "transfer_group": pi_data.get("transfer_group"),
            "description": pi_data.get("description"),
        }
        self.checkout_sessions[session_id] = session
        return session

    def _create_payment_intent(self, params: Obj) -> Obj:
        _check_params(params, "payment_intent")
        amount = _int(params, "amount") or 0
        currency = _str(params, "currency").lower()
        if amount < 50:
            raise StripeError(
                400, "Amount must be at least 50 cents.", code="amount_too_small", param="amount"
            )
        method, confirm = params.get("payment_method"), params.get("confirm") == "true"
        if method and method not in TEST_PAYMENT_METHODS:
            raise StripeError(
                400, f"No such PaymentMethod: '{method}'", code="resource_missing", param="payment_method"
            )
        if confirm and not method:
            raise _missing("payment_method")
        auto = params.get("automatic_payment_methods") or {}
        redirects_allowed = auto.get("enabled") != "false" and auto.get("allow_redirects") != "never"
        if (
            confirm
            and redirects_allowed
            and "payment_method_types" not in params
            and "return_url" not in params
        ):
            raise StripeError(
                400,
                "This PaymentIntent is configured to accept payment methods enabled in your Dashboard. "
                "Because some of these payment methods might redirect your customer off of your page, "
                "you must provide a `return_url`. If you don't want to accept redirect-based payment "
                "methods, set `automatic_payment_methods[enabled]` to `true` and "
                "`automatic_payment_methods[allow_redirects]` to `never`.",
            )
        pi = self._new_payment_intent(
            amount, currency, _metadata(params), params.get("transfer_group"), params.get("description")
        )
        if method:
            pi.update(payment_method=method, status="requires_confirmation")
            if confirm:
                self._confirm(pi, method)
        return pi

    def _new_payment_intent(
        self, amount: int, currency: str, metadata: Obj, transfer_group: str | None, description: str | None
    ) -> Obj:
        pi_id = new_id("pi_")
        pi = {
            "id": pi_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_received": 0,
            "client_secret": f"{pi_id}_secret_{new_id('', 24)}",
            "created": int(time.time()),
            "currency": currency,
            "description": description,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": metadata,
            "payment_method": None,
            "status": "requires_payment_method",
            "transfer_group": transfer_group,
        }
        self.payment_intents[pi_id] = pi
        return pi

    def _confirm(self, pi: Obj, method: str) -> None:
        decline = TEST_PAYMENT_METHODS[method]
        charge = self._new_charge(pi, method, succeeded=decline is None)
        if decline is None:
            pi.update(status="succeeded", amount_received=pi["amount"], latest_charge=charge["id"])
            self._emit("charge.succeeded", charge)
            self._emit("payment_intent.succeeded", pi)
            return
        error = {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": decline,
            "message": DECLINE_MESSAGES[decline],
            "charge": charge["id"],
        }
        pi.update(status="requires_payment_method", latest_charge=charge["id"], last_payment_error=error)
        charge.update(failure_code="card_declined", failure_message=error["message"])
        self._emit("charge.failed", charge)
        self._emit("payment_intent.payment_failed", pi)
        raise StripeError(
            402,
            error["message"],
            type="card_error",
            code="card_declined",
            decline_code=decline,
            charge=charge["id"],
            payment_intent=copy.deepcopy(pi),
            replayable=True,
        )

    def _new_charge(self, pi: Obj, method: str, succeeded: bool) -> Obj:
        charge_id, txn = new_id("ch_"), None
        if succeeded:
            fee = stripe_fee(pi["amount"])
            txn = self._new_balance_transaction(pi["amount"], pi["currency"], fee, "charge", charge_id)
        charge = {
            "id": charge_id,
            "object": "charge",
            "amount": pi["amount"],
            "amount_captured": pi["amount"] if succeeded else 0,
            "amount_refunded": 0,
            "balance_transaction": txn["id"] if txn else None,
            "captured": succeeded,
            "created": int(time.time()),
            "currency": pi["currency"],
            "failure_code": None,
            "failure_message": None,
            "livemode": False,
            "metadata": dict(pi["metadata"]),
            "paid": succeeded,
            "payment_intent": pi["id"],
            "payment_method": method,
            "refunded": False,
            "status": "succeeded" if succeeded else "failed",
            "transfer_group": pi["transfer_group"],
        }
        self.charges[charge_id] = charge
        return charge

    def _new_balance_transaction(self, amount: int, currency: str, fee: int, type_: str, source: str) -> Obj:
        now, txn_id = int(time.time()), new_id("txn_")
        txn = {
            "id": txn_id,
            "object": "balance_transaction",
            "amount": amount,
            "available_on": now + 2 * 86400,
            "created": now,
            "currency": currency,
            "fee": fee,
            "fee_details": [
                {
                    "amount": fee,
                    "currency": currency,
                    "type": "stripe_fee",
                    "description": "Stripe processing fees",
                }
            ]
            if fee
            else [],
            "net": amount - fee,
            "reporting_category": type_,
            "source": source,
            "status": "pending",
            "type": type_,
        }
        self.balance_transactions[txn_id] = txn
        return txn

    def _create_account(self, params: Obj) -> Obj:
        _check_params(params, "account")
        requested = params.get("capabilities") or {}
        account_id = new_id("acct_", 16)
        account = {
            "id": account_id,
            "object": "account",
            "capabilities": dict.fromkeys(requested, "inactive"),
            "charges_enabled": False,
            "country": params.get("country") or "US",
            "created": int(time.time()),
            "default_currency": "usd",
            "details_submitted": False,
            "email": params.get("email"),
            "metadata": _metadata(params),
            "payouts_enabled": False,
            "requirements": {
                "currently_due": ["external_account", "tos_acceptance.date"],
                "disabled_reason": None,
            },
            "type": params.get("type") or "custom",
        }
        self.accounts[account_id] = account
        return account

    def _create_account_link(self, params: Obj) -> Obj:
        _check_params(params, "account_link")
        account = _str(params, "account")
        if account not in self.accounts:
            raise StripeError(400, f"No such account: '{account}'", code="resource_missing", param="account")
        for name in ("refresh_url", "return_url"):
            _str(params, name)
        if _str(params, "type") not in ("account_onboarding", "account_update"):
            raise StripeError(400, "Invalid type: must be account_onboarding or account_update", param="type")
        now = int(time.time())
        link = {
            "object": "account_link",
            "created": now,
            "expires_at": now + 300,
            "url": f"https://connect.stripe.com/setup/e/{account}/{new_id('', 12)}",
        }
        self.account_links.append(
            {**link, "account": account, **{k: params[k] for k in ("return_url", "type")}}
        )
        return link

    def _create_transfer(self, params: Obj) -> Obj:
        _check_params(params, "transfer")
        amount = _int(params, "amount") or 0
        currency = _str(params, "currency").lower()
        destination = _str(params, "destination")
        account = self.accounts.get(destination)
        if account is None:
            raise StripeError(
                400, f"No such destination: '{destination}'", code="resource_missing", param="destination"
            )
        if account["capabilities"].get("transfers") != "active":
            raise StripeError(
                400,
                "Your destination account needs to have at least one of the following capabilities "
                "enabled: transfers, crypto_transfers, legacy_payments",
                code="insufficient_capabilities_for_transfer",
                param="destination",
            )
        if source := params.get("source_transaction"):
            charge = self.charges.get(source)
            if charge is None or charge["status"] != "succeeded":
                raise StripeError(
                    400, f"No such charge: '{source}'", code="resource_missing", param="source_transaction"
                )
            already = sum(t["amount"] for t in self.transfers.values() if t["source_transaction"] == source)
            if already + amount > charge["amount"] or currency != charge["currency"]:
                raise StripeError(
                    400, "Insufficient funds from the source transaction.", code="balance_insufficient"
                )
        for failure in self._transfer_failures:
            if failure[1] > 0 and failure[0] in (None, destination):
                failure[1] -= 1
                raise failure[2]
        transfer_id = new_id("tr_")
        transfer = {
            "id": transfer_id,
            "object": "transfer",
            "amount": amount,
            "amount_reversed": 0,
            "created": int(time.time()),
            "currency": currency,
            "description": params.get("description"),
            "destination": destination,
            "destination_payment": new_id("py_"),
            "livemode": False,
            "metadata": _metadata(params),
            "reversed": False,
            "source_transaction": source,
            "transfer_group": params.get("transfer_group"),
        }
        self.transfers[transfer_id] = transfer
        self._emit("transfer.created", transfer)
        return transfer

    def _create_refund(self, params: Obj) -> Obj:
        _check_params(params, "refund")
        if "charge" in params:
            charge = self.charges.get(params["charge"])
            if charge is None or charge["status"] != "succeeded":
                raise StripeError(
                    400, f"No such charge: '{params['charge']}'", code="resource_missing", param="charge"
                )
        elif "payment_intent" in params:
            pi = self.payment_intents.get(params["payment_intent"])
            if pi is None:
                raise StripeError(
                    400,
                    f"No such payment_intent: '{params['payment_intent']}'",
                    code="resource_missing",
                    param="payment_intent",
                )
            if pi["status"] != "succeeded":
                raise StripeError(400, "This PaymentIntent does not have a successful charge to refund.")
            charge = self.charges[pi["latest_charge"]]
        else:
            raise StripeError(400, "One of the following params should be provided for this request: "
                              "payment_intent or charge.")  # fmt: skip
        remaining = charge["amount"] - charge["amount_refunded"]
        if remaining == 0:
            raise StripeError(
                400, f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded"
            )
        amount = _int(params, "amount", required=False)
        amount = remaining if amount is None else amount
        if amount < 1:
            raise StripeError(
                400, "Invalid positive integer", code="parameter_invalid_integer", param="amount"
            )
        if amount > remaining:
            raise StripeError(
                400,
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})",
                code="amount_too_large",
                param="amount",
            )
        refund_id = new_id("re_")
        txn = self._new_balance_transaction(-amount, charge["currency"], 0, "refund", refund_id)
        refund = {
            "id": refund_id,
            "object": "refund",
            "amount": amount,
            "balance_transaction": txn["id"],
            "charge": charge["id"],
            "created": int(time.time()),
            "currency": charge["currency"],
            "metadata": _metadata(params),
            "payment_intent": charge["payment_intent"],
            "reason": params.get("reason"),
            "status": "succeeded",
        }
        self.refunds[refund_id] = refund
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        self._emit("refund.created", refund)
        self._emit("charge.refunded", charge)
        return refund

    # ---- what customers and Stripe do -----------------------------------------------------------

    def event(self, type: str, obj: Obj, previous_attributes: Obj | None = None) -> Obj:
        """A webhook event as Stripe would send it (also appended to ``fake.events``)."""
        data: Obj = {"object": copy.deepcopy(obj)}
        if previous_attributes is not None:
            data["previous_attributes"] = previous_attributes
        event = {
            "id": new_id("evt_"),
            "object": "event",
            "api_version": stripe.api_version,
            "created": int(time.time()),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": type,
        }
        with self._lock:
            self.events.append(event)
        return event

    _emit = event

    def events_of_type(self, type: str) -> list[Obj]:
        return [e for e in self.events if e["type"] == type]

    def complete_checkout(self, session_id: str, email: str = "buyer@example.com") -> Obj:
        """The customer pays: session complete + paid, payment intent, charge and fee created."""
        with self._lock:
            session = self.checkout_sessions[session_id]
            if session["status"] != "open":
                raise ValueError(f"checkout session {session_id} is {session['status']}")
            data = self._session_pi_data[session_id]
            pi = self._new_payment_intent(
                session["amount_total"], session["currency"], data["metadata"], data["transfer_group"],
                data["description"],
            )  # fmt: skip
            self._confirm(pi, "pm_card_visa")
            session.update(
                status="complete",
                payment_status="paid",
                payment_intent=pi["id"],
                customer_details={"email": session["customer_email"] or email},
            )
            return self.event("checkout.session.completed", session)

    def expire_checkout(self, session_id: str) -> Obj:
        with self._lock:
            session = self.checkout_sessions[session_id]
            session.update(status="expired", url=None)
            return self.event("checkout.session.expired", session)

    def complete_onboarding(self, account_id: str) -> Obj:
        """The seller finishes Express onboarding; returns the ``account.updated`` event."""
        with self._lock:
            account = self.accounts[account_id]
            previous = {k: account[k] for k in ("charges_enabled", "details_submitted", "payouts_enabled")}
            previous["capabilities"] = dict(account["capabilities"])
            account.update(charges_enabled=True, details_submitted=True, payouts_enabled=True)
            account["capabilities"] = dict.fromkeys(list(account["capabilities"]) or ["transfers"], "active")
            account["requirements"] = {"currently_due": [], "disabled_reason": None}
            return self.event("account.updated", account, previous_attributes=previous)

    def fail_transfers_to(
        self,
        account_id: str | None,
        times: int = 1,
        *,
        status: int = 400,
        code: str = "balance_insufficient",
        message: str = BALANCE_INSUFFICIENT,
    ) -> None:
        """The next ``times`` transfers to ``account_id`` (None: to anyone) fail with this error.

        Like Stripe, the failure is stored under the request's Idempotency-Key: retrying with the same
        key replays it, a new key gets a fresh attempt."""
        error = StripeError(status, message, code=code, replayable=True)
        with self._lock:
            self._transfer_failures.append([account_id, times, error])

    def webhook_request(
        self, event: Obj, secret: str | None = None, timestamp: int | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """Body and headers of the POST Stripe would make to a webhook endpoint for ``event``."""
        body = json.dumps(event).encode()
        signature = sign_webhook(body, secret or self.webhook_secret, timestamp)
        return body, {"Content-Type": "application/json; charset=utf-8", "Stripe-Signature": signature}
