"""The HTTPS API in-process (FastAPI TestClient) on SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509 import ocsp
from fastapi.testclient import TestClient

from otward.core.keys import KeyType
from otward.http.app import create_app
from otward.services.pki import Pki
from tests.conftest import build_csr, est_refusal, make_key, ocsp_request_der
from tests.hostile import (
    BMP_STRING,
    OCTET_STRING,
    OID_CN,
    UNIVERSAL_STRING,
    UTF8_STRING,
    attribute,
    hostile_csr,
    tlv,
)

pytestmark = pytest.mark.integration

VECTORS = __import__("pathlib").Path(__file__).parents[1] / "vectors"


@pytest.fixture
def token(installation) -> str:
    return (installation / "admin.token").read_text().strip()


@pytest.fixture
def client(pki: Pki, token: str) -> Iterator[TestClient]:
    pki.owners.create("acme")  # device certificates need an existing owner
    with TestClient(create_app(pki), base_url="https://testserver") as test_client:
        test_client.headers["Authorization"] = f"Bearer {token}"
        yield test_client


def count(client: TestClient) -> int:
    return client.get("/api/v1/certificates", params={"limit": 1}).json()["total"]


def issue(client: TestClient, csr: bytes, profile: str = "tls-client", **extra) -> dict:
    response = client.post("/api/v1/certificates", json={"csr": csr.decode(), "profile": profile, **extra})
    assert response.status_code == 201, response.text
    return response.json()


def test_issue_returns_certificate_and_chain_and_stores_it(client, pki):
    body = issue(client, build_csr(make_key(), cn="operator-1"))
    cert = x509.load_pem_x509_certificate(body["certificate"].encode())
    assert body["serial"] == format(cert.serial_number, "x")
    assert 64 <= cert.serial_number.bit_length() <= 159
    chain = [x509.load_pem_x509_certificate(p.encode()) for p in body["chain"]]
    assert [c.subject.rfc4514_string() for c in chain] == [
        "CN=ACME Chemicals issuing CA,O=ACME Chemicals",
        "CN=ACME Chemicals Root CA,O=ACME Chemicals",
    ]
    cert.verify_directly_issued_by(chain[0])
    shown = client.get(f"/api/v1/certificates/{body['serial']}").json()
    assert shown["status"] == "valid"
    assert shown["profile"] == "tls-client"
    assert shown["certificate"] == body["certificate"]
    # durable: visible to a separate connection of the store
    assert pki.stores.certificates.get_certificate(cert.serial_number) is not None


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer otw_0123456789abcdef_" + "A" * 43},
        {"Authorization": "Bearer nonsense"},
        {"Authorization": "Basic Zm9vOmJhcg=="},
    ],
    ids=["missing", "unknown", "malformed", "basic"],
)
def test_admin_endpoints_need_the_admin_token(client, headers):
    client.headers.pop("Authorization")
    for method, path in (
        ("GET", "/api/v1/certificates"),
        ("POST", "/api/v1/certificates"),
        ("GET", "/api/v1/cas"),
        ("POST", "/api/v1/certificates/ab/revoke"),
        ("GET", "/api/v1/signers"),
        ("POST", "/api/v1/signers/edge/rotate"),
    ):
        response = client.request(method, path, headers=headers, json={})
        assert response.status_code == 401, (method, path)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")


def _broken_signature_csr() -> bytes:
    der = bytearray(
        x509.load_pem_x509_csr(build_csr(make_key(), cn="x")).public_bytes(serialization.Encoding.DER)
    )
    der[-5] ^= 1
    return (
        b"-----BEGIN CERTIFICATE REQUEST-----\n"
        + base64.encodebytes(bytes(der))
        + b"-----END CERTIFICATE REQUEST-----\n"
    )


def _pem(der: bytes) -> str:
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"


def _many_organizations() -> str:
    subject = [x509.NameAttribute(x509.oid.NameOID.ORGANIZATION_NAME, f"org-{i}") for i in range(100)]
    return build_csr(make_key(), cn="op", extra_subject=tuple(subject)).decode()


BAD_REQUESTS = [
    pytest.param(
        lambda: {
            "csr": _pem(hostile_csr(rdns=[attribute(OID_CN, "op", OCTET_STRING)])),
            "profile": "tls-client",
        },
        422,
        "subject-string-type",
        id="cn-octet-string",
    ),
    pytest.param(
        lambda: {
            "csr": _pem(hostile_csr(rdns=[attribute(OID_CN, "op", BMP_STRING)])),
            "profile": "tls-client",
        },
        422,
        "subject-string-type",
        id="cn-bmpstring",
    ),
    pytest.param(
        lambda: {
            "csr": _pem(hostile_csr(rdns=[attribute(OID_CN, "op", UNIVERSAL_STRING)])),
            "profile": "tls-client",
        },
        422,
        "subject-string-type",
        id="cn-universalstring",
    ),
    pytest.param(
        lambda: {
            "csr": build_csr(
                make_key(), cn="plc-1", dns=tuple(f"n{i}.example" for i in range(1000))
            ).decode(),
            "profile": "device",
            "owner": "acme",
        },
        422,
        "san-count",
        id="device-1000-dns-sans",
    ),
    pytest.param(
        lambda: {"csr": _many_organizations(), "profile": "tls-client"}, 422, "subject-repeated", id="100-o"
    ),
    pytest.param(
        lambda: {
            "csr": _pem(
                hostile_csr(
                    rdns=[attribute(OID_CN, "eng")],
                    extensions=[("1.3.6.1.4.1.50316.802.1", tlv(UTF8_STRING, b"Engineer", long_form=True))],
                )
            ),
            "profile": "tls-client",
        },
        400,
        "csr-der",
        id="ber-role-extension",
    ),
    pytest.param(lambda: {"csr": "garbage", "profile": "tls-client"}, 400, "csr-format", id="garbage"),
    pytest.param(
        lambda: {"csr": _broken_signature_csr().decode(), "profile": "tls-client"},
        400,
        "csr-signature",
        id="broken-signature",
    ),
    pytest.param(
        lambda: {
            "csr": build_csr(rsa.generate_private_key(public_exponent=65537, key_size=1024), cn="x").decode(),
            "profile": "tls-client",
        },
        400,
        "key-size",
        id="rsa-1024",
    ),
    pytest.param(
        lambda: {"csr": (VECTORS / "csr-rsa2048-sha1.pem").read_text(), "profile": "tls-client"},
        400,
        "csr-signature-hash",
        id="sha1",
    ),
    pytest.param(
        lambda: {
            "csr": build_csr(make_key(), cn="x", emails=("a@b.example",)).decode(),
            "profile": "device",
            "owner": "acme",
        },
        422,
        "san-type",
        id="forbidden-san",
    ),
    pytest.param(
        lambda: {"csr": build_csr(make_key(), cn="x").decode(), "profile": "tls-client", "days": 3000},
        422,
        "validity",
        id="validity-above-max",
    ),
    pytest.param(
        lambda: {"csr": build_csr(make_key(), cn="x").decode(), "profile": "smime"},
        400,
        "profile",
        id="unknown-profile",
    ),
    pytest.param(
        lambda: {"csr": build_csr(make_key(), cn="x").decode(), "profile": "tls-client", "ca": "nope"},
        400,
        "ca",
        id="unknown-ca",
    ),
    pytest.param(
        lambda: {"csr": build_csr(make_key(), cn="x").decode(), "profile": "tls-client", "ca": "root"},
        422,
        "ca-root",
        id="root-issues-leaf",
    ),
    pytest.param(lambda: {"profile": "tls-client"}, 400, "schema", id="missing-csr"),
    pytest.param(
        lambda: {"csr": "x", "profile": "tls-client", "colour": "red"}, 400, "schema", id="unknown-field"
    ),
]


@pytest.mark.parametrize(("body", "status", "rule"), BAD_REQUESTS)
def test_bad_input_is_refused_clearly_and_nothing_is_stored(client, pki, body, status, rule):
    before = count(client)
    response = client.post("/api/v1/certificates", json=body())
    assert response.status_code == status, response.text
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert problem["rule"] == rule
    assert problem["detail"]
    assert count(client) == before
    if rule != "schema":  # refused by the CA, not by the request schema: audited with its rule
        refused = [r.event for r in pki.stores.audit.iter_audit() if r.event.type.value == "cert.refused"]
        assert refused[-1].details["rule"] == rule


def test_listing_pages_and_filters(client):
    serials = [issue(client, build_csr(make_key(), cn=f"op-{i}"))["serial"] for i in range(5)]
    base = count(client)
    page = client.get("/api/v1/certificates", params={"limit": 2, "profile": "tls-client"}).json()
    assert page["total"] == 5
    assert [i["serial"] for i in page["items"]] == serials[::-1][:2]
    rest = client.get(
        "/api/v1/certificates", params={"limit": 10, "offset": 2, "profile": "tls-client"}
    ).json()
    assert [i["serial"] for i in rest["items"]] == serials[::-1][2:]
    client.post(f"/api/v1/certificates/{serials[0]}/revoke", json={"reason": "superseded"})
    revoked = client.get("/api/v1/certificates", params={"status": "revoked"}).json()
    assert [i["serial"] for i in revoked["items"]] == [serials[0]]
    expiring = client.get(
        "/api/v1/certificates", params={"expiring_within": "400d", "profile": "tls-client"}
    ).json()
    assert expiring["total"] == 4
    none_soon = client.get(
        "/api/v1/certificates", params={"expiring_within": "30d", "profile": "tls-client"}
    ).json()
    assert none_soon["total"] == 0
    assert count(client) == base
    bad = client.get("/api/v1/certificates", params={"status": "sleeping"})
    assert bad.status_code == 400
    assert bad.json()["rule"] == "status"


def test_revocation_lifecycle(client):
    serial = issue(client, build_csr(make_key(), cn="op"))["serial"]
    crl_before = x509.load_der_x509_crl(client.get("/crl/issuing.crl").content)
    response = client.post(f"/api/v1/certificates/{serial}/revoke", json={"reason": "keyCompromise"})
    assert response.status_code == 200
    assert response.json()["status"] == "revoked"
    assert response.json()["revocation_reason"] == "keyCompromise"
    crl = x509.load_der_x509_crl(client.get("/crl/issuing.crl").content)
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number > crl_before.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    entry = crl.get_revoked_certificate_by_serial_number(int(serial, 16))
    assert entry is not None
    assert (
        entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        is x509.ReasonFlags.key_compromise
    )
    again = client.post(f"/api/v1/certificates/{serial}/revoke", json={"reason": "unspecified"})
    assert again.status_code == 409
    assert again.json()["rule"] == "already-revoked"
    # still revoked for keyCompromise: a second call cannot rewrite it
    assert client.get(f"/api/v1/certificates/{serial}").json()["revocation_reason"] == "keyCompromise"


@pytest.mark.parametrize(
    ("serial", "body", "status"),
    [
        ("abcdef0123", {"reason": "keyCompromise"}, 404),
        ("zz", {"reason": "keyCompromise"}, 400),
        ("SERIAL", {"reason": "certificateHold"}, 400),
        ("SERIAL", {"reason": "KeyCompromise"}, 400),
    ],
    ids=["unknown", "not-hex", "hold", "wrong-case"],
)
def test_bad_revocations(client, serial, body, status):
    if serial == "SERIAL":
        serial = issue(client, build_csr(make_key(), cn="op"))["serial"]
    response = client.post(f"/api/v1/certificates/{serial}/revoke", json=body)
    assert response.status_code == status


def test_default_revocation_reason_is_unspecified(client):
    serial = issue(client, build_csr(make_key(), cn="op"))["serial"]
    assert client.post(f"/api/v1/certificates/{serial}/revoke").json()["revocation_reason"] == "unspecified"


def test_root_cannot_be_revoked(client, pki):
    root_serial = format(pki.authorities.certificate_chain("root")[0].serial_number, "x")
    response = client.post(f"/api/v1/certificates/{root_serial}/revoke", json={"reason": "cACompromise"})
    assert response.status_code == 422
    assert response.json()["rule"] == "revoke-root"


def _ask(client: TestClient, der: bytes, *, get: bool = False) -> ocsp.OCSPResponse:
    if get:
        response = client.get("/ocsp/" + quote(base64.b64encode(der).decode(), safe=""))
    else:
        response = client.post("/ocsp", content=der, headers={"content-type": "application/ocsp-request"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/ocsp-response"
    return ocsp.load_der_ocsp_response(response.content)


@pytest.mark.parametrize("get", [False, True], ids=["post", "get"])
def test_ocsp_good_revoked_unknown(client, pki, get):
    issuing = pki.authorities.certificate_chain("issuing")[0]
    serial = int(issue(client, build_csr(make_key(), cn="op"))["serial"], 16)
    good = _ask(client, ocsp_request_der(issuing, serial, b"n1" * 8), get=get)
    assert good.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert good.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"n1" * 8
    responder = good.certificates[0]
    assert responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [x509.oid.ExtendedKeyUsageOID.OCSP_SIGNING]
    )
    responder.verify_directly_issued_by(issuing)
    # cached (no nonce) answer first, then revocation must show at once
    assert (
        _ask(client, ocsp_request_der(issuing, serial), get=get).certificate_status
        is ocsp.OCSPCertStatus.GOOD
    )
    client.post(f"/api/v1/certificates/{format(serial, 'x')}/revoke", json={"reason": "keyCompromise"})
    for nonce in (None, b"n2" * 8):
        revoked = _ask(client, ocsp_request_der(issuing, serial, nonce), get=get)
        assert revoked.certificate_status is ocsp.OCSPCertStatus.REVOKED
        assert revoked.revocation_reason is x509.ReasonFlags.key_compromise
    unknown = _ask(client, ocsp_request_der(issuing, 0xDEAD_BEEF_0000_1111_2222), get=get)
    assert unknown.certificate_status is ocsp.OCSPCertStatus.UNKNOWN


def test_ocsp_errors(client):
    stranger = x509.load_pem_x509_certificate((client.get("/api/v1/cas/root").json()["certificate"]).encode())
    # a CA otward has never seen: same name, different key
    from tests.unit.core.conftest import make_ca

    other = make_ca("other", path_length=None).info.certificate
    assert (
        _ask(client, ocsp_request_der(other, 1 << 70)).response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED
    )
    assert _ask(client, b"\x30\x00").response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    assert client.get("/ocsp").status_code == 405
    assert client.post("/ocsp", content=b"x" * 20000).status_code == 413
    assert stranger.subject


def test_ocsp_get_with_a_percent_encoded_prefix_is_answered(client, pki):
    """Found by tests/fuzz/http/test_ocsp.py: the route matches the decoded path, but the request was
    looked for after the literal '/ocsp/' in the raw path (IndexError, a 500)."""
    issuing = pki.authorities.certificate_chain("issuing")[0]
    encoded = quote(base64.b64encode(ocsp_request_der(issuing, 1 << 70)).decode(), safe="")
    for path in (f"/%6Fcsp/{encoded}", "/%6Fcsp/AA%3D%3D"):
        response = client.get(path)
        assert response.status_code == 200, path
        ocsp.load_der_ocsp_response(response.content)
    assert ocsp.load_der_ocsp_response(client.get(f"/%6Fcsp/{encoded}").content).response_status is (
        ocsp.OCSPResponseStatus.SUCCESSFUL
    )


def test_public_status_endpoints(client):
    client.headers.pop("Authorization")
    assert client.get("/crl/issuing.crl").headers["content-type"] == "application/pkix-crl"
    assert client.get("/crl/nope.crl").status_code == 404
    ca = client.get("/ca/issuing.crt")
    assert ca.headers["content-type"] == "application/pkix-cert"
    x509.load_der_x509_certificate(ca.content)
    chain = client.get("/api/v1/cas/issuing/chain").text
    assert chain.count("BEGIN CERTIFICATE") == 2
    assert client.get("/openapi.json").json()["paths"]["/api/v1/certificates"]["post"]
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "cdn" not in docs.text.lower()  # offline plants: every asset comes from otward itself
    assert client.get("/docs/static/swagger-ui-bundle.js").status_code == 200


@pytest.mark.parametrize(
    ("extra", "detail"),
    [
        ({}, "profile 'device' needs an owner"),
        ({"owner": "nobody"}, "owner 'nobody' does not exist"),
    ],
    ids=["no-owner", "unknown-owner"],
)
def test_a_device_certificate_needs_an_existing_owner(client, pki, extra, detail):
    """Without an owner the CA's name was written as the owner, and an unknown one was accepted."""
    before = count(client)
    response = client.post(
        "/api/v1/certificates",
        json={"csr": build_csr(make_key(), cn="plc-9").decode(), "profile": "device", **extra},
    )
    assert response.status_code == 400, response.text
    assert response.json()["rule"] == "device-owner"
    assert detail in response.json()["detail"]
    assert count(client) == before


