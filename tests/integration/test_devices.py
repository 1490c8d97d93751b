"""Device enrollment, registry and attestation through the services and the in-process API,
on SQLite and PostgreSQL, with a clock the tests move (expiry, challenge lifetime, grace)."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from fastapi.testclient import TestClient

from otward.config import load_settings
from otward.core import b64url
from otward.core.attestation import ChallengePurpose, challenge_message
from otward.core.audit import EventType, Outcome
from otward.core.keys import KeyType, classify_public_key, sign_data
from otward.core.records import CertificateFilter, DeviceStatus
from otward.errors import AuthenticationError, ConflictError, PolicyViolationError
from otward.http.app import create_app
from otward.http.limits import MAX_FAILURES
from otward.services.audit import Actor
from otward.services.pki import Pki
from tests.conftest import Clock, build_csr, est_refusal, make_key, with_change_subject_name
from tests.hostile import OCTET_STRING, OID_CN, OID_O, TELETEX_STRING, attribute, hostile_csr

pytestmark = pytest.mark.integration

DEVICE = Actor(component="est", identity="est", source="192.0.2.60")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tpki(installation, database_url, clock):
    instance = Pki.open(load_settings(installation, database_url=database_url), clock=clock)
    instance.owners.create("acme")
    yield instance
    instance.close()


def der_csr(key, cn: str) -> bytes:
    return x509.load_pem_x509_csr(build_csr(key, cn=cn)).public_bytes(Encoding.DER)


def enroll(pki: Pki, cn: str, *, owner: str = "acme", key=None):  # type: ignore[no-untyped-def]
    key = key or make_key()
    _, token = pki.enrollment_tokens.create(owner)
    issued = pki.est.enroll(der_csr(key, cn), token, label=None, actor=DEVICE)
    return key, issued


def answer(pki: Pki, device_id: str, key, purpose: ChallengePurpose):  # type: ignore[no-untyped-def]
    challenge = pki.devices.challenge(device_id, purpose)
    signature = sign_data(key, challenge_message(device_id, purpose, challenge.nonce))
    return challenge, signature


def events(pki: Pki, kind: EventType) -> list:
    return [r.event for r in pki.stores.audit.iter_audit() if r.event.type is kind]


def test_enrollment_registers_the_device_and_spends_the_token_with_the_certificate(tpki, clock):
    record, token = tpki.enrollment_tokens.create("acme", uses=2)
    key = make_key()
    issued = tpki.est.enroll(der_csr(key, "plc-1"), token, label=None, actor=DEVICE)
    device = tpki.devices.get("plc-1")
    assert (device.owner, device.status, device.current_serial) == (
        "acme",
        DeviceStatus.ACTIVE,
        issued.serial,
    )
    assert device.enrollment_token_id == record.token_id
    assert tpki.stores.certificates.get_certificate(issued.certificate.serial_number).device_id == "plc-1"
    assert tpki.stores.enrollment_tokens.get_enrollment_token(record.token_id).uses == 1

    # an enrolled device is not taken over by another token enrollment, and the use is not spent
    with pytest.raises(ConflictError, match="already enrolled"):
        tpki.est.enroll(der_csr(make_key(), "plc-1"), token, label=None, actor=DEVICE)
    assert tpki.stores.enrollment_tokens.get_enrollment_token(record.token_id).uses == 1
    # once its certificate is revoked (a factory reset), the device may enroll anew with a token
    tpki.revocation.revoke(issued.certificate.serial_number, x509.ReasonFlags.superseded)
    clock.advance(timedelta(minutes=5))
    again = tpki.est.enroll(der_csr(make_key(), "plc-1"), token, label=None, actor=DEVICE)
    assert tpki.devices.get("plc-1").current_serial == again.serial
    assert [c.serial for c in tpki.devices.certificates("plc-1")] == [again.serial, issued.serial]

    # another owner's token cannot claim the device id
    tpki.owners.create("rival")
    _, rival = tpki.enrollment_tokens.create("rival")
    with pytest.raises(ConflictError, match="another owner"):
        tpki.est.enroll(der_csr(make_key(), "plc-1"), rival, label=None, actor=DEVICE)
    assert any("another owner" in (e.reason or "") for e in events(tpki, EventType.ENROLL_REFUSED))


def test_label_must_be_the_owners_ca(tpki):
    _, token = tpki.enrollment_tokens.create("acme")
    with pytest.raises(PolicyViolationError, match="enroll with CA 'issuing'"):
        tpki.est.enroll(der_csr(make_key(), "plc-2"), token, label="other", actor=DEVICE)
    assert tpki.est.enroll(der_csr(make_key(), "plc-2"), token, label="issuing", actor=DEVICE)


def test_attestation_passes_once_and_refuses_replays_late_answers_and_other_keys(tpki, clock):
    key, issued = enroll(tpki, "plc-3")
    challenge, signature = answer(tpki, "plc-3", key, ChallengePurpose.ATTEST)
    result = tpki.devices.attest("plc-3", challenge.challenge_id, signature, DEVICE)
    assert result.serial == issued.serial
    assert result.renewal_token is None
    assert tpki.devices.get("plc-3").last_attested_at == clock.now

    with pytest.raises(AuthenticationError):  # replay
        tpki.devices.attest("plc-3", challenge.challenge_id, signature, DEVICE)
    late, late_signature = answer(tpki, "plc-3", key, ChallengePurpose.ATTEST)
    clock.advance(timedelta(seconds=61))
    with pytest.raises(AuthenticationError):
        tpki.devices.attest("plc-3", late.challenge_id, late_signature, DEVICE)
    other, _ = answer(tpki, "plc-3", key, ChallengePurpose.ATTEST)
    forged = sign_data(make_key(), challenge_message("plc-3", ChallengePurpose.ATTEST, other.nonce))
    with pytest.raises(AuthenticationError):
        tpki.devices.attest("plc-3", other.challenge_id, forged, DEVICE)
    # a signature over the nonce for another purpose does not count
    renew, _ = answer(tpki, "plc-3", key, ChallengePurpose.RENEW)
    wrong_purpose = sign_data(key, challenge_message("plc-3", ChallengePurpose.ATTEST, renew.nonce))
    with pytest.raises(AuthenticationError):
        tpki.devices.attest("plc-3", renew.challenge_id, wrong_purpose, DEVICE)

    outcomes = [e.outcome for e in events(tpki, EventType.DEVICE_ATTESTED)]
    assert outcomes == [Outcome.SUCCESS] + [Outcome.FAILURE] * 4


def test_renewal_token_from_a_renew_challenge_renews_with_a_new_key(tpki):
    key, _ = enroll(tpki, "plc-4")
    challenge, signature = answer(tpki, "plc-4", key, ChallengePurpose.RENEW)
    result = tpki.devices.attest("plc-4", challenge.challenge_id, signature, DEVICE)
    assert result.renewal_token
    new_key = make_key()
    renewed = tpki.est.enroll(der_csr(new_key, "plc-4"), result.renewal_token, label=None, actor=DEVICE)
    assert renewed.certificate.public_key() == new_key.public_key()
    assert tpki.devices.get("plc-4").current_serial == renewed.serial
    # the renewal token is bound to its device and single use
    with pytest.raises(AuthenticationError):
        tpki.est.enroll(der_csr(make_key(), "plc-4"), result.renewal_token, label=None, actor=DEVICE)
    challenge, signature = answer(tpki, "plc-4", new_key, ChallengePurpose.RENEW)
    token = tpki.devices.attest("plc-4", challenge.challenge_id, signature, DEVICE).renewal_token
    with pytest.raises(PolicyViolationError, match="pattern"):
        tpki.est.enroll(der_csr(make_key(), "plc-other"), token, label=None, actor=DEVICE)


def test_renewal_after_expiry_only_within_the_owners_grace_and_never_when_revoked(tpki, clock):
    key, _ = enroll(tpki, "train-1")
    clock.advance(timedelta(days=400))  # the device profile's certificates last 365 days
    challenge, signature = answer(tpki, "train-1", key, ChallengePurpose.RENEW)
    with pytest.raises(AuthenticationError):
        tpki.devices.attest("train-1", challenge.challenge_id, signature, DEVICE)

    tpki.owners.update("acme", renewal_grace_days=180)
    challenge, signature = answer(tpki, "train-1", key, ChallengePurpose.RENEW)
    token = tpki.devices.attest("train-1", challenge.challenge_id, signature, DEVICE).renewal_token
    renewed = tpki.est.enroll(der_csr(make_key(), "train-1"), token, label=None, actor=DEVICE)
    assert renewed.certificate.not_valid_after_utc > clock.now
    # an expired certificate never passes a plain attestation, only a renewal within grace
    challenge, signature = answer(tpki, "train-1", key, ChallengePurpose.ATTEST)
    with pytest.raises(AuthenticationError):
        tpki.devices.attest("train-1", challenge.challenge_id, signature, DEVICE)

    key2, issued2 = enroll(tpki, "train-2")
    tpki.revocation.revoke(issued2.certificate.serial_number, x509.ReasonFlags.key_compromise)
    clock.advance(timedelta(days=400))
    challenge, signature = answer(tpki, "train-2", key2, ChallengePurpose.RENEW)
    with pytest.raises(AuthenticationError):
        tpki.devices.attest("train-2", challenge.challenge_id, signature, DEVICE)


def test_disabled_device_cannot_renew_and_revoked_device_loses_every_certificate(tpki):
    key, first = enroll(tpki, "plc-5")
    challenge, signature = answer(tpki, "plc-5", key, ChallengePurpose.RENEW)
    token = tpki.devices.attest("plc-5", challenge.challenge_id, signature, DEVICE).renewal_token
    second = tpki.est.enroll(der_csr(make_key(), "plc-5"), token, label=None, actor=DEVICE)

    tpki.devices.disable("plc-5")
    challenge, signature = answer(tpki, "plc-5", key, ChallengePurpose.RENEW)
    with pytest.raises(AuthenticationError):
        tpki.devices.attest("plc-5", challenge.challenge_id, signature, DEVICE)
    with pytest.raises(PolicyViolationError, match="disabled"):
        tpki.est.reenroll(
            der_csr(make_key(), "plc-5"),
            second.certificate.public_bytes(Encoding.DER),
            label=None,
            actor=DEVICE,
        )
    tpki.devices.enable("plc-5")

    revoked = tpki.devices.revoke("plc-5")
    assert {c.serial for c in revoked} == {first.serial, second.serial}
    assert tpki.devices.get("plc-5").status is DeviceStatus.REVOKED
    crl = x509.load_der_x509_crl(tpki.stores.crls.get_crl("issuing").der)
    assert {first.certificate.serial_number, second.certificate.serial_number} <= {
        r.serial_number for r in crl
    }
    with pytest.raises(ConflictError):
        tpki.devices.enable("plc-5")
    challenge, signature = answer(tpki, "plc-5", key, ChallengePurpose.ATTEST)  # a nonce, as for any id
    with pytest.raises(AuthenticationError):
        tpki.devices.attest("plc-5", challenge.challenge_id, signature, DEVICE)


def test_reenroll_needs_a_valid_registered_certificate_with_the_same_subject(tpki, clock):
    _, issued = enroll(tpki, "plc-6")
    der = issued.certificate.public_bytes(Encoding.DER)
    renewed = tpki.est.reenroll(der_csr(make_key(), "plc-6"), der, label=None, actor=DEVICE)
    assert tpki.devices.get("plc-6").current_serial == renewed.serial
    current = renewed.certificate.public_bytes(Encoding.DER)
    with pytest.raises(PolicyViolationError, match="keeps the subject"):
        tpki.est.reenroll(der_csr(make_key(), "plc-7"), current, label=None, actor=DEVICE)
    not_a_device = tpki.issuance.issue(build_csr(make_key(), cn="client-1"), profile="tls-client")
    with pytest.raises(PolicyViolationError, match="registered device"):
        tpki.est.reenroll(
            der_csr(make_key(), "client-1"),
            not_a_device.certificate.public_bytes(Encoding.DER),
            label=None,
            actor=DEVICE,
        )
    clock.advance(timedelta(days=366))
    with pytest.raises(AuthenticationError, match="expired"):
        tpki.est.reenroll(der_csr(make_key(), "plc-6"), current, label=None, actor=DEVICE)


def test_server_keygen_needs_an_owner_that_allows_it(tpki):
    _, token = tpki.enrollment_tokens.create("acme", uses=2)
    with pytest.raises(PolicyViolationError, match="server-side key generation"):
        tpki.est.server_keygen(der_csr(make_key(), "meter-1"), token, label=None, actor=DEVICE)
    tpki.owners.update("acme", allow_server_keygen=True)
    made = tpki.est.server_keygen(der_csr(make_key(), "meter-1"), token, label=None, actor=DEVICE)
    assert made.issued.certificate.public_key() == made.private_key.public_key()
    assert tpki.devices.get("meter-1").current_serial == made.issued.serial


@pytest.mark.parametrize("key_type", ["rsa-2048", "ec-p256", "ec-p384", "ed25519"])
def test_server_keygen_makes_a_key_of_the_csrs_type_and_size(tpki, key_type):
    """A client reads only the kind of key it asked with (libest parses RSA keys only)."""
    tpki.owners.update("acme", allow_server_keygen=True)
    _, token = tpki.enrollment_tokens.create("acme")
    made = tpki.est.server_keygen(der_csr(make_key(key_type), "meter-2"), token, label=None, actor=DEVICE)
    assert classify_public_key(made.private_key.public_key()) is KeyType(key_type)
    assert made.issued.certificate.public_key() == made.private_key.public_key()


def test_server_keygen_refuses_a_key_type_the_profile_does_not_issue_before_making_one(
    installation, database_url
):
    config = installation / "config.toml"
    config.write_text(config.read_text() + '\n[profiles.device]\nkey_types = ["ec-p256"]\n')
    refusing = Pki.open(load_settings(installation, database_url=database_url))
    try:
        refusing.owners.create("acme", allow_server_keygen=True)
        record, token = refusing.enrollment_tokens.create("acme")
        with pytest.raises(PolicyViolationError, match="key type 'rsa-2048' not allowed") as refused:
            refusing.est.server_keygen(
                der_csr(make_key("rsa-2048"), "meter-3"), token, label=None, actor=DEVICE
            )
        assert refused.value.rule == "key-type"
        (event,) = events(refusing, EventType.CERT_REFUSED)
        assert event.details["rule"] == "key-type"
        assert refusing.stores.enrollment_tokens.get_enrollment_token(record.token_id).uses == 0
        assert refusing.stores.devices.get_device("meter-3") is None
    finally:
        refusing.close()


# --- HTTP, in process ------------------------------------------------------------------------


@pytest.fixture
def client(tpki, installation):
    token = (installation / "admin.token").read_text().strip()
    with TestClient(create_app(tpki), base_url="https://testserver") as test_client:
        test_client.headers["Authorization"] = f"Bearer {token}"
        yield test_client


def est_post(client: TestClient, path: str, body: bytes, token: str | None) -> object:
    headers = {"Content-Type": "application/pkcs10", "Authorization": f"Bearer {token}" if token else ""}
    return client.post(f"/.well-known/est/{path}", content=body, headers=headers)


def test_failed_token_attempts_are_limited_per_source(client, tpki):
    csr = base64.encodebytes(der_csr(make_key(), "plc-8"))
    for _ in range(MAX_FAILURES):
        response = est_post(client, "simpleenroll", csr, "otwe_0123456789abcdef_" + "x" * 43)
        assert response.status_code == 401
    response = est_post(client, "simpleenroll", csr, "otwe_0123456789abcdef_" + "x" * 43)
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    # even a good token waits: guessing must not go on behind a valid one
    _, token = tpki.enrollment_tokens.create("acme")
    assert est_post(client, "simpleenroll", csr, token).status_code == 429


def test_a_request_without_credentials_is_a_challenge_not_a_failed_attempt(tpki):
    """libest sends every enrollment first without credentials: the 401 challenge is answered before
    the body is read, and neither counts against the source nor writes to the trail, so one address
    enrolls more devices a minute than the failure limit allows failures. Credentials that are there
    but wrong or malformed still count."""
    csr = base64.b64encode(der_csr(make_key(), "plc-30"))
    before = sum(1 for _ in tpki.stores.audit.iter_audit())
    with TestClient(create_app(tpki), base_url="https://testserver") as anonymous:
        for operation in ["simpleenroll", "serverkeygen"] * MAX_FAILURES:
            for headers in ({}, {"Authorization": " "}):
                response = anonymous.post(
                    f"/.well-known/est/{operation}",
                    content=csr,
                    headers={"Content-Type": "application/pkcs10", **headers},
                )
                assert response.status_code == 401, response.text
                assert response.headers["WWW-Authenticate"].startswith('Basic realm="otward-est"')
                assert response.headers["Connection"] == "close"  # the body is never read
                assert est_refusal(response.text)[1] == "enroll-token"
        # answered before the body is looked at: a challenge whatever the body holds
        garbage = anonymous.post("/.well-known/est/simpleenroll", content=b"%%%", headers={})
        assert garbage.status_code == 401
        assert sum(1 for _ in tpki.stores.audit.iter_audit()) == before
        _, token = tpki.enrollment_tokens.create("acme")
        assert est_post(anonymous, "simpleenroll", csr, token).status_code == 200
        for _ in range(MAX_FAILURES):  # a Basic header without a password is an attempt, and fails
            response = anonymous.post(
                "/.well-known/est/simpleenroll",
                content=csr,
                headers={"Content-Type": "application/pkcs10", "Authorization": "Basic ZGV2Og=="},
            )
            assert response.status_code == 401
        limited = est_post(anonymous, "simpleenroll", csr, "otwe_0123456789abcdef_" + "x" * 43)
    assert limited.status_code == 429
    assert "too many failed attempts" in est_refusal(limited.text)[0]
    assert int(limited.headers["Retry-After"]) >= 1


def test_est_refusals_are_a_line_of_text_unless_problem_json_is_asked_for(client, tpki):
    """Device EST clients print the body of an answer they do not handle in their log; the otward
    agent asks for problem+json to read the rule; the admin API stays problem+json."""
    _, token = tpki.enrollment_tokens.create("acme", device_id_pattern="sensor-*", uses=2)
    csr = base64.b64encode(der_csr(make_key(), "plc-31"))
    refused = est_post(client, "simpleenroll", csr, token)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "text/plain; charset=utf-8"
    assert refused.text == (
        "device id 'plc-31' does not match the token's pattern 'sensor-*' (rule enroll-token-pattern)\n"
    )
    asked = client.post(
        "/.well-known/est/simpleenroll",
        content=csr,
        headers={
            "Content-Type": "application/pkcs10",
            "Authorization": f"Bearer {token}",
            "Accept": "application/pkcs7-mime, application/problem+json",
        },
    )
    assert asked.status_code == 403
    assert asked.headers["content-type"] == "application/problem+json"
    assert asked.json()["rule"] == "enroll-token-pattern"
    unknown = client.get("/.well-known/est/nosuchca/cacerts")
    assert unknown.status_code == 404
    assert est_refusal(unknown.text) == ("no CA 'nosuchca' to enroll with", "est-label")
    api = client.get("/api/v1/devices/nosuch")
    assert api.status_code == 404
    assert api.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("cn", "status", "rule"),
    [
        (b"\x14\x05plc\xff\xfe", 403, "subject-string-type"),
        (b"\x0c\x05plc\xff\xfe", 400, "subject-string-type"),
        (b"\x1e\x05plcAA", 400, "csr-format"),
    ],
    ids=["teletex", "utf8-not-utf8", "bmp-odd-length"],
)
def test_a_malformed_subject_is_a_client_error_and_the_token_comes_first(client, tpki, cn, status, rule):
    """A CN that does not decode: 401/429 with a wrong token (checked first), a 4xx naming the rule
    with a good one; never a 500."""
    der = der_csr(make_key(), "plcAA").replace(b"\x0c\x05plcAA", cn)
    body = base64.b64encode(der)
    wrong = "otwe_0123456789abcdef_" + "x" * 43
    for _ in range(MAX_FAILURES):
        assert est_post(client, "simpleenroll", body, wrong).status_code == 401
    assert est_post(client, "serverkeygen", body, wrong).status_code == 429
    with TestClient(create_app(tpki), base_url="https://testserver") as fresh:
        _, token = tpki.enrollment_tokens.create("acme")
        refused = est_post(fresh, "simpleenroll", body, token)
    assert refused.status_code == status, refused.text
    assert est_refusal(refused.text)[1] == rule


@pytest.mark.parametrize(("workers", "allowed"), [(2, 5), (3, 4), (20, 1)])
def test_each_worker_allows_its_share_so_a_source_never_gets_more_than_the_limit(tpki, workers, allowed):
    """With N workers a source's connections may reach any of them: each allows ⌈10 / N⌉ failures."""
    assert allowed * workers >= MAX_FAILURES
    assert (allowed - 1) * workers < MAX_FAILURES
    csr = base64.encodebytes(der_csr(make_key(), "plc-8"))
    with TestClient(create_app(tpki, workers=workers), base_url="https://testserver") as worker:
        for _ in range(allowed):
            assert (
                est_post(worker, "simpleenroll", csr, "otwe_0123456789abcdef_" + "x" * 43).status_code == 401
            )
        assert est_post(worker, "simpleenroll", csr, "otwe_0123456789abcdef_" + "x" * 43).status_code == 429


