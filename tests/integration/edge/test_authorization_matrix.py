"""The gatekeeper's local API by every kind of credential (issue 13 item 3).

The local API takes no bearer token: the holder's credential (signed by the plant's edge signer)
and the holder's signature over a fresh nonce are the proof, checked when the answer comes, and the
gatekeeper decides allow or deny by the bundle in force. So each row is a credential as the holder
presents it, and each cell is the status (and for the answer, the decision). Every route of the app
is discovered from it: a new route without an entry fails. The reader's TLS client certificate
(``--tls-client-ca``) is the TLS layer's: test_sync.py shows no certificate, or a foreign one, ends
the handshake.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from otward.core import b64url
from otward.core.authz import Scope
from otward.core.edge.formats import answer_message
from otward.core.keys import sign_data
from otward.edge.server import create_gatekeeper_app

from .conftest import hours

pytestmark = pytest.mark.integration

ASSET = "reactor-1"


@dataclass(frozen=True)
class Row:
    """A credential as a holder presents it: the credential text, the key that signs the nonce and
    any Authorization header; ``challenge`` is the status of step 1, ``decision`` that of step 2."""

    credential: str
    key: ec.EllipticCurvePrivateKey
    headers: dict[str, str]
    challenge: int
    decision: str


# Routes of the local API and whether a row's outcome depends on its credential (the exchange) or
# not (status, health and the API's description answer every reader that reaches the port).
ROUTES = {
    ("POST", "/v1/challenge"): "exchange",
    ("POST", "/v1/answer"): "exchange",
    ("GET", "/v1/status"): "open",
    ("GET", "/healthz"): "open",
    ("GET", "/openapi.json"): "open",
}


def discovered(app) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    found = set()
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        for method in getattr(route, "methods", None) or {"GET"}:
            if method != "HEAD":
                found.add((method, route.path))
    return found


@pytest.fixture
def rows(plant, holder_key, clock) -> dict[str, Row]:  # type: ignore[no-untyped-def]
    def credential(person: str = "carla") -> str:
        return plant.edge.issue_credential(person, holder_key.public_key(), ttl=hours(12)).token

    valid = credential()
    clock.advance(hours(-3))
    expired = plant.edge.issue_credential("carla", holder_key.public_key(), ttl=hours(1)).token
    clock.advance(hours(3))
    revoked = plant.edge.issue_credential("carla", holder_key.public_key(), ttl=hours(12))
    plant.edge.revoke_credential(revoked.record.credential_id)
    header, payload, signature = valid.split(".")
    forged = f"{header}.{payload}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}"
    stranger = ec.generate_private_key(ec.SECP256R1())
    admin = {"Authorization": f"Bearer {plant.tokens.create('edge-matrix', scope=Scope.ADMIN)[1]}"}
    edge = {"Authorization": f"Bearer {plant.edge.create_token(ASSET)[1]}"}
    return {
        "valid": Row(valid, holder_key, {}, 201, "allow"),
        "none": Row("", holder_key, {}, 400, "deny"),
        "malformed": Row("junk", holder_key, {}, 400, "deny"),
        "no-grant-here": Row(credential("bernd"), holder_key, {}, 201, "deny"),
        "expired": Row(expired, holder_key, {}, 201, "deny"),
        "revoked": Row(revoked.token, holder_key, {}, 201, "deny"),
        "forged-signature": Row(forged, holder_key, {}, 201, "deny"),
        "another-holders-key": Row(valid, stranger, {}, 201, "deny"),
        "admin-token-only": Row("", holder_key, admin, 400, "deny"),
        "edge-token-only": Row("", holder_key, edge, 400, "deny"),
    }


def test_every_route_of_the_gatekeeper_has_an_entry(plant, make_gatekeeper):
    routes = discovered(create_gatekeeper_app(make_gatekeeper()))
    assert routes == ROUTES.keys()


def test_every_credential_on_every_route_of_the_gatekeeper(plant, make_gatekeeper, rows):
    gatekeeper = make_gatekeeper()
    # the bundle issued after the revocation: it names the revoked credential
    assert gatekeeper.install_bundle(plant.edge.issue_bundle(ASSET).token).installed
    app = create_gatekeeper_app(gatekeeper)
    wrong: list[str] = []

    def check(name: str, route: tuple[str, str], got: object, want: object) -> None:
        if got != want:
            wrong.append(f"{route[0]} {route[1]} [{name}]: {got!r}, expected {want!r}")

    for number, (name, row) in enumerate(rows.items()):
        with TestClient(app, client=(f"192.0.2.{number + 1}", 40000)) as reader:
            for route, kind in ROUTES.items():
                if kind == "open":
                    check(
                        name, route, reader.request(route[0], route[1], headers=row.headers).status_code, 200
                    )
            body = {"credential": row.credential, "function": "start"}
            challenge = reader.post("/v1/challenge", json=body, headers=row.headers)
            check(name, ("POST", "/v1/challenge"), challenge.status_code, row.challenge)
            nonce = (
                b64url.decode(challenge.json()["nonce"], "nonce")
                if challenge.status_code == 201
                else bytes(32)
            )
            answer = reader.post(
                "/v1/answer",
                json={
                    "nonce": b64url.encode(nonce),
                    "signature": b64url.encode(sign_data(row.key, answer_message(ASSET, "start", nonce))),
                },
                headers=row.headers,
            )
            check(
                name,
                ("POST", "/v1/answer"),
                (answer.status_code, answer.json().get("decision")),
                (200, row.decision),
            )
    assert not wrong, "\n".join(wrong)