def test_device_certificate_comes_from_its_owners_ca(client, pki):
    pki.authorities.create_subordinate(
        "plant-a", parent="root", key_type=KeyType.EC_P256, organization="ACME Chemicals"
    )
    pki.owners.create("plant-a-ops", ca="plant-a")
    body = issue(client, build_csr(make_key(), cn="plc-3"), "device", owner="plant-a-ops")
    assert client.get(f"/api/v1/certificates/{body['serial']}").json()["ca"] == "plant-a"


def test_issue_every_profile(client):
    cases = [
        ("tls-server", build_csr(make_key(), cn="plc.plant.example", dns=("plc.plant.example",)), {}),
        ("tls-client", build_csr(make_key(), cn="op"), {}),
        ("device", build_csr(make_key(), cn="plc-9"), {"owner": "acme"}),
        (
            "opcua-application",
            build_csr(make_key("rsa-2048"), cn="hmi", uris=("urn:plant:hmi",), dns=("hmi.plant.example",)),
            {},
        ),
        ("modbus-role", build_csr(make_key(), cn="eng"), {"role": "Engineer"}),
    ]
    for profile, csr, extra in cases:
        body = issue(client, csr, profile, **extra)
        assert client.get(f"/api/v1/certificates/{body['serial']}").json()["profile"] == profile