def test_enroll_accepts_base64_with_or_without_line_breaks(client, tpki):
    _, token = tpki.enrollment_tokens.create("acme", uses=2)
    der = der_csr(make_key(), "plc-9")
    one_line = base64.b64encode(der)
    response = est_post(client, "simpleenroll", one_line, token)
    assert response.status_code == 200, response.text
    certs = pkcs7.load_der_pkcs7_certificates(base64.b64decode(response.content))
    assert certs[0].subject.rfc4514_string() == "CN=plc-9"
    garbage = est_post(client, "simpleenroll", b"%%% not base64 %%%", token)
    assert garbage.status_code == 400
    wrong_type = client.post(
        "/.well-known/est/simpleenroll", content=one_line, headers={"Authorization": f"Bearer {token}"}
    )
    assert wrong_type.status_code == 400
    assert "application/pkcs10" in est_refusal(wrong_type.text)[0]


def test_device_api_lists_shows_and_attests(client, tpki):
    key, issued = enroll(tpki, "plc-10")
    page = client.get("/api/v1/devices", params={"owner": "acme"}).json()
    assert [d["device_id"] for d in page["items"]] == ["plc-10"]
    shown = client.get("/api/v1/devices/plc-10").json()
    assert shown["current_serial"] == issued.serial
    assert [c["serial"] for c in shown["certificates"]] == [issued.serial]

    anonymous = {"Authorization": ""}
    challenge = client.post("/api/v1/devices/plc-10/challenge", json={"purpose": "attest"}, headers=anonymous)
    assert challenge.status_code == 201
    body = challenge.json()
    nonce = base64.urlsafe_b64decode(body["nonce"] + "=" * (-len(body["nonce"]) % 4))
    signature = sign_data(key, challenge_message("plc-10", ChallengePurpose.ATTEST, nonce))
    answer_body = {
        "challenge_id": body["challenge_id"],
        "signature": base64.urlsafe_b64encode(signature).decode(),
    }
    attested = client.post("/api/v1/devices/plc-10/attest", json=answer_body, headers=anonymous)
    assert attested.status_code == 200, attested.text
    assert attested.json() == {
        "device_id": "plc-10",
        "result": "passed",
        "serial": issued.serial,
        "renewal_token": None,
    }
    replay = client.post("/api/v1/devices/plc-10/attest", json=answer_body, headers=anonymous)
    assert replay.status_code == 401

    assert client.get("/api/v1/devices", headers=anonymous).status_code == 401
    assert client.post("/api/v1/devices/plc-10/disable").json()["status"] == "disabled"
    assert (
        client.post("/api/v1/devices/plc-10/revoke", json={"reason": "keyCompromise"}).json()["status"]
        == "revoked"
    )
    assert client.get("/api/v1/devices/plc-10").json()["certificates"][0]["status"] == "revoked"


