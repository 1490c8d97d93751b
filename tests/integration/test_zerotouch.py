"""Zero-touch onboarding through the services and the CLI, on SQLite and PostgreSQL: manufacturers,
claims, enrollment by IDevID, and each refusal audited (issue 19)."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AttributeOID, NameOID
from typer.testing import CliRunner

from otward.cli.app import app
from otward.config import load_settings
from otward.core.audit import EventType, Outcome
from otward.core.idevid import public_key_sha256
from otward.core.records import DeviceStatus
from otward.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    OtwardError,
    PolicyViolationError,
)
from otward.services.audit import Actor
from otward.services.pki import Pki
from otward.services.zerotouch import ClaimEntry
from tests.conftest import Clock
from tests.factory import Manufacturer

pytestmark = pytest.mark.integration

ADMIN = Actor(component="cli", identity="cli:test", source="local")
DEVICE = Actor(component="api", identity="est", source="192.0.2.9")
TLS12 = {"tls_version": "TLSv1.2", "tls_unique": b"\x01" * 12}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def acme() -> Manufacturer:
    return Manufacturer("acme-sensors")


@pytest.fixture
def zpki(installation, database_url, clock, acme):
    instance = Pki.open(load_settings(installation, database_url=database_url), clock=clock)
    instance.owners.create("plant-a")
    instance.owners.create("plant-b")
    instance.zerotouch.add_manufacturer("acme-sensors", acme.pem(), crl_url=None, crl=None, actor=ADMIN)
    yield instance
    instance.close()


def csr(key, cn: str = "sensor-1", password: bytes | None = None) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    if password is not None:
        builder = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD, password)
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(Encoding.DER)


def refusals(pki: Pki) -> list:
    return [
        r.event
        for r in pki.stores.audit.iter_audit()
        if r.event.type is EventType.ENROLL_REFUSED and r.event.details.get("method") == "idevid"
    ]


def enroll(pki: Pki, key, idevid: x509.Certificate, request: bytes | None = None, **tls):
    return pki.zerotouch.enroll(
        request if request is not None else csr(key),
        der(idevid),
        tls_version=tls.get("tls_version", "TLSv1.3"),
        tls_unique=tls.get("tls_unique"),
        label=None,
        actor=DEVICE,
    )


def test_a_claimed_unit_enrolls_with_its_idevid_and_the_registry_records_it(zpki, acme):
    key, idevid = acme.idevid("SN-1000")
    zpki.zerotouch.claim(
        "plant-a",
        "acme-sensors",
        [ClaimEntry("SN-1000", model="TX-7", device_id="tank-7")],
        profile=None,
        actor=ADMIN,
    )
    issued = enroll(zpki, key, idevid, csr(key, "tank-7"))
    owner_ca = zpki.authorities.get(zpki.owners.issuing_ca("plant-a")).certificate
    issued.certificate.verify_directly_issued_by(owner_ca)
    uris = issued.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "urn:otward:device:plant-a:tank-7" in uris.get_values_for_type(x509.UniformResourceIdentifier)
    device = zpki.devices.get("tank-7")
    assert (device.owner, device.status, device.current_serial) == (
        "plant-a",
        DeviceStatus.ACTIVE,
        issued.record.serial,
    )
    claim = zpki.zerotouch.list_claims(owner="plant-a")[0]
    assert claim.enrolled_device_id == "tank-7"
    assert claim.ldevid_serial == issued.record.serial
    assert claim.idevid_serial == f"{idevid.serial_number:x}"
    assert claim.idevid_issuer == idevid.issuer.rfc4514_string()
    assert claim.idevid_fingerprint == idevid.fingerprint(hashes.SHA256()).hex()
    succeeded = [
        r.event for r in zpki.stores.audit.iter_audit() if r.event.type is EventType.ENROLL_SUCCEEDED
    ][-1]
    assert succeeded.details["method"] == "idevid"
    assert succeeded.details["idevid_fingerprint"] == claim.idevid_fingerprint
    assert succeeded.details["proof"] == "idevid-key"
    # the LDevID then renews as any device certificate; the IDevID never renews
    renewed = zpki.est.reenroll(csr(key, "tank-7"), der(issued.certificate), label=None, actor=DEVICE)
    assert renewed.record.device_id == "tank-7"
    with pytest.raises(AuthenticationError, match="unknown"):
        zpki.est.reenroll(csr(key, "tank-7"), der(idevid), label=None, actor=DEVICE)
    # and it does not enroll a second time
    with pytest.raises(PolicyViolationError) as exc:
        enroll(zpki, key, idevid, csr(key, "tank-7"))
    assert exc.value.rule == "idevid-enrolled"


def test_a_new_key_bound_by_tls_unique_enrolls_and_a_replay_does_not(zpki, acme):
    _, idevid = acme.idevid("SN-2000")
    zpki.zerotouch.claim("plant-a", "acme-sensors", [ClaimEntry("SN-2000")], profile=None, actor=ADMIN)
    new_key = ec.generate_private_key(ec.SECP256R1())
    bound = csr(new_key, "sensor-2000", base64.b64encode(TLS12["tls_unique"]))
    with pytest.raises(AuthenticationError) as exc:  # replayed over another TLS 1.2 session
        enroll(zpki, None, idevid, bound, tls_version="TLSv1.2", tls_unique=b"\x02" * 12)
    assert exc.value.rule == "idevid-channel-binding"
    with pytest.raises(AuthenticationError):  # over TLS 1.3, which has no tls-unique
        enroll(zpki, None, idevid, bound)
    issued = enroll(zpki, None, idevid, bound, **TLS12)
    assert issued.certificate.public_key() == new_key.public_key()
    assert [e.details["rule"] for e in refusals(zpki)] == ["idevid-channel-binding"] * 2


def refused_rule(pki: Pki, action) -> str:
    with pytest.raises(OtwardError) as exc:
        action()
    event = refusals(pki)[-1]
    assert event.outcome is Outcome.FAILURE
    assert event.details["rule"] == exc.value.rule
    return str(exc.value.rule)


def test_every_refusal_is_audited_with_its_rule(zpki, acme, clock):
    other = Manufacturer("unknown-chips")
    key, stranger = other.idevid("SN-1")
    assert refused_rule(zpki, lambda: enroll(zpki, key, stranger)) == "idevid-manufacturer"

    key, unclaimed = acme.idevid("SN-3000")
    assert refused_rule(zpki, lambda: enroll(zpki, key, unclaimed)) == "idevid-unclaimed"

    key, expired = acme.idevid(
        "SN-3001", valid_from=clock.now - timedelta(days=10), valid_for=timedelta(days=5)
    )
    zpki.zerotouch.claim("plant-a", "acme-sensors", [ClaimEntry("SN-3001")], profile=None, actor=ADMIN)
    assert refused_rule(zpki, lambda: enroll(zpki, key, expired)) == "idevid-expired"

    key, delivered = acme.idevid("SN-3002")
    zpki.zerotouch.claim(
        "plant-a",
        "acme-sensors",
        [ClaimEntry("SN-3002", public_key_sha256="ab" * 32)],
        profile=None,
        actor=ADMIN,
    )
    assert refused_rule(zpki, lambda: enroll(zpki, key, delivered)) == "idevid-public-key"

    key, revoked = acme.idevid("SN-3003")
    zpki.zerotouch.claim("plant-a", "acme-sensors", [ClaimEntry("SN-3003")], profile=None, actor=ADMIN)
    zpki.zerotouch.update_crl("acme-sensors", acme.crl((revoked,)), actor=ADMIN)
    assert refused_rule(zpki, lambda: enroll(zpki, key, revoked)) == "idevid-revoked"


def test_the_voucher_hash_admits_the_delivered_unit(zpki, acme):
    key, idevid = acme.idevid("SN-4000")
    expected = public_key_sha256(key.public_key())
    zpki.zerotouch.claim(
        "plant-b",
        "acme-sensors",
        [ClaimEntry("SN-4000", public_key_sha256=expected)],
        profile=None,
        actor=ADMIN,
    )
    assert enroll(zpki, key, idevid, csr(key, "sensor-4000")).record.device_id == "sensor-4000"
    assert zpki.devices.get("sensor-4000").owner == "plant-b"


def test_a_unit_claimed_by_one_owner_needs_its_release_before_another_claims_it(zpki, acme):
    zpki.zerotouch.claim("plant-a", "acme-sensors", [ClaimEntry("SN-5000")], profile=None, actor=ADMIN)
    with pytest.raises(ConflictError) as exc:
        zpki.zerotouch.claim(
            "plant-b",
            "acme-sensors",
            [ClaimEntry("SN-5001"), ClaimEntry("SN-5000")],
            profile=None,
            actor=ADMIN,
        )
    assert exc.value.rule == "claim-owned"
    assert [c.serial for c in zpki.zerotouch.list_claims(owner="plant-b")] == []  # all or none
    failed = [r.event for r in zpki.stores.audit.iter_audit() if r.event.type is EventType.DEVICE_CLAIMED][-1]
    assert failed.outcome is Outcome.FAILURE
    assert failed.details["rule"] == "claim-owned"
    with pytest.raises(NotFoundError):  # plant-b cannot release plant-a's claim
        zpki.zerotouch.release("plant-b", "acme-sensors", ["SN-5000"], actor=ADMIN)
    zpki.zerotouch.release("plant-a", "acme-sensors", ["SN-5000"], actor=ADMIN)
    zpki.zerotouch.claim("plant-b", "acme-sensors", [ClaimEntry("SN-5000")], profile=None, actor=ADMIN)
    assert zpki.zerotouch.list_claims(manufacturer="acme-sensors")[0].owner == "plant-b"
    kinds = [r.event.type for r in zpki.stores.audit.iter_audit()]
    assert EventType.DEVICE_RELEASED in kinds


def test_two_manufacturers_serials_do_not_collide(zpki, acme):
    other = Manufacturer("other-chips")
    zpki.zerotouch.add_manufacturer("other-chips", other.pem(), crl_url=None, crl=None, actor=ADMIN)
    zpki.zerotouch.claim("plant-a", "acme-sensors", [ClaimEntry("0001")], profile=None, actor=ADMIN)
    zpki.zerotouch.claim("plant-b", "other-chips", [ClaimEntry("0001")], profile=None, actor=ADMIN)
    key, idevid = other.idevid("0001")
    assert enroll(zpki, key, idevid, csr(key, "chip-0001")).record.device_id == "chip-0001"
    assert zpki.devices.get("chip-0001").owner == "plant-b"


def test_a_removed_manufacturer_is_refused_at_once(zpki, acme):
    key, idevid = acme.idevid("SN-6000")
    zpki.zerotouch.claim("plant-a", "acme-sensors", [ClaimEntry("SN-6000")], profile=None, actor=ADMIN)
    with pytest.raises(ConflictError):  # still claimed
        zpki.zerotouch.remove_manufacturer("acme-sensors", actor=ADMIN)
    zpki.zerotouch.release("plant-a", "acme-sensors", ["SN-6000"], actor=ADMIN)
    zpki.zerotouch.remove_manufacturer("acme-sensors", actor=ADMIN)
    assert refused_rule(zpki, lambda: enroll(zpki, key, idevid)) == "idevid-manufacturer"


def test_otwards_own_ca_cannot_be_registered_as_a_manufacturer(zpki):
    own = zpki.authorities.get("issuing").certificate.public_bytes(Encoding.PEM)
    with pytest.raises(PolicyViolationError, match="otward's CA"):
        zpki.zerotouch.add_manufacturer("sneaky", own, crl_url=None, crl=None, actor=ADMIN)
    assert zpki.zerotouch.is_otward_issued(der(zpki.authorities.get("issuing").certificate)) is True


def test_a_manufacturer_crl_must_be_its_own_and_never_goes_back(zpki, acme):
    other = Manufacturer("other-chips")
    with pytest.raises(PolicyViolationError):
        zpki.zerotouch.update_crl("acme-sensors", other.crl(), actor=ADMIN)
    newer = acme.crl()
    older = acme.crl(next_update=timedelta(hours=1))  # lastUpdate a day before "newer"'s
    zpki.zerotouch.update_crl("acme-sensors", newer, actor=ADMIN)
    with pytest.raises(PolicyViolationError, match="never goes back"):
        zpki.zerotouch.update_crl("acme-sensors", older, actor=ADMIN)


runner = CliRunner()


def cli(data, *args: str, code: int = 0) -> str:
    result = runner.invoke(app, [*args, "--data", str(data)])
    assert result.exit_code == code, result.output
    return result.output


def test_the_cli_registers_claims_from_a_delivery_note_and_lists_them(sqlite_pki, data_dir, tmp_path, acme):
    ca_file = acme.write(tmp_path)
    crl_file = tmp_path / "acme.crl"
    crl_file.write_bytes(acme.crl())
    sqlite_pki.owners.create("plant-a")
    sqlite_pki.owners.create("plant-b")
    assert "added manufacturer acme-sensors" in cli(
        data_dir, "manufacturer", "add", "acme-sensors", "--ca", str(ca_file), "--crl", str(crl_file)
    )
    listed = json.loads(cli(data_dir, "manufacturer", "list", "--json"))
    assert listed[0]["name"] == "acme-sensors"
    assert listed[0]["crl"] is True
    key, _ = acme.idevid("SN-2")
    note = tmp_path / "delivery.csv"
    note.write_text(
        "serial,model,public_key_sha256,device_id\n"
        "SN-1,TX-7,,\n"
        f"SN-2,TX-7,{public_key_sha256(key.public_key())},tank-2\n"
    )
    assert "claimed 2 devices" in cli(
        data_dir,
        "device",
        "claim",
        "--owner",
        "plant-a",
        "--manufacturer",
        "acme-sensors",
        "--csv",
        str(note),
    )
    claims = json.loads(cli(data_dir, "device", "claims", "--json"))
    assert [(c["serial"], c["model"], c["device_id"]) for c in claims] == [
        ("SN-1", "TX-7", None),
        ("SN-2", "TX-7", "tank-2"),
    ]
    out = cli(
        data_dir,
        "device",
        "claim",
        "--owner",
        "plant-b",
        "--manufacturer",
        "acme-sensors",
        "--serial",
        "SN-1",
        code=1,
    )
    assert "claimed by another owner" in out
    cli(
        data_dir,
        "device",
        "release",
        "--owner",
        "plant-a",
        "--manufacturer",
        "acme-sensors",
        "--serial",
        "SN-1",
    )
    cli(
        data_dir,
        "device",
        "claim",
        "--owner",
        "plant-b",
        "--manufacturer",
        "acme-sensors",
        "--serial",
        "SN-1",
        "--device-id",
        "pump-1",
    )
    out = cli(data_dir, "manufacturer", "remove", "acme-sensors", code=1)
    assert "release them first" in out
    types = {r.event.type for r in sqlite_pki.stores.audit.iter_audit()}
    assert {EventType.MANUFACTURER_ADDED, EventType.DEVICE_CLAIMED, EventType.DEVICE_RELEASED} <= types


def test_an_enrollment_refused_at_issuance_leaves_the_claim_free_for_the_next_attempt(zpki, acme):
    key, idevid = acme.idevid("SN-7000")
    zpki.zerotouch.claim("plant-a", "acme-sensors", [ClaimEntry("SN-7000")], profile=None, actor=ADMIN)
    with pytest.raises(PolicyViolationError) as exc:  # a CA label that is not the owner's
        zpki.zerotouch.enroll(
            csr(key, "sensor-7000"),
            der(idevid),
            tls_version="TLSv1.3",
            tls_unique=None,
            label="root",
            actor=DEVICE,
        )
    assert exc.value.rule == "est-label"
    assert zpki.zerotouch.list_claims(owner="plant-a")[0].enrolled_at is None
    assert enroll(zpki, key, idevid, csr(key, "sensor-7000")).record.device_id == "sensor-7000"


@pytest.fixture
def crl_server():
    """A plain HTTP server on loopback publishing whatever ``served["crl"]`` holds."""
    import http.server
    import threading

    served: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = served.get("crl", b"")
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/idevid.crl", served
    finally:
        server.shutdown()
        server.server_close()


def test_a_crl_url_is_fetched_at_once_and_again_when_due(zpki, crl_server, clock):
    url, served = crl_server
    maker = Manufacturer("url-chips")
    served["crl"] = maker.crl(next_update=timedelta(hours=2))
    record = zpki.zerotouch.add_manufacturer("url-chips", maker.pem(), crl_url=url, crl=None, actor=ADMIN)
    assert record.crl_required
    assert record.crl is not None
    key, revoked = maker.idevid("U-1")
    zpki.zerotouch.claim("plant-a", "url-chips", [ClaimEntry("U-1")], profile=None, actor=ADMIN)
    assert zpki.zerotouch.refresh_crls(ADMIN) == []  # not due: next update in two hours
    served["crl"] = maker.crl((revoked,))  # the manufacturer revokes the unit
    clock.advance(timedelta(hours=1, minutes=30))  # within an hour of the next update: fetched again
    assert zpki.zerotouch.refresh_crls(ADMIN) == ["url-chips"]
    assert refused_rule(zpki, lambda: enroll(zpki, key, revoked)) == "idevid-revoked"
    served.clear()  # the URL fails: the CRL stays; once past its next update, enrollment fails closed
    clock.advance(timedelta(days=8))
    with pytest.raises(OtwardError):
        zpki.zerotouch.refresh_crls(ADMIN)
    _, other = maker.idevid("U-2", valid_from=clock.now - timedelta(hours=1))
    zpki.zerotouch.claim("plant-a", "url-chips", [ClaimEntry("U-2")], profile=None, actor=ADMIN)
    assert refused_rule(zpki, lambda: enroll(zpki, key, other)) == "idevid-crl"


def test_no_other_verifier_is_given_a_manufacturer_ca(sqlite_pki, data_dir, tmp_path, acme):
    """The Mosquitto listener's CA file and the OPC UA trust list hold otward's CAs only: an IDevID
    authenticates nothing but its first enrollment (docs/identity.md)."""
    cli(data_dir, "manufacturer", "add", "acme-sensors", "--ca", str(acme.write(tmp_path)))
    mqtt, opcua = tmp_path / "mqtt", tmp_path / "opcua"
    cli(data_dir, "mqtt-config", "--out", str(mqtt))
    cli(data_dir, "opcua", "trustlist", "--out", str(opcua))
    written = [p for p in [*mqtt.rglob("*"), *opcua.rglob("*")] if p.is_file()]
    assert written
    fingerprint = acme.certificate.fingerprint(hashes.SHA256())
    der = acme.certificate.public_bytes(Encoding.DER)
    for path in written:
        content = path.read_bytes()
        assert der not in content, path
        if b"BEGIN CERTIFICATE" in content:
            found = x509.load_pem_x509_certificates(content)
            assert fingerprint not in [c.fingerprint(hashes.SHA256()) for c in found], path