def test_signers_are_listed_and_rotated_over_the_api(client, pki):
    pki.edge.signer()  # made on first use
    listed = {s["name"]: s for s in client.get("/api/v1/signers").json()}
    assert set(listed) >= {"edge"}
    rotated = client.post("/api/v1/signers/edge/rotate")
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["serial"] != listed["edge"]["serial"]
    revoking = client.post("/api/v1/signers/edge/rotate", json={"revoke_previous": "keyCompromise"})
    assert revoking.status_code == 200, revoking.text
    previous = client.get(f"/api/v1/certificates/{rotated.json()['serial']}").json()
    assert previous["status"] == "revoked"
    current = pki.signers.current("edge").certificate
    assert pki.signers.edge_signers(current).revoked[0].serial_number == int(rotated.json()["serial"], 16)
    unknown = client.post("/api/v1/signers/tls/rotate")
    assert unknown.status_code == 400, unknown.text
    assert unknown.json()["rule"] == "signer-name"
    hold = client.post("/api/v1/signers/edge/rotate", json={"revoke_previous": "certificateHold"})
    assert hold.status_code == 400
    assert client.post("/api/v1/signers/edge/rotate", json={"oops": 1}).status_code == 400
    assert client.get("/api/v1/signers", headers={"Authorization": "Bearer nope"}).status_code == 401