def test_the_challenge_endpoint_answers_alike_for_unknown_revoked_and_existing_devices(client, tpki):
    """No device enumeration: the same status and shape for all three; only the proof tells."""
    keys = {"plc-11": enroll(tpki, "plc-11")[0], "plc-12": enroll(tpki, "plc-12")[0], "plc-13": make_key()}
    tpki.devices.revoke("plc-12")
    anonymous = {"Authorization": ""}
    answers = {}
    for device_id in keys:  # existing, revoked, unknown
        response = client.post(f"/api/v1/devices/{device_id}/challenge", json={}, headers=anonymous)
        answers[device_id] = (
            response.status_code,
            response.headers["content-type"],
            tuple(sorted(response.json())),
        )
        issued = response.json()
        nonce = b64url.decode(issued["nonce"], "nonce")
        signature = sign_data(keys[device_id], challenge_message(device_id, ChallengePurpose.ATTEST, nonce))
        proof = {"challenge_id": issued["challenge_id"], "signature": b64url.encode(signature)}
        attested = client.post(f"/api/v1/devices/{device_id}/attest", json=proof, headers=anonymous)
        assert attested.status_code == (200 if device_id == "plc-11" else 401), (device_id, attested.text)
    assert len(set(answers.values())) == 1, answers
    assert answers["plc-11"][0] == 201
    not_an_id = client.post("/api/v1/devices/-dash/challenge", json={}, headers=anonymous)
    assert not_an_id.status_code == 400  # no device can have it: nothing to hide


