"""A CA's life after ``init``: renewal, rollover, revocation by name, expiry warnings, and CAs
signed outside otward, through the services on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import ReasonFlags, ocsp

from otward.config import load_settings
from otward.core.audit import AuditFilter, EventType, Outcome
from otward.core.chain import find_path
from otward.core.keys import KeyType
from otward.errors import ConflictError, InvalidRequestError, PolicyViolationError
from otward.services.channels import Channels
from otward.services.pki import Pki
from tests.conftest import Clock, build_csr, make_key, ocsp_request_der

pytestmark = pytest.mark.integration


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def lifecycle_pki(installation: Path, database_url: str | None, clock: Clock) -> Iterator[Pki]:
    instance = Pki.open(load_settings(installation, database_url=database_url), clock=clock)
    yield instance
    instance.close()


def _spki(certificate: x509.Certificate) -> bytes:
    return certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _issue(pki: Pki, cn: str, ca: str | None = None) -> x509.Certificate:
    return pki.issuance.issue(build_csr(make_key(), cn=cn), profile="tls-client", ca=ca).certificate


def _events(pki: Pki, event: EventType) -> list:  # type: ignore[type-arg]
    records, _ = pki.stores.audit.list_audit(AuditFilter(type=event.value), limit=100, offset=0)
    return [r.event for r in records]


def _ocsp_status(pki: Pki, issuer: x509.Certificate, serial: int) -> ocsp.OCSPCertStatus:
    response = ocsp.load_der_ocsp_response(pki.ocsp.respond(ocsp_request_der(issuer, serial)).der)
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    return response.certificate_status


def _on_crl(pki: Pki, ca: str, serial: int) -> bool:
    crl = x509.load_der_x509_crl(pki.revocation.current_crl(ca).der)
    return crl.get_revoked_certificate_by_serial_number(serial) is not None


# --- renewal ------------------------------------------------------------------------------------


def test_renewal_keeps_key_and_subject_and_what_the_ca_issued_stays_valid(lifecycle_pki):
    pki = lifecycle_pki
    before = pki.authorities.get("issuing").certificate
    leaf = _issue(pki, "op-1")
    renewed = pki.authorities.renew("issuing").certificate
    assert renewed.serial_number != before.serial_number
    assert renewed.subject == before.subject
    assert _spki(renewed) == _spki(before)
    assert renewed.not_valid_after_utc >= before.not_valid_after_utc
    leaf.verify_directly_issued_by(renewed)  # the old leaf verifies under the new certificate
    renewed.verify_directly_issued_by(pki.authorities.get("root").certificate)
    assert pki.stores.certificates.get_certificate(renewed.serial_number).profile == "sub-ca"
    assert [e.subject for e in _events(pki, EventType.CA_RENEWED)] == ["issuing"]
    # issuance goes on, and a new leaf carries the same issuer
    assert _issue(pki, "op-2").issuer == before.subject


def test_a_root_renews_by_signing_itself_again(lifecycle_pki):
    pki = lifecycle_pki
    before = pki.authorities.get("root").certificate
    renewed = pki.authorities.renew("root").certificate
    assert renewed.issuer == renewed.subject == before.subject
    assert _spki(renewed) == _spki(before)
    assert renewed.serial_number != before.serial_number
    renewed.verify_directly_issued_by(renewed)
    pki.authorities.get("issuing").certificate.verify_directly_issued_by(renewed)


# --- rollover -----------------------------------------------------------------------------------


def test_rollover_of_the_issuing_ca_new_issuance_uses_the_new_generation(lifecycle_pki, tmp_path):
    pki = lifecycle_pki
    old = pki.authorities.get("issuing").certificate
    old_leaf = _issue(pki, "op-old")
    new, links = pki.authorities.rollover("issuing")
    assert links == ()  # only a root's rollover has link certificates
    assert new.name == "issuing-g2"
    assert _spki(new.certificate) != _spki(old)
    assert new.certificate.subject.rfc4514_string() == "CN=ACME Chemicals issuing CA G2,O=ACME Chemicals"
    assert pki.authorities.current_name("issuing") == "issuing-g2"
    assert pki.authorities.generations("issuing") == ["issuing-g2", "issuing"]
    pki.revocation.publish_crl("issuing-g2")

    new_leaf = pki.issuance.issue(build_csr(make_key(), cn="op-new"), profile="tls-client")
    assert new_leaf.record.ca == "issuing-g2"
    assert new_leaf.certificate.issuer == new.certificate.subject
    # the old generation keeps answering OCSP and signing its CRL for what it issued
    assert _ocsp_status(pki, old, old_leaf.serial_number) is ocsp.OCSPCertStatus.GOOD
    pki.revocation.revoke(old_leaf.serial_number, ReasonFlags.key_compromise)
    assert _on_crl(pki, "issuing", old_leaf.serial_number)
    assert _ocsp_status(pki, old, old_leaf.serial_number) is ocsp.OCSPCertStatus.REVOKED
    assert _ocsp_status(pki, new.certificate, new_leaf.certificate.serial_number) is ocsp.OCSPCertStatus.GOOD
    # EST /cacerts and the Mosquitto files carry both generations during the overlap
    cacerts = pki.est.ca_certificates(None)
    assert cacerts[0] == new.certificate
    assert old in cacerts
    out = tmp_path / "mqtt"
    Channels.for_pki(pki).write_mosquitto(out, device_cas=["issuing"], server_ca="issuing")
    cafile = x509.load_pem_x509_certificates((out / "ca.pem").read_bytes())
    assert old in cafile
    assert new.certificate in cafile
    crls = (out / "crl.pem").read_bytes().count(b"BEGIN X509 CRL")
    assert crls == 3  # issuing, issuing-g2, root
    event = _events(pki, EventType.CA_ROLLED_OVER)[0]
    assert event.subject == "issuing"
    assert event.details["successor"] == "issuing-g2"
    # one successor per generation; the next rollover makes g3
    with pytest.raises(PolicyViolationError, match="rolled over to 'issuing-g2' already"):
        pki.authorities.rollover("issuing")
    assert pki.authorities.rollover("issuing-g2")[0].name == "issuing-g3"


def test_root_rollover_produces_link_certificates_both_ways(lifecycle_pki):
    pki = lifecycle_pki
    old_root = pki.authorities.get("root").certificate
    new_root, (old_with_new, new_with_old) = pki.authorities.rollover("root")
    assert new_root.name == "root-g2"
    assert new_root.is_root
    # OldWithNew: the new key under the new name, signed by the old key; NewWithOld the reverse
    assert old_with_new.subject == new_root.certificate.subject
    assert old_with_new.issuer == old_root.subject
    assert _spki(old_with_new) == _spki(new_root.certificate)
    old_with_new.verify_directly_issued_by(old_root)
    assert new_with_old.subject == old_root.subject
    assert _spki(new_with_old) == _spki(old_root)
    new_with_old.verify_directly_issued_by(new_root.certificate)
    assert old_with_new.not_valid_after_utc == old_root.not_valid_after_utc
    # a CA created under "root" now comes from the new root; relying parties that still trust
    # only the old root reach it through OldWithNew, and the new root's holders reach old chains
    plant = pki.authorities.create_subordinate(
        "plant-b", parent="root", key_type=KeyType.EC_P256, organization="ACME"
    )
    assert plant.parent == "root-g2"
    pki.revocation.publish_crl("plant-b")
    leaf = pki.issuance.issue(
        build_csr(make_key(), cn="op-b"), profile="tls-client", ca="plant-b"
    ).certificate
    now = pki.clock()
    assert find_path(leaf, [plant.certificate, old_with_new], [old_root], now) is not None
    assert find_path(leaf, [plant.certificate], [old_root], now) is None
    issuing = pki.authorities.get("issuing").certificate
    old_leaf = _issue(pki, "op-a")
    assert find_path(old_leaf, [issuing, new_with_old], [new_root.certificate], now) is not None
    assert set(pki.authorities.link_certificates()) == {old_with_new, new_with_old}
    assert {old_with_new, new_with_old} <= set(pki.est.ca_certificates(None))


# --- revocation of a sub-CA ---------------------------------------------------------------------


def test_revoking_a_sub_ca_lists_it_on_the_root_crl_and_stops_its_issuance(lifecycle_pki, tmp_path):
    pki = lifecycle_pki
    plant = pki.authorities.create_subordinate(
        "plant-a", parent="root", key_type=KeyType.EC_P256, organization="ACME"
    )
    pki.revocation.publish_crl("plant-a")
    pki.owners.create("line-a", ca="plant-a")
    device = pki.issuance.issue(
        build_csr(make_key(), cn="plc-a"), profile="device", owner="line-a"
    ).certificate
    pki.owners.create("line-i")
    pki.issuance.issue(build_csr(make_key(), cn="plc-i"), profile="device", owner="line-i")
    channels = Channels.for_pki(pki)
    mqtt, opcua = tmp_path / "mqtt", tmp_path / "opcua"
    assert set(channels.write_mosquitto(mqtt).device_cas) == {"issuing", "plant-a"}
    assert "plant-a" in channels.export_opcua_trust_list(opcua).trusted

    record = pki.revocation.revoke_authority("plant-a", ReasonFlags.key_compromise)
    assert record.ca == "root"
    assert record.serial_number == plant.certificate.serial_number
    root_crl = x509.load_der_x509_crl(pki.revocation.current_crl("root").der)
    entry = root_crl.get_revoked_certificate_by_serial_number(plant.certificate.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is ReasonFlags.key_compromise
    # it issues nothing more, and the refusal says why and since when
    with pytest.raises(
        PolicyViolationError, match=r"CA 'plant-a' was revoked on .* \(reason keyCompromise\)"
    ):
        pki.issuance.issue(build_csr(make_key(), cn="plc-a2"), profile="device", owner="line-a")
    with pytest.raises(PolicyViolationError, match="revoked"):
        pki.authorities.create_subordinate(
            "plant-a1", parent="plant-a", key_type=KeyType.EC_P256, organization="A"
        )
    # its CRL and OCSP keep answering for its leaves
    assert _ocsp_status(pki, plant.certificate, device.serial_number) is ocsp.OCSPCertStatus.GOOD
    assert pki.revocation.publish_crl("plant-a").crl_number >= 2
    # the trust files drop it at the next refresh
    refreshed = channels.refresh_mosquitto(mqtt)
    assert refreshed.withdrawn_cas == ("plant-a",)
    assert plant.certificate not in x509.load_pem_x509_certificates((mqtt / "ca.pem").read_bytes())
    assert "plant-a" in channels.export_opcua_trust_list(opcua).skipped
    assert not (opcua / "trusted" / "certs" / "plant-a.der").exists()
    event = _events(pki, EventType.CA_REVOKED)[0]
    assert (event.subject, event.reason, event.outcome) == ("plant-a", "keyCompromise", Outcome.SUCCESS)
    with pytest.raises(ConflictError):
        pki.revocation.revoke_authority("plant-a", ReasonFlags.key_compromise)


def test_a_root_cannot_be_revoked_by_name(lifecycle_pki):
    with pytest.raises(PolicyViolationError, match="is a root") as refused:
        lifecycle_pki.revocation.revoke_authority("root", ReasonFlags.ca_compromise)
    assert refused.value.rule == "revoke-root"
    assert _events(lifecycle_pki, EventType.CA_REVOKED)[0].outcome is Outcome.FAILURE


# --- expiry -------------------------------------------------------------------------------------


def test_ca_expiry_is_warned_once_at_90_30_and_7_days_and_issuance_past_it_is_refused(lifecycle_pki, clock):
    pki = lifecycle_pki
    end = pki.authorities.get("issuing").certificate.not_valid_after_utc
    assert pki.expiry.record_ca_crossings() == []
    clock.now = end - timedelta(days=89)
    assert [(ca, mark) for ca, mark, _ in pki.expiry.record_ca_crossings()] == [("issuing", 90)]
    assert pki.expiry.record_ca_crossings() == []  # once per mark
    clock.now = end - timedelta(days=6)
    assert [(ca, mark) for ca, mark, _ in pki.expiry.record_ca_crossings()] == [
        ("issuing", 30),
        ("issuing", 7),
    ]
    assert pki.expiry.record_ca_crossings() == []
    events = _events(pki, EventType.CA_EXPIRING)
    assert sorted(e.details["mark"] for e in events) == ["30d", "7d", "90d"]
    # a leaf for the profile's 365 days would outlive the CA: refused, both dates named
    with pytest.raises(PolicyViolationError) as refused:
        _issue(pki, "late")
    assert f"after CA 'issuing' expires on {end:%Y-%m-%d %H:%M} UTC" in refused.value.message
    # renewed: a new certificate, its own marks from scratch, and issuance works again
    pki.authorities.renew("issuing")
    assert pki.expiry.record_ca_crossings() == []
    _issue(pki, "after-renewal")


# --- external parents ---------------------------------------------------------------------------


def test_a_pending_ca_issues_nothing_until_its_certificate_is_imported(lifecycle_pki):
    pki = lifecycle_pki
    csr = pki.authorities.create_pending(
        "plant-x", key_type=KeyType.EC_P256, organization="ACME", path_length=0
    )
    assert csr.is_signature_valid
    constraints = csr.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca
    assert constraints.path_length == 0
    with pytest.raises(PolicyViolationError, match="otward ca import-cert plant-x"):
        pki.issuance.issue(build_csr(make_key(), cn="x"), profile="tls-client", ca="plant-x")
    with pytest.raises(ConflictError):
        pki.authorities.create_pending("plant-x", key_type=KeyType.EC_P256, organization="ACME")
    # here the "external" root is this installation's own root, signing through sign-csr
    signed = pki.authorities.sign_csr(csr, parent="root")
    root = pki.authorities.get("root").certificate
    loaded = pki.authorities.import_certificate("plant-x", signed, [root])
    assert loaded.chain == (signed, root)
    assert loaded.parent is None
    assert not loaded.is_root
    assert not pki.authorities.is_pending("plant-x")
    pki.revocation.publish_crl("plant-x")
    leaf = pki.issuance.issue(build_csr(make_key(), cn="x"), profile="tls-client", ca="plant-x")
    assert leaf.chain == (signed, root)
    assert _ocsp_status(pki, signed, leaf.certificate.serial_number) is ocsp.OCSPCertStatus.GOOD
    # renewal of a CA signed outside: a new request for the same key, then import again
    again = pki.authorities.certificate_request("plant-x")
    assert _spki_of_csr(again) == _spki(signed)
    renewed = pki.authorities.sign_csr(again, parent="root")
    assert pki.authorities.import_certificate("plant-x", renewed, [root]).certificate == renewed
    assert [e.details.get("external") for e in _events(pki, EventType.CA_RENEWED)] == ["true"]


def _spki_of_csr(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _openssl_csr(tmp_path: Path, *args: str) -> bytes:
    """A CA request made by openssl (cryptography refuses to sign with SHA-1)."""
    out = tmp_path / "weak.csr"
    subprocess.run(
        [
            "openssl",
            "req",
            "-new",
            "-nodes",
            "-keyout",
            str(tmp_path / "weak.key"),
            "-subj",
            "/CN=weak CA",
            *args,
            "-out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return out.read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-newkey", "rsa:1024", "-sha256"), "RSA key of 1024 bits is too small"),
        (("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-sha1"), "signed with sha1"),
        (("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp256k1", "-sha256"), "secp256k1"),
    ],
    ids=["rsa-1024", "sha1", "secp256k1"],
)
def test_sign_csr_refuses_weak_requests_and_audits(lifecycle_pki, tmp_path, args, message):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    request = x509.load_pem_x509_csr(_openssl_csr(tmp_path, *args))
    with pytest.raises(InvalidRequestError, match=message):
        lifecycle_pki.authorities.sign_csr(request, parent="root")
    assert _events(lifecycle_pki, EventType.CA_CSR_SIGNED)[0].outcome is Outcome.FAILURE


def test_sign_csr_keeps_path_length_and_validity_within_the_parent(lifecycle_pki):
    pki = lifecycle_pki
    request = x509.load_pem_x509_csr(build_csr(make_key(), cn="other issuing CA"))
    with pytest.raises(PolicyViolationError, match="cannot sign sub-CAs"):
        pki.authorities.sign_csr(request, parent="issuing")
    root_end = pki.authorities.get("root").certificate.not_valid_after_utc
    with pytest.raises(PolicyViolationError, match=f"after CA 'root' expires on {root_end:%Y-%m-%d}"):
        pki.authorities.sign_csr(request, parent="root", days=365 * 30)
    signed = pki.authorities.sign_csr(request, parent="root", path_length=1, days=365)
    assert signed.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 1
    assert pki.stores.certificates.get_certificate(signed.serial_number).ca == "root"


def test_a_pending_ca_key_is_made_in_the_token_with_the_pkcs11_backend(tmp_path):
    """The CSR is signed inside the token, the key stays there, and the imported CA issues with it."""
    from otward.config import KeySettings
    from otward.services.bootstrap import initialize
    from tests.conftest import softhsm_token

    with softhsm_token(tmp_path / "softhsm", label="otward-ca") as hsm:
        data = tmp_path / "data"
        keys = KeySettings(
            backend="pkcs11", pkcs11_module=hsm.module, pkcs11_token=hsm.label, pkcs11_pin_file=hsm.pin_file
        )
        initialize(data, organization="ACME", keys=keys)
        pki = Pki.open(load_settings(data))
        try:
            csr = pki.authorities.create_pending("plant-h", key_type=KeyType.EC_P256, organization="ACME")
            assert csr.is_signature_valid
            pending = pki.stores.authorities.get_pending_authority("plant-h")
            assert pending.key_ref.startswith("pkcs11:object=otward-ca-plant-h;id=")
            signed = pki.authorities.sign_csr(csr, parent="root")
            loaded = pki.authorities.import_certificate(
                "plant-h", signed, [pki.authorities.get("root").certificate]
            )
            assert pki.authorities.record("plant-h").key_ref == pending.key_ref
            pki.revocation.publish_crl("plant-h")
            leaf = pki.issuance.issue(build_csr(make_key(), cn="op-h"), profile="tls-client", ca="plant-h")
            leaf.certificate.verify_directly_issued_by(loaded.certificate)
        finally:
            pki.close()


# --- the commands -------------------------------------------------------------------------------


def _cli(*args: str, code: int = 0) -> str:
    from typer.testing import CliRunner

    from otward.cli.app import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_the_ca_commands_from_request_to_rollover(tmp_path):
    import json

    data = str(tmp_path / "d")
    _cli("init", "--data", data, "--org", "ACME Chemicals", "--json")
    out = _cli("ca", "create", "plant-x", "--data", data, code=1)
    assert "exactly one of --parent P and --external-parent" in out
    csr, cert, chain = tmp_path / "x.csr", tmp_path / "x.pem", tmp_path / "chain.pem"
    _cli(
        "ca",
        "create",
        "plant-x",
        "--external-parent",
        "--csr-out",
        str(csr),
        "--path-len",
        "0",
        "--data",
        data,
    )
    out = _cli("ca", "create", "plant-x", "--external-parent", "--csr-out", str(csr), "--data", data, code=1)
    assert "exists; not overwriting it" in out  # the CSR file is checked before anything is made
    listed = {c["name"]: c for c in json.loads(_cli("ca", "list", "--data", data, "--json"))}
    assert listed["plant-x"]["status"].startswith("pending")
    _cli(
        "ca",
        "sign-csr",
        str(csr),
        "--parent",
        "root",
        "--out",
        str(cert),
        "--chain-out",
        str(chain),
        "--data",
        data,
    )
    _cli("ca", "import-cert", "plant-x", "--cert", str(cert), "--chain", str(chain), "--data", data)
    renewed = json.loads(_cli("ca", "renew", "issuing", "--data", data, "--json"))
    assert renewed["name"] == "issuing"
    rolled = json.loads(_cli("ca", "rollover", "issuing", "--data", data, "--json"))
    assert (rolled["name"], rolled["previous"], rolled["links"]) == ("issuing-g2", "issuing", [])
    rolled = json.loads(
        _cli("ca", "rollover", "root", "--links-out", str(tmp_path / "links"), "--data", data, "--json")
    )
    assert sorted(Path(p).name for p in rolled["links"]) == [
        "root-root-g2-new-with-old.pem",
        "root-root-g2-old-with-new.pem",
    ]
    _cli("ca", "create", "plant-y", "--parent", "root", "--data", data)
    _cli("ca", "revoke", "plant-y", "--reason", "cessationOfOperation", "--data", data)
    listed = {c["name"]: c["status"] for c in json.loads(_cli("ca", "list", "--data", data, "--json"))}
    assert listed == {
        "root": "superseded by root-g2 (CRL and OCSP only)",
        "issuing": "superseded by issuing-g2 (CRL and OCSP only)",
        "plant-x": "active",
        "issuing-g2": "active",
        "root-g2": "active",
        "plant-y": "revoked",
    }
    out = _cli("ca", "revoke", "root-g2", "--reason", "keyCompromise", "--data", data, code=1)
    assert "is a root and cannot be revoked" in out
    out = _cli("ca", "revoke", "plant-x", "--reason", "certificateHold", "--data", data, code=1)
    assert "certificateHold" in out


def test_signers_follow_a_rollover_and_the_audit_trail_verifies_across_it(lifecycle_pki):
    """Root and issuing CA rolled over: the audit signer moves to the newest issuing generation (its
    chain ends at the new root), and the trail still verifies against the old root alone, through
    the OldWithNew link certificate."""
    pki = lifecycle_pki
    from otward.services.signers import AUDIT_SIGNER

    pki.audit.sign_head(force=True)  # signed by the first signer, under issuing and the old root
    old_root = pki.authorities.get("root").certificate
    pki.authorities.rollover("root")
    pki.authorities.renew("issuing")  # now signed by root-g2
    pki.authorities.rollover("issuing")
    pki.revocation.publish_crl("issuing-g2")
    assert pki.signers.rotate_if_due(AUDIT_SIGNER)
    _, signer = pki.signers.get(AUDIT_SIGNER)
    assert pki.stores.certificates.get_certificate(signer.serial_number).ca == "issuing-g2"
    assert not pki.signers.rotate_if_due(AUDIT_SIGNER)  # once
    chain = pki.authorities.chain_of(signer, "issuing")
    assert [c.subject.rfc4514_string() for c in chain] == [
        "CN=ACME Chemicals issuing CA G2,O=ACME Chemicals",
        "CN=ACME Chemicals Root CA G2,O=ACME Chemicals",
    ]
    pki.audit.sign_head(force=True)
    report = pki.audit.verify(trust=[old_root])
    assert report.check.ok, report.summary()


def test_ca_list_warns_about_a_ca_that_expires_within_90_days(tmp_path):
    import json

    data = str(tmp_path / "d")
    _cli("init", "--data", data, "--org", "ACME Chemicals", "--json")
    csr, cert, chain = tmp_path / "s.csr", tmp_path / "s.pem", tmp_path / "chain.pem"
    _cli("ca", "create", "short", "--external-parent", "--csr-out", str(csr), "--data", data)
    _cli(
        "ca",
        "sign-csr",
        str(csr),
        "--parent",
        "root",
        "--days",
        "60",
        "--out",
        str(cert),
        "--chain-out",
        str(chain),
        "--data",
        data,
    )
    _cli("ca", "import-cert", "short", "--cert", str(cert), "--chain", str(chain), "--data", data)
    listed = {c["name"]: c["status"] for c in json.loads(_cli("ca", "list", "--data", data, "--json"))}
    assert listed["short"] == "expires in 59 days: renew or roll over"
    # renewed through the parent that signed it: a new request for the same key, a longer certificate
    _cli("ca", "renew", "short", "--csr-out", str(tmp_path / "again.csr"), "--data", data)
    _cli(
        "ca",
        "sign-csr",
        str(tmp_path / "again.csr"),
        "--parent",
        "root",
        "--out",
        str(tmp_path / "r.pem"),
        "--data",
        data,
    )
    _cli(
        "ca", "import-cert", "short", "--cert", str(tmp_path / "r.pem"), "--chain", str(chain), "--data", data
    )
    listed = {c["name"]: c["status"] for c in json.loads(_cli("ca", "list", "--data", data, "--json"))}
    assert listed["short"] == "active"
    # a CA of this installation is renewed with ca renew, not through import-cert
    out = _cli(
        "ca",
        "import-cert",
        "issuing",
        "--cert",
        str(tmp_path / "r.pem"),
        "--chain",
        str(chain),
        "--data",
        data,
        code=1,
    )
    assert "renew it with otward ca renew issuing" in out
