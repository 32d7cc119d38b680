"""Who may call what on the payments routes, as one table (the foundation's matrix leaves
``/api/payments`` to this one). The Stripe webhook is authenticated by its signature alone: an
access token does not open it.

Personas: ``anonymous``, ``end_user``, ``builder`` (no payout account yet), ``owner`` (a builder
with one), ``super_admin``.
"""

import pytest
from fastapi import FastAPI

from tests.factories import Account, signed_in
from tests.matrix import assert_error_shape, route_key
from tests.payments.steps import WEBHOOK

PERSONAS = ("anonymous", "end_user", "builder", "owner", "super_admin")

# fmt: off
MATRIX: dict[str, tuple[int, int, int, int, int]] = {
    #                                      anonymous  end_user  builder  owner  super_admin
    "GET /api/payments/payout-account":   (401,       404,      404,     200,   404),
    "POST /api/payments/payout-account":  (401,       403,      201,     200,   403),
    f"POST {WEBHOOK}":                    (400,       400,      400,     400,   400),
}
# fmt: on
CODES = {
    "GET /api/payments/payout-account": "payout_account_not_found",
    "POST /api/payments/payout-account": "permission_denied",
    f"POST {WEBHOOK}": "invalid_signature",
}
OWN_ROUTES = ("/api/payments", WEBHOOK)


def test_matrix_covers_every_payments_route(app: FastAPI) -> None:
    routes = {
        route_key(method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
        if path.startswith(OWN_ROUTES)
    }
    assert routes == {route_key(*endpoint.split()) for endpoint in MATRIX}


@pytest.mark.parametrize("persona", PERSONAS)
async def test_payments_routes_answer_each_persona_as_the_matrix_says(client, fake, persona):
    actor: Account | None = None
    if persona != "anonymous":
        actor = await signed_in(client, "builder" if persona == "owner" else persona)
    if persona == "owner":
        assert actor is not None
        response = await client.post("/api/payments/payout-account", headers=actor.headers)
        assert response.status_code == 201, response.text
    headers = actor.headers if actor else {}
    for endpoint, statuses in MATRIX.items():
        method, path = endpoint.split()
        response = await client.request(method, path, headers=headers)
        expected = statuses[PERSONAS.index(persona)]
        assert response.status_code == expected, (endpoint, persona, response.text)
        if expected >= 400:
            code = assert_error_shape(response)["code"]
            assert code == ("not_authenticated" if expected == 401 else CODES[endpoint]), (endpoint, persona)