def test_client_certificate_trust_follows_new_cas(tpki):
    import ssl

    from otward.http.server import ClientCaTrust

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    trust = ClientCaTrust(context)
    trust.refresh(tpki)
    assert len(context.get_ca_certs()) == 2  # root and issuing
    tpki.authorities.create_subordinate(
        "line-9", parent="root", key_type=KeyType.EC_P256, organization="ACME Chemicals"
    )
    trust.refresh(tpki)
    subjects = [dict(n[0] for n in c["subject"])["commonName"] for c in context.get_ca_certs()]
    assert len(subjects) == 3
    assert any("line-9" in s for s in subjects)


def test_service_certificate_is_renewed_after_two_thirds_and_reloaded(installation, database_url, clock):
    import ssl

    from otward.config import read_passphrase
    from otward.http.server import ServiceIdentity
    from otward.services.bootstrap import TlsFiles, renew_service_certificate_if_due

    tls = TlsFiles.in_dir(installation)
    before = tls.certificate_chain.read_bytes()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    identity = ServiceIdentity(context, tls, lambda: read_passphrase(installation))
    pki = Pki.open(load_settings(installation, database_url=database_url), clock=clock)
    try:
        assert not renew_service_certificate_if_due(pki, installation)
        clock.advance(timedelta(days=250))  # past 2/3 of a year
        assert renew_service_certificate_if_due(pki, installation)
        assert not renew_service_certificate_if_due(pki, installation)
    finally:
        pki.close()
    old = x509.load_pem_x509_certificates(before)[0]
    new, issuing = x509.load_pem_x509_certificates(tls.certificate_chain.read_bytes())
    assert new.serial_number != old.serial_number
    assert new.subject == old.subject
    assert new.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ) == old.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert new.public_key() != old.public_key()
    new.verify_directly_issued_by(issuing)
    assert oct(tls.private_key.stat().st_mode & 0o777) == "0o600"
    assert identity.reload_if_changed()  # the key and certificate load together
    assert not identity.reload_if_changed()


# --- superseded certificates (security review, issue #11 item 4) --------------------------------


def reenroll(pki: Pki, cn: str, certificate: x509.Certificate):  # type: ignore[no-untyped-def]
    return pki.est.reenroll(
        der_csr(make_key(), cn), certificate.public_bytes(Encoding.DER), label=None, actor=DEVICE
    )


def test_only_the_current_certificate_renews(tpki):
    _, first = enroll(tpki, "plc-20")
    second = reenroll(tpki, "plc-20", first.certificate)
    with pytest.raises(PolicyViolationError, match="only the current certificate renews") as refused:
        reenroll(tpki, "plc-20", first.certificate)
    assert refused.value.rule == "est-superseded"
    assert tpki.devices.get("plc-20").current_serial == second.serial
    assert any((e.details.get("rule") == "est-superseded") for e in events(tpki, EventType.ENROLL_REFUSED))