HOSTILE_IDS = {
    "newline": "plc-1%0A%3C86%3E1 2026-11-22T12:00:00Z forged otward-ca - - -",
    "carriage-return": "plc-1%0D",
    "trailing-newline": "plc-1%0A",
    "nul": "plc%001",
    "space": "plc 1",
    "too-long": "p" * 300,
}


def _path_routes(pki: Pki) -> list[tuple[str, str]]:
    """(method, path) for every API route with a path parameter, as the OpenAPI document lists them."""
    from otward.http.app import create_api

    paths = create_api(pki).openapi()["paths"]
    return [(method.upper(), path) for path, item in paths.items() if "{" in path for method in sorted(item)]


@pytest.mark.parametrize("hostile", list(HOSTILE_IDS), ids=list(HOSTILE_IDS))
def test_every_path_identifier_refuses_control_characters_and_bad_grammar(pki, client, hostile):
    anonymous = TestClient(create_app(pki), base_url="https://testserver", client=("192.0.2.7", 50000))
    routes = _path_routes(pki)
    assert len(routes) > 30
    before = sum(1 for _ in pki.stores.audit.iter_audit())
    for method, path in routes:
        url = path
        while "{" in url:
            start, end = url.index("{"), url.index("}")
            url = url[:start] + HOSTILE_IDS[hostile] + url[end + 1 :]
        # as the admin, and without credentials from another client (whose failures are held off
        # with 429 after a while: the per-source limit shares nothing with the admin's source)
        for sender, headers in ((client, {}), (anonymous, {"Authorization": ""})):
            response = sender.request(method, url, headers=headers, json={})
            allowed = (400, 401) if sender is client else (400, 401, 429)
            assert response.status_code in allowed, (method, path, response.status_code, response.text)
            if response.status_code == 400 and path.startswith("/.well-known/est/"):
                assert response.headers["content-type"] == "text/plain; charset=utf-8"
                assert est_refusal(response.text)[1] == "schema"  # one line, whatever the path held
            elif response.status_code == 400:
                assert response.headers["content-type"] == "application/problem+json"
    stored = [r.event for r in pki.stores.audit.iter_audit()][before:]
    assert not [e for e in stored if any(c in e.subject for c in "\r\n\x00")]


