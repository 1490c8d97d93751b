"""The issuance transparency log, checked against an independent recomputation of the tree."""

from __future__ import annotations

import base64

import pytest
from cryptography import x509
from fastapi.testclient import TestClient
from sqlalchemy import select

from otward.adapters.db.schema import certificates, log_entries
from otward.core.merkle import verify_consistency, verify_inclusion
from otward.core.transparency import TreeHead, verify_log_growth, verify_tree_head
from otward.http.app import create_app
from tests.conftest import build_csr, make_key
from tests.unit.core.test_merkle import reference_mth

pytestmark = pytest.mark.integration


def b64(text: str) -> bytes:
    return base64.b64decode(text)


def logged_certificates(pki) -> list[bytes]:
    """Certificate DER in log order, straight from the tables."""
    with pki.stores.database.engine.connect() as conn:
        rows = conn.execute(
            select(certificates.c.der)
            .join(log_entries, log_entries.c.serial == certificates.c.serial)
            .order_by(log_entries.c.leaf_index)
        ).all()
    return [bytes(der) for (der,) in rows]


def head_from_json(body: dict) -> TreeHead:
    from datetime import UTC, datetime

    return TreeHead(
        tree_size=body["tree_size"],
        timestamp=datetime.fromtimestamp(body["timestamp_ms"] / 1000, UTC),
        root_hash=b64(body["root_hash"]),
        signature=b64(body["signature"]),
        signer_serial=int(body["signer_serial"], 16),
    )


@pytest.fixture
def client(pki):
    with TestClient(create_app(pki), base_url="https://testserver") as test_client:
        yield test_client


def test_every_issued_certificate_is_logged_and_provable(pki, client):
    issued = [pki.issuance.issue(build_csr(make_key(), cn=f"op-{i}"), profile="tls-client") for i in range(5)]
    with pki.stores.database.engine.connect() as conn:
        assert (
            conn.execute(select(certificates.c.serial)).all().__len__() == pki.stores.transparency.log_size()
        )
    ders = logged_certificates(pki)
    sth = client.get("/api/v1/transparency/sth").json()
    assert sth["tree_size"] == len(ders)
    assert b64(sth["root_hash"]) == reference_mth(ders)
    signer_pem = client.get("/api/v1/transparency/signer").text
    signer, issuing, root = x509.load_pem_x509_certificates(signer_pem.encode())
    signer.verify_directly_issued_by(issuing)
    issuing.verify_directly_issued_by(root)
    assert root == pki.authorities.certificate_chain("root")[0]
    assert verify_tree_head(head_from_json(sth), signer.public_key())
    for item in issued:
        proof = client.get(f"/api/v1/transparency/proof/{item.serial}").json()
        der = item.certificate.public_bytes(
            __import__("cryptography").hazmat.primitives.serialization.Encoding.DER
        )
        assert ders[proof["leaf_index"]] == der
        leaf = b64(proof["leaf_hash"])
        assert verify_inclusion(
            leaf,
            proof["leaf_index"],
            proof["tree_size"],
            [b64(p) for p in proof["audit_path"]],
            reference_mth(ders),
        )


def test_a_relying_party_can_check_that_the_log_only_grew(pki, client):
    old = client.get("/api/v1/transparency/sth").json()
    for i in range(3):
        pki.issuance.issue(build_csr(make_key(), cn=f"later-{i}"), profile="tls-client")
    new = client.get("/api/v1/transparency/sth").json()
    assert new["tree_size"] == old["tree_size"] + 3
    proof = client.get(
        "/api/v1/transparency/consistency", params={"first": old["tree_size"], "second": new["tree_size"]}
    ).json()
    nodes = [b64(n) for n in proof["consistency"]]
    _, certificate = pki.signers.get()
    assert verify_log_growth(head_from_json(old), head_from_json(new), nodes, certificate.public_key())
    assert verify_consistency(
        old["tree_size"], new["tree_size"], b64(old["root_hash"]), b64(new["root_hash"]), nodes
    )
    # a forged new head (different root) fails, as does a forged signature
    forged = head_from_json(new)
    forged_root = TreeHead(
        forged.tree_size, forged.timestamp, bytes(32), forged.signature, forged.signer_serial
    )
    assert not verify_log_growth(head_from_json(old), forged_root, nodes, certificate.public_key())
    earlier = client.get(f"/api/v1/transparency/sth/{old['tree_size']}").json()
    assert earlier == old


def test_proof_errors(pki, client):
    assert client.get("/api/v1/transparency/proof/abcdef0123456789").status_code == 404
    assert client.get("/api/v1/transparency/proof/zz").status_code == 400
    size = client.get("/api/v1/transparency/sth").json()["tree_size"]
    assert (
        client.get("/api/v1/transparency/consistency", params={"first": 2, "second": size + 5}).status_code
        == 400
    )
    serial = pki.issuance.issue(build_csr(make_key(), cn="late"), profile="tls-client").serial
    response = client.get(f"/api/v1/transparency/proof/{serial}", params={"tree_size": size})
    assert response.status_code == 400
    assert response.json()["rule"] == "tree-size"