def test_a_renewal_whose_answer_was_lost_is_answered_again(tpki):
    """The device asks again with its previous certificate and the key it renewed with: it gets the
    certificate issued then (nothing new is issued), recorded as a renewal-retry; another key is
    still refused, and so is the retry once the device used its new certificate."""
    _, first = enroll(tpki, "plc-25")
    new_key = make_key()
    presented = first.certificate.public_bytes(Encoding.DER)
    second = tpki.est.reenroll(der_csr(new_key, "plc-25"), presented, label=None, actor=DEVICE)
    issued = tpki.stores.certificates.list_certificates(CertificateFilter(), limit=1, offset=0)[1]

    again = tpki.est.reenroll(der_csr(new_key, "plc-25"), presented, label=None, actor=DEVICE)
    assert again.serial == second.serial
    assert again.certificate == second.certificate
    assert tpki.devices.get("plc-25").current_serial == second.serial
    (retry,) = [
        e for e in events(tpki, EventType.ENROLL_SUCCEEDED) if e.details.get("method") == "renewal-retry"
    ]
    assert (retry.subject, retry.details["serial"]) == ("plc-25", second.serial)
    assert retry.details["renewed"] == first.serial
    assert tpki.stores.certificates.list_certificates(CertificateFilter(), limit=1, offset=0)[1] == issued

    with pytest.raises(PolicyViolationError, match="only the current certificate renews"):
        tpki.est.reenroll(der_csr(make_key(), "plc-25"), presented, label=None, actor=DEVICE)

    challenge, signature = answer(tpki, "plc-25", new_key, ChallengePurpose.ATTEST)
    tpki.devices.attest("plc-25", challenge.challenge_id, signature, DEVICE)  # first use: first revoked
    with pytest.raises(AuthenticationError, match="revoked"):
        tpki.est.reenroll(der_csr(new_key, "plc-25"), presented, label=None, actor=DEVICE)


def test_a_renewal_keeps_the_previous_certificate_only_for_the_overlap(tpki, clock):
    _, first = enroll(tpki, "plc-21")
    second = reenroll(tpki, "plc-21", first.certificate)
    device = tpki.devices.get("plc-21")
    assert device.superseded_serial == first.serial
    assert tpki.stores.certificates.get_certificate(first.certificate.serial_number).revoked_at is None

    assert tpki.devices.retire_superseded() == []  # the overlap (default one hour) is not over
    clock.advance(timedelta(minutes=61))
    assert tpki.devices.retire_superseded() == [first.serial]
    record = tpki.stores.certificates.get_certificate(first.certificate.serial_number)
    assert record.revocation_reason is x509.ReasonFlags.superseded
    assert tpki.devices.get("plc-21").superseded_serial is None
    crl = x509.load_der_x509_crl(tpki.stores.crls.get_crl("issuing").der)
    assert crl.get_revoked_certificate_by_serial_number(first.certificate.serial_number) is not None
    assert tpki.stores.certificates.get_certificate(second.certificate.serial_number).revoked_at is None


def test_using_the_new_certificate_retires_the_previous_one_at_once(tpki):
    _, first = enroll(tpki, "plc-22")
    new_key = make_key()
    second = tpki.est.reenroll(
        der_csr(new_key, "plc-22"), first.certificate.public_bytes(Encoding.DER), label=None, actor=DEVICE
    )
    challenge, signature = answer(tpki, "plc-22", new_key, ChallengePurpose.ATTEST)
    tpki.devices.attest("plc-22", challenge.challenge_id, signature, DEVICE)
    assert tpki.stores.certificates.get_certificate(first.certificate.serial_number).revoked_at is not None
    assert tpki.devices.get("plc-22").current_serial == second.serial

    # and a renewal with the new certificate retires any previous one still pending
    third = reenroll(tpki, "plc-22", second.certificate)
    fourth = reenroll(tpki, "plc-22", third.certificate)
    assert tpki.stores.certificates.get_certificate(second.certificate.serial_number).revoked_at is not None
    assert tpki.devices.get("plc-22").superseded_serial == third.serial
    assert tpki.devices.get("plc-22").current_serial == fourth.serial


def test_a_superseded_key_earns_no_renewal_token(tpki):
    old_key, first = enroll(tpki, "plc-23")
    reenroll(tpki, "plc-23", first.certificate)
    challenge, signature = answer(tpki, "plc-23", old_key, ChallengePurpose.RENEW)
    with pytest.raises(AuthenticationError):
        tpki.devices.attest("plc-23", challenge.challenge_id, signature, DEVICE)


def test_after_a_key_compromise_no_older_certificate_renews_and_the_device_can_be_provisioned_anew(tpki):
    _, first = enroll(tpki, "plc-24")
    second = reenroll(tpki, "plc-24", first.certificate)
    tpki.revocation.revoke(second.certificate.serial_number, x509.ReasonFlags.key_compromise)
    # the first, still within its overlap, went with the current one (superseded)
    retired = tpki.stores.certificates.get_certificate(first.certificate.serial_number)
    assert retired.revocation_reason is x509.ReasonFlags.superseded
    assert tpki.devices.get("plc-24").superseded_serial is None
    for certificate in (first.certificate, second.certificate):
        with pytest.raises(AuthenticationError, match="revoked"):
            reenroll(tpki, "plc-24", certificate)
    # re-provisioning with a new token works (the reported 409 "already enrolled")
    _, third = enroll(tpki, "plc-24")
    assert tpki.devices.get("plc-24").current_serial == third.serial


def test_revoking_a_renewed_devices_current_certificate_removes_it_from_the_mosquitto_acl(tpki, tmp_path):
    """Its superseded certificate was still valid for the overlap, so the device stayed in the ACL."""
    from otward.core.mosquitto import MqttDevice
    from otward.services.channels import Channels

    _, first = enroll(tpki, "plc-25")
    second = reenroll(tpki, "plc-25", first.certificate)
    channels = Channels.for_pki(tpki)
    out = tmp_path / "mqtt"
    owner = tpki.devices.get("plc-25").owner
    assert MqttDevice(owner, "plc-25") in channels.write_mosquitto(out, device_cas=["issuing"]).devices
    tpki.revocation.revoke(second.certificate.serial_number, x509.ReasonFlags.key_compromise)
    assert MqttDevice(owner, "plc-25") not in channels.refresh_mosquitto(out).devices
    crl = x509.load_der_x509_crl(tpki.stores.crls.get_crl("issuing").der)
    for certificate in (first.certificate, second.certificate):
        assert crl.get_revoked_certificate_by_serial_number(certificate.serial_number) is not None
    revoked = [e for e in events(tpki, EventType.CERT_REVOKED) if e.subject == first.serial]
    assert [(e.reason, e.details["with"]) for e in revoked] == [("superseded", second.serial)]

    # an older certificate revoked alone leaves the current one alone
    _, fresh = enroll(tpki, "plc-26")
    newer = reenroll(tpki, "plc-26", fresh.certificate)
    tpki.revocation.revoke(fresh.certificate.serial_number, x509.ReasonFlags.superseded)
    assert tpki.stores.certificates.get_certificate(newer.certificate.serial_number).revoked_at is None


# --- RFC 7030 section 4.2.2: a re-enrollment keeps the names (issue #12 item 2) ----------------


def _san(certificate: x509.Certificate) -> set[str]:
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(name.value) for name in san}