def test_forged_attest_path_is_refused_before_anything_is_stored(pki, client):
    before = sum(1 for _ in pki.stores.audit.iter_audit())
    device = quote("plc-1\n<86>1 2026-11-22T12:00:00.000000Z plc otward-ca - - - forged line", safe="")
    response = client.post(
        f"/api/v1/devices/{device}/attest",
        json={"challenge_id": "c" * 32, "signature": "AAAA"},
        headers={"Authorization": ""},
    )
    assert response.status_code == 400, response.text
    assert response.json()["rule"] == "schema"
    assert "device id must be" in response.json()["detail"]
    assert sum(1 for _ in pki.stores.audit.iter_audit()) == before


@pytest.mark.parametrize(
    ("path", "size", "status"),
    [
        ("/api/v1/certificates", 2 << 20, 413),  # the JSON API: 1 MiB
        ("/api/v1/access/import", 2 << 20, 401),  # a whole access model: within its 8 MiB, so authenticated
        ("/api/v1/access/import", 9 << 20, 413),
        ("/api/v1/edge/assets/press-1/trail", 9 << 20, 413),
        ("/.well-known/est/simpleenroll", 65 << 10, 413),
        ("/ocsp", 17 << 10, 413),
    ],
    ids=["api", "import-within", "import-over", "trail-over", "est", "ocsp"],
)
def test_bodies_over_the_endpoint_limit_are_refused_before_authentication(pki, path, size, status):
    with TestClient(create_app(pki), base_url="https://testserver") as anonymous:
        body = b'{"yaml": "' + b"a" * size + b'"}'
        response = anonymous.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    if status == 413 and path.startswith("/.well-known/est/"):  # EST refusals are a line of text
        detail, rule = est_refusal(response.text)
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert response.headers["connection"] == "close"
        assert rule == "body-size"
        assert "the request body is larger than 64 KiB" in detail
    elif status == 413:
        problem = response.json()
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["connection"] == "close"
        assert problem["rule"] == "body-size"
        assert problem["limit"] < size
        assert "the request body is larger than" in problem["detail"]


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("/api/v1/certificates?offset=9223372036854775808", "offset"),
        ("/api/v1/devices?offset=9223372036854775808", "offset"),
        ("/api/v1/audit?offset=9223372036854775808", "offset"),
        ("/api/v1/edge/assets/press-1/trail?after=9223372036854775808", "after"),
        ("/api/v1/edge/assets/press-1/bundle?after=9223372036854775808", "after"),
        ("/api/v1/transparency/sth/99999999999999999999999", "tree_size"),
        ("/api/v1/transparency/proof/01?tree_size=99999999999999999999999", "tree_size"),
        ("/api/v1/transparency/consistency?first=1&second=99999999999999999999999", "second"),
        ("/api/v1/audit?since=0001-01-01T00:00:00%2B14:00", "0001-01-01T00:00:00+14:00"),
        ("/api/v1/audit?until=9999-12-31T23:59:59-14:00", "9999-12-31T23:59:59-14:00"),
        ("/api/v1/audit?since=999999w", "999999w"),
        ("/api/v1/certificates?expiring_within=999999w", "999999w"),
    ],
    ids=[
        "certificates-offset",
        "devices-offset",
        "audit-offset",
        "trail-after",
        "bundle-after",
        "sth-size",
        "proof-size",
        "consistency-size",
        "audit-since-before-utc",
        "audit-until-after-utc",
        "audit-since-duration",
        "expiring-within",
    ],
)
def test_out_of_range_numbers_and_times_are_client_errors(client, path, named):
    """Numbers past what the database holds and times past what a datetime holds: 400 naming them
    (they were 500 or 503)."""
    response = client.get(path)
    assert response.status_code == 400, response.text
    assert named in response.json()["detail"]
