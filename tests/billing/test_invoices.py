"""Reading invoices: who sees which, filters and pages, and the printable HTML page."""

from uuid import uuid4

import pytest
from fastapi import FastAPI

from app.billing.html import format_money, format_rate
from app.billing.service import billing_service
from app.core.db import commit, sessionmaker
from tests.billing.steps import change_plan, charge
from tests.factories import create_user, events_of, signed_in
from tests.matrix import route_key

# Who gets what from each billing route (the app-wide matrix leaves /api/billing to this module;
# the Stripe webhook under it belongs to the payments domain and its tests). ``{invoice}`` is an
# invoice of the owner.
PAYMENTS_ROUTES = ("/api/billing/webhooks/",)
# fmt: off
MATRIX: dict[str, tuple[int, int, int, int]] = {
    #                                          anonymous  owner  other_user  super_admin
    "GET /api/billing/invoices":               (401,      200,   200,        200),
    "GET /api/billing/invoices/{invoice}":     (401,      200,   404,        200),
    "GET /api/billing/invoices/{invoice}/html": (401,     200,   404,        200),
    "POST /api/billing/charge":                (401,      403,   403,        201),
}
# fmt: on


def test_billing_matrix_covers_every_billing_route(app: FastAPI) -> None:
    routes = {
        route_key(method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
        if path.startswith("/api/billing") and not path.startswith(PAYMENTS_ROUTES)
    }
    assert routes == {route_key(*endpoint.split()) for endpoint in MATRIX}


async def test_each_persona_gets_what_the_billing_matrix_promises(client):
    admin = await signed_in(client, "super_admin")
    owner = await signed_in(client, "end_user")
    other = await signed_in(client, "builder")
    invoice = await charge(client, admin, owner.id)
    actors = {"anonymous": None, "owner": owner, "other_user": other, "super_admin": admin}

    for endpoint, statuses in MATRIX.items():
        method, path = endpoint.split()
        url = path.replace("{invoice}", invoice["id"])
        for (name, actor), expected in zip(actors.items(), statuses, strict=True):
            headers = dict(actor.headers) if actor else {}
            body = None
            if method == "POST":
                headers["Idempotency-Key"] = str(uuid4())
                body = {"userId": str(owner.id), "currency": "usd",
                        "items": [{"description": "Extra", "unitAmountMinor": 100}]}  # fmt: skip
            response = await client.request(method, url, json=body, headers=headers)
            assert response.status_code == expected, f"{endpoint} as {name}: {response.text}"


async def test_another_users_invoice_looks_exactly_like_a_missing_one(client):
    admin = await signed_in(client, "super_admin")
    owner = await signed_in(client, "end_user")
    other = await signed_in(client, "end_user")
    invoice = await charge(client, admin, owner.id)

    hidden = await client.get(f"/api/billing/invoices/{invoice['id']}", headers=other.headers)
    missing = await client.get(f"/api/billing/invoices/{uuid4()}", headers=other.headers)

    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json()
    assert hidden.json()["error"]["code"] == "invoice_not_found"


async def test_users_list_their_own_invoices_and_admins_everyones_with_filters(client):
    admin = await signed_in(client, "super_admin")
    alice = await signed_in(client, "end_user")
    bob = await signed_in(client, "builder")
    first = await charge(
        client, admin, alice.id, items=[{"description": "Workshop", "unitAmountMinor": 5000}]
    )
    await charge(
        client, admin, alice.id, items=[{"description": "Audit", "unitAmountMinor": 700, "quantity": 3}]
    )
    await change_plan(client, bob, bob.id, "pro")

    mine = (await client.get("/api/billing/invoices", headers=alice.headers)).json()
    assert mine["pagination"] == {"total": 2, "page": 1, "limit": 20}
    assert {i["userId"] for i in mine["items"]} == {str(alice.id)}
    newest = mine["items"][0]
    assert newest["items"] == [
        {"position": 1, "description": "Audit", "quantity": 3, "unitAmountMinor": 700, "amountMinor": 2100}
    ]
    assert (newest["kind"], newest["status"], newest["currency"]) == ("charge", "paid", "usd")
    assert newest["customerEmail"] == alice.email
    assert newest["totalMinor"] == newest["amountMinor"] == 2100
    assert newest["dueDate"] == newest["dueAt"]
    assert newest["issuedAt"]
    assert newest["paidAt"]
    assert mine["items"][1]["id"] == first["id"]

    bobs = (await client.get("/api/billing/invoices", headers=bob.headers)).json()
    assert [(i["kind"], i["reference"]) for i in bobs["items"]] == [("plan", "pro")]

    everyone = (await client.get("/api/billing/invoices", headers=admin.headers)).json()
    assert everyone["pagination"]["total"] == 3
    only_alice = await client.get(f"/api/billing/invoices?userId={alice.id}", headers=admin.headers)
    assert only_alice.json()["pagination"]["total"] == 2
    plans = await client.get("/api/billing/invoices?kind=plan", headers=admin.headers)
    assert [i["userId"] for i in plans.json()["items"]] == [str(bob.id)]
    assert (await client.get("/api/billing/invoices?status=open", headers=admin.headers)).json()[
        "items"
    ] == []
    paid = await client.get("/api/billing/invoices?status=paid&kind=charge", headers=admin.headers)
    assert paid.json()["pagination"]["total"] == 2

    page = await client.get("/api/billing/invoices?sort=totalMinor&limit=1&page=2", headers=admin.headers)
    assert page.json()["pagination"] == {"total": 3, "page": 2, "limit": 1}
    assert page.json()["items"][0]["totalMinor"] == 2900
    by_number = await client.get("/api/billing/invoices?sort=number", headers=admin.headers)
    numbers = [i["number"] for i in by_number.json()["items"]]
    assert numbers == sorted(numbers)


async def test_users_cannot_list_someone_elses_invoices_through_the_filter(client):
    admin = await signed_in(client, "super_admin")
    alice = await signed_in(client, "end_user")
    bob = await signed_in(client, "end_user")
    await charge(client, admin, alice.id)

    snooping = await client.get(f"/api/billing/invoices?userId={alice.id}", headers=bob.headers)
    own = await client.get(f"/api/billing/invoices?userId={bob.id}", headers=bob.headers)

    assert snooping.status_code == 403
    assert own.status_code == 200
    assert own.json()["items"] == []


@pytest.mark.parametrize(
    "query", ["status=late", "kind=refund", "sort=customerEmail", "userId=nope", "limit=101", "page=0"]
)
async def test_bad_list_parameters_are_422(client, query):
    user = await signed_in(client, "end_user")
    response = await client.get(f"/api/billing/invoices?{query}", headers=user.headers)
    assert response.status_code == 422
    assert "error" in response.json()


async def test_invoice_detail_shows_the_payment(client):
    admin = await signed_in(client, "super_admin")
    customer = await signed_in(client, "end_user")
    made = await charge(client, admin, customer.id)

    detail = (await client.get(f"/api/billing/invoices/{made['id']}", headers=customer.headers)).json()

    assert detail == made
    assert detail["payment"]["status"] == "succeeded"
    assert detail["payment"]["provider"] == "local"
    assert detail["payment"]["checkoutUrl"] is None


# The HTML page


def test_money_is_formatted_from_minor_units_per_currency():
    assert format_money(1900, "usd") == "$19.00"
    assert format_money(550, "eur") == "€5.50"
    assert format_money(500, "jpy") == "¥500"
    assert format_money(123456789, "usd") == "$1,234,567.89"
    assert format_money(5, "gbp") == "£0.05"
    assert format_money(1250, "chf") == "CHF 12.50"
    assert format_money(1234, "kwd") == "KWD 1.234"
    assert format_money(1500000, "krw") == "₩1,500,000"
    assert format_money(-250, "usd") == "-$2.50"
    assert [format_rate(b) for b in (0, 2000, 825, 1250, 5)] == ["0%", "20%", "8.25%", "12.5%", "0.05%"]


@pytest.mark.parametrize("settings_changes", [{"invoice_tax_rate_bps": 2000}])
async def test_invoice_html_is_a_complete_printable_invoice(client, settings):
    admin = await signed_in(client, "super_admin")
    customer = await signed_in(client, "end_user")
    made = await charge(
        client, admin, customer.id, memo="Thank you for your business",
        items=[{"description": "Onboarding workshop", "unitAmountMinor": 15000, "quantity": 2},
               {"description": "Prompt review", "unitAmountMinor": 2550}],
    )  # fmt: skip

    response = await client.get(f"/api/billing/invoices/{made['id']}/html", headers=customer.headers)

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    page = response.text
    assert page.startswith("<!DOCTYPE html>")
    assert "Bazaar Marketplace Ltd." in page
    assert "1 Market Street, London" in page
    assert settings.invoice_issuer.startswith("Bazaar Marketplace Ltd.")
    assert made["number"] in page
    assert "end_user user" in page
    assert customer.email in page
    assert "Onboarding workshop" in page
    assert "Prompt review" in page
    # 2 x $150.00 + $25.50 = $325.50; tax 20% = $65.10; total $390.60
    for text in ("$150.00", "$300.00", "$25.50", "$325.50", "Tax (20%)", "$65.10", "$390.60"):
        assert text in page, text
    assert 'class="stamp paid">PAID<' in page
    for label in ("<dt>Issued</dt>", "<dt>Due</dt>", "<dt>Paid</dt>"):
        assert label in page, label
    assert "Thank you for your business" in page
    assert "<style>" in page
    assert "@media print" in page
    assert "<script" not in page
    assert "<link" not in page
    assert "src=" not in page


async def test_invoice_html_escapes_everything_people_typed(client):
    admin = await signed_in(client, "super_admin")
    customer = await signed_in(client, "end_user")
    evil = "<script>alert('name')</script>"
    renamed = await client.put(f"/api/users/{customer.id}", json={"name": evil}, headers=customer.headers)
    assert renamed.status_code == 200
    made = await charge(
        client, admin, customer.id, memo="</div><script>alert(1)</script>",
        items=[{"description": '<img src=x onerror="alert(2)"> & more', "unitAmountMinor": 100}],
    )  # fmt: skip

    page = (await client.get(f"/api/billing/invoices/{made['id']}/html", headers=customer.headers)).text

    assert "<script" not in page.lower()
    assert "<img" not in page
    assert "&lt;script&gt;alert(&#x27;name&#x27;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt; &amp; more" in page
    assert "&lt;/div&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page


async def test_invoice_html_in_a_zero_decimal_currency_and_void(client):
    admin = await signed_in(client, "super_admin")
    customer = await create_user("end_user")
    made = await charge(
        client, admin, customer.id, currency="jpy", items=[{"description": "Setup", "unitAmountMinor": 500}]
    )
    euro = await charge(
        client, admin, customer.id, currency="eur", items=[{"description": "X", "unitAmountMinor": 550}]
    )

    yen_page = (await client.get(f"/api/billing/invoices/{made['id']}/html", headers=admin.headers)).text
    euro_page = (await client.get(f"/api/billing/invoices/{euro['id']}/html", headers=admin.headers)).text

    assert "¥500" in yen_page
    assert "¥5.00" not in yen_page
    assert "Total JPY" in yen_page
    assert "€5.50" in euro_page


async def test_a_voided_invoice_is_stamped_void(client, settings):
    admin = await signed_in(client, "super_admin")
    customer = await signed_in(client, "end_user")
    async with sessionmaker()() as db:
        from app.billing.service import LineItem

        invoice = await billing_service.issue(
            db, settings, user_id=customer.id, kind="charge", reference=None, currency="usd",
            lines=[LineItem("Cancelled work", 4200)], actor_id=admin.id,
        )  # fmt: skip
        await billing_service.void(db, invoice.id, actor_id=admin.id, reason="Sent in error")
        await commit(db)

    page = (await client.get(f"/api/billing/invoices/{invoice.id}/html", headers=customer.headers)).text
    detail = (await client.get(f"/api/billing/invoices/{invoice.id}", headers=customer.headers)).json()

    assert 'class="stamp void">VOID<' in page
    assert "Voided" in page
    assert "$42.00" in page
    assert detail["status"] == "void"
    assert detail["voidedAt"]
    assert detail["payment"] is None
    voided = await events_of("invoice.voided")
    assert voided[0]["payload"]["reason"] == "Sent in error"
    assert voided[0]["payload"]["status"] == "void"


async def test_a_refund_issues_a_credit_note_cancelling_the_purchase_invoice(client) -> None:
    from tests.marketplace.steps import buy, listed_project, refund

    builder = await signed_in(client, "builder")
    buyer = await signed_in(client, "end_user")
    admin = await signed_in(client, "super_admin")
    project = await listed_project(client, builder)
    first = await buy(client, buyer, project)
    await refund(client, admin, first["id"])
    second = await buy(client, buyer, project)
    await refund(client, admin, second["id"])

    items = (await client.get("/api/billing/invoices?sort=createdAt", headers=buyer.headers)).json()["items"]
    invoices = [i for i in items if i["kind"] == "purchase"]
    notes = [i for i in items if i["kind"] == "credit_note"]
    assert [n["number"][:3] for n in notes] == ["CN-", "CN-"]
    assert [int(n["number"].rsplit("-", 1)[1]) for n in notes] == [1, 2]  # its own gapless series
    for invoice, note in zip(invoices, notes, strict=True):
        assert invoice["status"] == "paid"  # the original stays as it was
        assert note["reference"] == invoice["id"]
        assert note["totalMinor"] == -invoice["totalMinor"]
        assert note["subtotalMinor"] + note["taxMinor"] == note["totalMinor"]
        assert [line["amountMinor"] for line in note["items"]] == [
            -line["amountMinor"] for line in invoice["items"]
        ]
    document = await client.get(f"/api/billing/invoices/{notes[0]['id']}/html", headers=buyer.headers)
    assert "Credit note" in document.text
    assert notes[0]["number"] in document.text
    credited = [e["payload"]["creditedInvoiceId"] for e in await events_of("invoice.credit_note_issued")]
    assert credited == [invoices[0]["id"], invoices[1]["id"]]