def test_reenrollment_keeps_subject_and_san_as_rfc_7030_says(tpki):
    key = make_key()
    first = tpki.est.enroll(
        x509.load_pem_x509_csr(build_csr(key, cn="plc-30", dns=("plc-30.line2.example",))).public_bytes(
            Encoding.DER
        ),
        tpki.enrollment_tokens.create("acme")[1],
        label=None,
        actor=DEVICE,
    )
    names = {"plc-30.line2.example", "urn:otward:device:acme:plc-30"}
    assert _san(first.certificate) == names

    def renew(current: x509.Certificate, csr: bytes):  # type: ignore[no-untyped-def]
        der = x509.load_pem_x509_csr(csr).public_bytes(Encoding.DER) if csr.startswith(b"-") else csr
        return tpki.est.reenroll(der, current.public_bytes(Encoding.DER), label=None, actor=DEVICE)

    # the same subject and SAN, otward's own device URI included: renewed (was refused, san-type)
    same = renew(
        first.certificate,
        build_csr(
            make_key(), cn="plc-30", dns=("plc-30.line2.example",), uris=("urn:otward:device:acme:plc-30",)
        ),
    )
    assert _san(same.certificate) == names
    # no SAN: the renewed certificate's SAN
    bare = renew(same.certificate, build_csr(make_key(), cn="plc-30"))
    assert _san(bare.certificate) == names
    # another SAN: refused (it was accepted silently), and nothing was issued
    moved_key = make_key()
    moved = build_csr(moved_key, cn="plc-30", dns=("plc-30.line3.example",))
    with pytest.raises(PolicyViolationError, match="ChangeSubjectName") as refused:
        renew(bare.certificate, moved)
    assert refused.value.rule == "est-san"
    assert tpki.devices.get("plc-30").current_serial == bare.serial
    assert any(e.details.get("rule") == "est-san" for e in events(tpki, EventType.CERT_REFUSED))
    # ... unless the CSR carries ChangeSubjectName: the device profile lets DNS and IP names change
    asked = with_change_subject_name(moved, moved_key, subject_alt=("plc-30.line3.example",))
    changed = renew(bare.certificate, asked)
    assert _san(changed.certificate) == {"plc-30.line3.example", "urn:otward:device:acme:plc-30"}
    # another device's URI never passes, with or without the attribute
    other_key = make_key()
    foreign = build_csr(other_key, cn="plc-30", uris=("urn:otward:device:acme:plc-31",))
    for csr in (foreign, with_change_subject_name(foreign, other_key, subject_alt=("plc-30.line3.example",))):
        with pytest.raises(PolicyViolationError) as foreign_refused:
            renew(changed.certificate, csr)
        assert foreign_refused.value.rule == "est-san"


# --- concurrent first enrollments (security review, issue #11 item 6) ---------------------------


def test_concurrent_enrollments_of_one_new_device_yield_exactly_one_certificate(tpki):
    """Eight enrollments of one new device id land in one group commit (they queue behind a commit
    held open): exactly one wins, the others are refused, on SQLite and PostgreSQL."""
    import threading
    import time

    from sqlalchemy import update

    from otward.adapters.db.schema import ledger_state

    _, token = tpki.enrollment_tokens.create("acme", uses=8)
    csrs = [der_csr(make_key(), "plc-race") for _ in range(8)]
    group_commit = tpki.stores.certificates._group_commit
    held, release = threading.Event(), threading.Event()
    outcomes: list[object] = []

    def hold_the_ledger() -> None:  # the ledger row lock every group commit takes first
        with tpki.stores.database.transaction() as conn:
            conn.execute(update(ledger_state).values(log_size=ledger_state.c.log_size))
            held.set()
            release.wait(30)

    def enroll_one(csr: bytes) -> None:
        try:
            outcomes.append(tpki.est.enroll(csr, token, label=None, actor=DEVICE))
        except ConflictError as exc:
            outcomes.append(exc)

    holder = threading.Thread(target=hold_the_ledger)
    holder.start()
    assert held.wait(10)
    leader = threading.Thread(
        target=tpki.issuance.issue,
        args=(build_csr(make_key(), cn="op-lead"),),
        kwargs={"profile": "tls-client"},
    )
    leader.start()  # leads a group of its own and waits for the ledger

    def until(condition) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + 30
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert condition()

    until(lambda: group_commit._leading and not group_commit._queue)
    threads = [threading.Thread(target=enroll_one, args=(csr,)) for csr in csrs]
    for thread in threads:
        thread.start()
    until(lambda: len(group_commit._queue) == len(csrs))  # all eight wait for the next group
    release.set()
    for thread in (holder, leader, *threads):
        thread.join()
    issued = [o for o in outcomes if not isinstance(o, ConflictError)]
    assert len(outcomes) == 8
    assert len(issued) == 1, outcomes
    assert tpki.devices.get("plc-race").current_serial == issued[0].serial
    unrevoked = [c for c in tpki.devices.certificates("plc-race") if c.revoked_at is None]
    assert [c.serial for c in unrevoked] == [issued[0].serial]


# --- refused EST input is audited once the token authenticates (issue 11, items 14 and 15) --------


def _b64(der: bytes) -> bytes:
    return base64.encodebytes(der)


ENROLL_INPUT_REFUSALS = [
    pytest.param(lambda: b"%%% not base64 %%%", "application/pkcs10", 400, "est-base64", id="bad-base64"),
    pytest.param(
        lambda: build_csr(make_key(), cn="plc-20"), "application/pkcs10", 400, "est-base64", id="pem"
    ),
    pytest.param(lambda: b"A" * (64 * 1024 + 4), "application/pkcs10", 413, "body-size", id="oversized"),
    pytest.param(
        lambda: _b64(b"\x30\x03\x02\x01\x01"), "application/pkcs10", 400, "csr-format", id="garbage"
    ),
    pytest.param(
        lambda: _b64(der_csr(make_key(), "plc-21")), "text/plain", 400, "est-media", id="media-type"
    ),
    pytest.param(
        lambda: _b64(hostile_csr(rdns=[attribute(OID_O, "ACME")])),
        "application/pkcs10",
        400,
        "device-id",
        id="no-cn",
    ),
    pytest.param(
        lambda: _b64(hostile_csr(rdns=[attribute(OID_CN, "plc-22"), attribute(OID_CN, "plc-23")])),
        "application/pkcs10",
        400,
        "device-id",
        id="two-cns",
    ),
    pytest.param(
        lambda: _b64(der_csr(make_key(), "plc 24")),
        "application/pkcs10",
        400,
        "device-id",
        id="bad-device-id",
    ),
    pytest.param(
        lambda: _b64(hostile_csr(rdns=[attribute(OID_CN, "plc-25", OCTET_STRING)])),
        "application/pkcs10",
        422,
        "subject-string-type",
        id="cn-octet-string",
    ),
    pytest.param(
        lambda: _b64(hostile_csr(rdns=[attribute(OID_CN, "plc-26", TELETEX_STRING)])),
        "application/pkcs10",
        422,
        "subject-string-type",
        id="cn-teletexstring",
    ),
]


def _refusals(pki: Pki) -> list:
    return events(pki, EventType.ENROLL_REFUSED)


