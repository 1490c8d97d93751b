"""The gatekeeper's local HTTP API: the exchange over HTTP, and what a flooding source gets."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from otward.core import b64url
from otward.core.edge.formats import answer_message
from otward.core.keys import sign_data
from otward.edge.server import MAX_BODY, MAX_PROOF_FAILURES, PROOF_FAILURE_WINDOW, create_gatekeeper_app

from .conftest import hours

pytestmark = pytest.mark.integration

READER = ("192.0.2.10", 40000)
FLOODER = ("192.0.2.66", 40000)


class Seconds:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _exchange(client: TestClient, credential: str, key, function: str = "start") -> dict:
    challenge = client.post("/v1/challenge", json={"credential": credential, "function": function})
    assert challenge.status_code == 201, challenge.text
    issued = challenge.json()
    nonce = b64url.decode(issued["nonce"], "nonce")
    signature = sign_data(key, answer_message(issued["asset"], issued["function"], nonce))
    answer = {"nonce": issued["nonce"], "signature": b64url.encode(signature)}
    return client.post("/v1/answer", json=answer).json()


def test_a_source_whose_answers_prove_nothing_is_held_off_and_others_are_not(
    plant, holder_key, make_gatekeeper
):
    gatekeeper = make_gatekeeper()
    gatekeeper.install_bundle(plant.edge.issue_bundle("reactor-1").token)
    carla = plant.edge.issue_credential("carla", holder_key.public_key(), ttl=hours(12)).token
    emil = plant.edge.issue_credential("emil", holder_key.public_key(), ttl=hours(12)).token
    seconds = Seconds()
    app = create_gatekeeper_app(gatekeeper, clock=seconds)
    with TestClient(app, client=READER) as reader, TestClient(app, client=FLOODER) as flooder:
        # denied by policy (emil works nights) is an honest answer: it never holds a reader off
        for _ in range(MAX_PROOF_FAILURES + 5):
            assert _exchange(reader, emil, holder_key)["decision"] == "deny"
        assert _exchange(reader, carla, holder_key)["decision"] == "allow"

        bogus = {"nonce": b64url.encode(bytes(32)), "signature": b64url.encode(b"x" * 64)}
        for _ in range(MAX_PROOF_FAILURES):
            denied = flooder.post("/v1/answer", json=bogus)
            assert denied.status_code == 200
            assert "unknown, expired or already used nonce" in denied.json()["reason"]
        held_off = flooder.post("/v1/answer", json=bogus)
        assert held_off.status_code == 429
        assert int(held_off.headers["Retry-After"]) >= 1
        challenge = flooder.post("/v1/challenge", json={"credential": carla, "function": "start"})
        assert challenge.status_code == 429
        recorded = sum(1 for _ in gatekeeper.trail.records())

        assert _exchange(reader, carla, holder_key)["decision"] == "allow"  # another source: untouched
        assert (
            sum(1 for _ in gatekeeper.trail.records()) == recorded + 1
        )  # the refused requests wrote nothing

        seconds.now += PROOF_FAILURE_WINDOW + 1
        assert _exchange(flooder, carla, holder_key)["decision"] == "allow"


def test_a_challenge_flood_does_not_push_out_another_readers_nonce(plant, holder_key, make_gatekeeper):
    gatekeeper = make_gatekeeper()
    gatekeeper.install_bundle(plant.edge.issue_bundle("reactor-1").token)
    carla = plant.edge.issue_credential("carla", holder_key.public_key(), ttl=hours(12)).token
    app = create_gatekeeper_app(gatekeeper)
    with TestClient(app, client=READER) as reader, TestClient(app, client=FLOODER) as flooder:
        issued = reader.post("/v1/challenge", json={"credential": carla, "function": "start"}).json()
        for _ in range(300):  # far more than one source may hold pending
            flood = flooder.post("/v1/challenge", json={"credential": carla, "function": "start"})
            assert flood.status_code == 201
        nonce = b64url.decode(issued["nonce"], "nonce")
        signature = sign_data(holder_key, answer_message(issued["asset"], issued["function"], nonce))
        answer = {"nonce": issued["nonce"], "signature": b64url.encode(signature)}
        assert reader.post("/v1/answer", json=answer).json()["decision"] == "allow"
        assert gatekeeper.status()["pending_nonces"] == 64  # the flooder's newest; the reader's was taken


@pytest.mark.parametrize(
    "credential",
    [
        "",
        "junk",
        "a.b.c",
        "e30.e30.sig",  # {} header
        b64url.encode(b'{"typ":"otward-credential+jwt","alg":"none","x5t#S256":"' + b"A" * 43 + b'"}')
        + ".e30.sig",
        b64url.encode(b'{"typ":"otward-bundle+jwt","alg":"ES256","x5c":[]}') + ".e30.sig",
        b64url.encode(b'{"typ":"otward-credential+jwt","alg":"ES256","x5t#S256":"' + b"A" * 43 + b'"}')
        + ".bm90IGpzb24.sig",  # payload "not json"
    ],
    ids=["empty", "junk", "not-base64-json", "no-header", "alg-none", "bundle-header", "payload-not-json"],
)
def test_a_malformed_credential_is_refused_without_spending_a_nonce(plant, make_gatekeeper, credential):
    gatekeeper = make_gatekeeper()
    gatekeeper.install_bundle(plant.edge.issue_bundle("reactor-1").token)
    app = create_gatekeeper_app(gatekeeper)
    with TestClient(app, client=FLOODER) as flooder:
        for _ in range(3):
            refused = flooder.post("/v1/challenge", json={"credential": credential, "function": "start"})
            assert refused.status_code == 400, refused.text
            assert refused.json()["rule"] == "credential-format"
    assert gatekeeper.status()["pending_nonces"] == 0


def test_an_oversized_request_is_refused_before_it_is_read(plant, make_gatekeeper):
    app = create_gatekeeper_app(make_gatekeeper())
    with TestClient(app, client=READER) as reader:
        huge = {"credential": "x" * (MAX_BODY + 1), "function": "start"}
        refused = reader.post("/v1/challenge", json=huge)
    assert refused.status_code == 413
    assert refused.json()["rule"] == "body-size"