@pytest.mark.parametrize("operation", ["simpleenroll", "serverkeygen"])
@pytest.mark.parametrize(("body", "media", "status", "rule"), ENROLL_INPUT_REFUSALS)
def test_refused_enrollment_input_is_audited_with_its_rule(
    client, tpki, operation, body, media, status, rule
):
    if operation == "serverkeygen":
        tpki.owners.update("acme", allow_server_keygen=True)
    record, token = tpki.enrollment_tokens.create("acme")
    before = len(_refusals(tpki))
    response = client.post(
        f"/.well-known/est/{operation}",
        content=body(),
        headers={"Content-Type": media, "Authorization": f"Bearer {token}"},
    )
    expected = 403 if status == 422 else status  # EST answers a policy refusal as 403
    assert response.status_code == expected, response.text
    assert est_refusal(response.text)[1] == rule
    new = _refusals(tpki)[before:]
    assert len(new) == 1, new
    assert new[0].details["rule"] == rule
    assert new[0].outcome is Outcome.FAILURE
    assert tpki.stores.enrollment_tokens.get_enrollment_token(record.token_id).uses == 0  # nothing spent

    # the same request without a valid token: refused for the form of its body (size, media type,
    # base64) or, once the body is read, for the token before the CSR is looked at; no enroll.refused
    before = len(_refusals(tpki))
    for headers in ({}, {"Authorization": "Bearer otwe_0123456789abcdef_" + "x" * 43}):
        response = client.post(
            f"/.well-known/est/{operation}", content=body(), headers={"Content-Type": media, **headers}
        )
        assert response.status_code in (expected, 401), response.text
    # a bad token is recorded as such (auth failure), never as a refusal of the input it carried
    assert [e for e in _refusals(tpki)[before:] if e.details.get("rule") == rule] == []


# --- an enrollment the client could not finish (issue #12 item 3) -------------------------------


def _retries(pki: Pki) -> list:
    return [e for e in events(pki, EventType.ENROLL_SUCCEEDED) if e.details.get("method") == "retry"]


def test_the_same_enrollment_again_gets_the_same_certificate_and_spends_no_use(tpki, clock):
    """A client that failed after the server issued (a lost answer, a chain it could not check)
    repeats its request: it was 401 (the token spent) and the device was stranded."""
    record, token = tpki.enrollment_tokens.create("acme")  # single use
    key = make_key()
    csr = der_csr(key, "plc-40")
    first = tpki.est.enroll(csr, token, label=None, actor=DEVICE)
    again = tpki.est.enroll(csr, token, label=None, actor=DEVICE)
    assert again.serial == first.serial
    assert again.chain == first.chain
    assert tpki.stores.enrollment_tokens.get_enrollment_token(record.token_id).uses == 1
    assert [c.serial for c in tpki.devices.certificates("plc-40")] == [first.serial]
    (retry,) = _retries(tpki)
    assert (retry.subject, retry.details["serial"], retry.details["token"]) == (
        "plc-40",
        first.serial,
        record.token_id,
    )
    # a new CSR for the same key is the same request (the key is what must be the same)
    assert tpki.est.enroll(der_csr(key, "plc-40"), token, label=None, actor=DEVICE).serial == first.serial
    # another key with the spent token: refused as before, and counted as a failed authentication
    with pytest.raises(AuthenticationError):
        tpki.est.enroll(der_csr(make_key(), "plc-40"), token, label=None, actor=DEVICE)
    # the window is ten minutes from issuance
    clock.advance(timedelta(minutes=10, seconds=1))
    with pytest.raises(AuthenticationError):
        tpki.est.enroll(csr, token, label=None, actor=DEVICE)
    assert len(_retries(tpki)) == 2


def test_a_repeat_with_a_token_of_several_uses_and_what_ends_the_repeats(tpki):
    _, token = tpki.enrollment_tokens.create("acme", uses=5)
    key = make_key()
    first = tpki.est.enroll(der_csr(key, "plc-41"), token, label=None, actor=DEVICE)
    assert tpki.est.enroll(der_csr(key, "plc-41"), token, label=None, actor=DEVICE).serial == first.serial
    with pytest.raises(ConflictError, match="already enrolled"):  # another key: a takeover, as before
        tpki.est.enroll(der_csr(make_key(), "plc-41"), token, label=None, actor=DEVICE)
    # another token of the owner, with the same key, repeats nothing either
    _, other = tpki.enrollment_tokens.create("acme")
    with pytest.raises(ConflictError, match="already enrolled"):
        tpki.est.enroll(der_csr(key, "plc-41"), other, label=None, actor=DEVICE)
    # once the device used its certificate (an attestation), the request is not repeated any more
    challenge, signature = answer(tpki, "plc-41", key, ChallengePurpose.ATTEST)
    tpki.devices.attest("plc-41", challenge.challenge_id, signature, DEVICE)
    with pytest.raises(ConflictError, match="already enrolled"):
        tpki.est.enroll(der_csr(key, "plc-41"), token, label=None, actor=DEVICE)
    # nor after a renewal, nor for a revoked token
    _, renewed_from = tpki.enrollment_tokens.create("acme", uses=3)
    key = make_key()
    second = tpki.est.enroll(der_csr(key, "plc-42"), renewed_from, label=None, actor=DEVICE)
    reenroll(tpki, "plc-42", second.certificate)
    with pytest.raises(ConflictError, match="already enrolled"):
        tpki.est.enroll(der_csr(key, "plc-42"), renewed_from, label=None, actor=DEVICE)
    revoked, spent = tpki.enrollment_tokens.create("acme")
    key = make_key()
    tpki.est.enroll(der_csr(key, "plc-43"), spent, label=None, actor=DEVICE)
    tpki.enrollment_tokens.revoke(revoked.token_id)
    with pytest.raises(AuthenticationError):
        tpki.est.enroll(der_csr(key, "plc-43"), spent, label=None, actor=DEVICE)
    assert len(_retries(tpki)) == 1


def _queued_together(pki: Pki, calls: list) -> list[object]:  # type: ignore[type-arg]
    """Run ``calls`` so that they queue for one group commit behind a held one (as requests do that
    reach the store together), and return what each returned or raised."""
    import threading
    import time

    from sqlalchemy import update

    from otward.adapters.db.schema import ledger_state

    group_commit = pki.stores.certificates._group_commit
    held, release = threading.Event(), threading.Event()
    outcomes: list[object] = []

    def hold_the_ledger() -> None:  # the ledger row lock every group commit takes first
        with pki.stores.database.transaction() as conn:
            conn.execute(update(ledger_state).values(log_size=ledger_state.c.log_size))
            held.set()
            release.wait(30)

    def one(call) -> None:  # type: ignore[no-untyped-def]
        try:
            outcomes.append(call())
        except (AuthenticationError, ConflictError) as exc:
            outcomes.append(exc)

    def until(condition) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + 30
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert condition()

    holder = threading.Thread(target=hold_the_ledger)
    holder.start()
    assert held.wait(10)
    leader = threading.Thread(
        target=pki.issuance.issue,
        args=(build_csr(make_key(), cn="op-lead-2"),),
        kwargs={"profile": "tls-client"},
    )
    leader.start()  # leads a group of its own and waits for the ledger
    until(lambda: group_commit._leading and not group_commit._queue)
    threads = [threading.Thread(target=one, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    until(lambda: len(group_commit._queue) == len(calls))
    release.set()
    for thread in (holder, leader, *threads):
        thread.join()
    return outcomes


def test_a_repeat_racing_the_first_request_gets_the_certificate_the_first_made(tpki):
    """The client gave up waiting and asked again while the first request was still being stored:
    four identical requests reach the store together; one certificate is issued, one use spent,
    and every request gets that certificate (SQLite and PostgreSQL)."""
    record, token = tpki.enrollment_tokens.create("acme")
    csr = der_csr(make_key(), "plc-44")
    outcomes = _queued_together(tpki, [lambda: tpki.est.enroll(csr, token, label=None, actor=DEVICE)] * 4)
    assert len(outcomes) == 4
    assert {getattr(o, "serial", o) for o in outcomes} == {tpki.devices.get("plc-44").current_serial}
    assert len(tpki.devices.certificates("plc-44")) == 1
    assert tpki.stores.enrollment_tokens.get_enrollment_token(record.token_id).uses == 1
    assert len(_retries(tpki)) == 3
    assert not [e for e in events(tpki, EventType.ENROLL_REFUSED) if e.subject == "plc-44"]


def test_of_two_server_keygen_retries_at_once_one_replaces_the_lost_certificate(tpki):
    tpki.owners.update("acme", allow_server_keygen=True)
    _, token = tpki.enrollment_tokens.create("acme")
    csr = der_csr(make_key(), "meter-41")
    first = tpki.est.server_keygen(csr, token, label=None, actor=DEVICE)
    outcomes = _queued_together(
        tpki, [lambda: tpki.est.server_keygen(csr, token, label=None, actor=DEVICE)] * 2
    )
    made = [o for o in outcomes if not isinstance(o, ConflictError)]
    assert len(made) == 1, outcomes
    assert [o.rule for o in outcomes if isinstance(o, ConflictError)] == ["enroll-retry"]
    unrevoked = [c.serial for c in tpki.devices.certificates("meter-41") if c.revoked_at is None]
    assert unrevoked == [made[0].issued.serial] == [tpki.devices.get("meter-41").current_serial]
    assert first.issued.serial not in unrevoked


def test_server_keygen_again_makes_a_new_key_and_revokes_the_lost_one(tpki, clock):
    tpki.owners.update("acme", allow_server_keygen=True)
    record, token = tpki.enrollment_tokens.create("acme")
    request_key = make_key()
    csr = der_csr(request_key, "meter-40")
    first = tpki.est.server_keygen(csr, token, label=None, actor=DEVICE)
    again = tpki.est.server_keygen(csr, token, label=None, actor=DEVICE)
    # never the old private key again: a new key and certificate, and the lost one is revoked
    assert again.issued.serial != first.issued.serial
    assert again.issued.certificate.public_key() == again.private_key.public_key()
    assert again.private_key.public_key() != first.private_key.public_key()
    lost = tpki.stores.certificates.get_certificate(first.issued.certificate.serial_number)
    assert lost.revocation_reason is x509.ReasonFlags.superseded
    assert tpki.devices.get("meter-40").current_serial == again.issued.serial
    assert tpki.stores.enrollment_tokens.get_enrollment_token(record.token_id).uses == 1
    kinds = [
        e.details.get("method") for e in events(tpki, EventType.ENROLL_SUCCEEDED) if e.subject == "meter-40"
    ]
    assert kinds == ["token", "retry-serverkeygen"]
    # only the key that signed the first request repeats it; a plain enrollment repeats nothing
    with pytest.raises(AuthenticationError):
        tpki.est.server_keygen(der_csr(make_key(), "meter-40"), token, label=None, actor=DEVICE)
    with pytest.raises(AuthenticationError):
        tpki.est.enroll(csr, token, label=None, actor=DEVICE)
    # once the device used the key it got, nothing is repeated
    challenge, signature = answer(tpki, "meter-40", again.private_key, ChallengePurpose.ATTEST)
    tpki.devices.attest("meter-40", challenge.challenge_id, signature, DEVICE)
    with pytest.raises(AuthenticationError):
        tpki.est.server_keygen(csr, token, label=None, actor=DEVICE)
    assert tpki.devices.get("meter-40").current_serial == again.issued.serial


def test_reset_lets_the_owner_enroll_a_device_that_never_used_its_certificate(tpki):
    _, issued = enroll(tpki, "plc-45")
    revoked = tpki.devices.reset("plc-45", DEVICE)
    assert revoked.serial == issued.serial
    record = tpki.stores.certificates.get_certificate(issued.certificate.serial_number)
    assert record.revocation_reason is x509.ReasonFlags.superseded
    crl = x509.load_der_x509_crl(tpki.stores.crls.get_crl("issuing").der)
    assert crl.get_revoked_certificate_by_serial_number(issued.certificate.serial_number) is not None
    (reset,) = events(tpki, EventType.DEVICE_RESET)
    assert (reset.subject, reset.details["serial"]) == ("plc-45", issued.serial)
    assert any(e.subject == issued.serial for e in events(tpki, EventType.CERT_REVOKED))
    # the owner's new token enrolls it again; another owner's still cannot claim it
    tpki.owners.create("rival")
    with pytest.raises(ConflictError, match="another owner"):
        enroll(tpki, "plc-45", owner="rival")
    _, again = enroll(tpki, "plc-45")
    assert tpki.devices.get("plc-45").current_serial == again.serial


@pytest.mark.parametrize("used", ["renewed", "attested", "disabled", "revoked-certificate"])
def test_reset_refuses_a_device_whose_certificate_was_used(tpki, used):
    key, issued = enroll(tpki, "plc-46")
    if used == "renewed":
        reenroll(tpki, "plc-46", issued.certificate)
    elif used == "attested":
        challenge, signature = answer(tpki, "plc-46", key, ChallengePurpose.ATTEST)
        tpki.devices.attest("plc-46", challenge.challenge_id, signature, DEVICE)
    elif used == "disabled":
        tpki.devices.disable("plc-46")
    else:
        tpki.revocation.revoke(issued.certificate.serial_number, x509.ReasonFlags.key_compromise)
    current = tpki.devices.get("plc-46").current_serial
    with pytest.raises(ConflictError) as refused:
        tpki.devices.reset("plc-46", DEVICE)
    assert refused.value.rule == "device-reset"
    assert tpki.devices.get("plc-46").current_serial == current
    assert not events(tpki, EventType.DEVICE_RESET)


def test_reset_of_an_unknown_device_and_through_the_api(client, tpki):
    from otward.errors import NotFoundError

    with pytest.raises(NotFoundError):
        tpki.devices.reset("plc-none")
    enroll(tpki, "plc-47")
    response = client.post("/api/v1/devices/plc-47/reset")
    assert response.status_code == 200, response.text
    assert response.json()["certificates"][0]["status"] == "revoked"
    again = client.post("/api/v1/devices/plc-47/reset")
    assert (again.status_code, again.json()["rule"]) == (409, "device-reset")


@pytest.mark.parametrize("status", ["", "gone", "ACTIVE"])
def test_a_device_listing_refuses_a_status_it_does_not_know(client, status):
    """schemathesis (-m fuzz) found ``?status=`` answered 200 with every device: an empty status was
    taken for none, where the documented values are active, disabled and revoked."""
    answer = client.get("/api/v1/devices", params={"status": status})
    assert answer.status_code == 400
    assert answer.json()["rule"] == "device-status"
