"""Service behaviour over time and under contention, with an injected clock, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.x509 import ocsp

from otward.config import load_settings
from otward.core.audit import EventType
from otward.core.records import format_serial
from otward.errors import ConflictError, PolicyViolationError
from otward.services.audit import SYSTEM_ACTOR
from otward.services.pki import Pki, random_serial_number
from tests.conftest import Clock, build_csr, make_key, ocsp_request_der

pytestmark = pytest.mark.integration


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def timed_pki(installation, database_url, clock):
    instance = Pki.open(load_settings(installation, database_url=database_url), clock=clock)
    yield instance
    instance.close()


def crl_number(record) -> int:
    return (
        x509.load_der_x509_crl(record.der).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    )


def test_crl_is_regenerated_before_next_update(timed_pki, clock):
    first = timed_pki.revocation.publish_crl("issuing")
    assert timed_pki.revocation.current_crl("issuing").crl_number == first.crl_number
    clock.now += timedelta(days=5, hours=23)  # validity 7 d, refresh 24 h before
    assert timed_pki.revocation.current_crl("issuing").crl_number == first.crl_number
    clock.now += timedelta(hours=2)
    fresh = timed_pki.revocation.current_crl("issuing")
    assert fresh.crl_number == first.crl_number + 1
    assert crl_number(fresh) == fresh.crl_number
    assert fresh.next_update == clock.now + timedelta(days=7)
    assert timed_pki.revocation.refresh_all() == ["root"]  # its CRL was just as old
    assert timed_pki.revocation.refresh_all() == []


def test_ocsp_responder_is_renewed_before_it_expires(timed_pki, clock):
    issuing = timed_pki.authorities.get("issuing")
    old = issuing.ocsp_certificate
    assert not timed_pki.authorities.renew_ocsp_responder_if_due("issuing")
    clock.now += timedelta(days=340)
    assert timed_pki.authorities.renew_ocsp_responder_if_due("issuing")
    new = timed_pki.authorities.get("issuing").ocsp_certificate
    assert new.serial_number != old.serial_number
    assert new.not_valid_after_utc > old.not_valid_after_utc
    serial = timed_pki.issuance.issue(
        build_csr(make_key(), cn="op"), profile="tls-client"
    ).certificate.serial_number
    response = ocsp.load_der_ocsp_response(
        timed_pki.ocsp.respond(ocsp_request_der(issuing.certificate, serial, b"x" * 16)).der
    )
    assert response.certificates == [new]
    assert timed_pki.stores.certificates.get_certificate(new.serial_number).profile == "ocsp-responder"


def test_ocsp_reuses_signatures_only_without_nonce(timed_pki):
    issuing = timed_pki.authorities.get("issuing").certificate
    serial = timed_pki.issuance.issue(
        build_csr(make_key(), cn="op"), profile="tls-client"
    ).certificate.serial_number
    plain = ocsp_request_der(issuing, serial)
    assert timed_pki.ocsp.respond(plain).der == timed_pki.ocsp.respond(plain).der
    first = timed_pki.ocsp.respond(ocsp_request_der(issuing, serial, b"a" * 16)).der
    second = timed_pki.ocsp.respond(ocsp_request_der(issuing, serial, b"b" * 16)).der
    assert first != second


def test_serial_collision_is_refused_and_nothing_is_half_written(installation, database_url):
    fixed = random_serial_number()
    pki = Pki.open(load_settings(installation, database_url=database_url), new_serial=lambda: fixed)
    try:
        pki.issuance.issue(build_csr(make_key(), cn="a"), profile="tls-client")
        with pytest.raises(ConflictError):
            pki.issuance.issue(build_csr(make_key(), cn="b"), profile="tls-client")
        assert pki.stores.certificates.get_certificate(fixed).subject == "CN=a"
    finally:
        pki.close()


def test_revoked_sub_ca_issues_nothing(timed_pki):
    plant = timed_pki.authorities.create_subordinate(
        "plant-a", parent="root", key_type=__import__("otward").core.keys.KeyType.EC_P256, organization="ACME"
    )
    timed_pki.issuance.issue(build_csr(make_key(), cn="op"), profile="tls-client", ca="plant-a")
    timed_pki.revocation.revoke(plant.certificate.serial_number, x509.ReasonFlags.ca_compromise)
    with pytest.raises(PolicyViolationError) as info:
        timed_pki.issuance.issue(build_csr(make_key(), cn="op"), profile="tls-client", ca="plant-a")
    assert info.value.rule == "ca-revoked"
    root_crl = x509.load_der_x509_crl(timed_pki.revocation.current_crl("root").der)
    assert root_crl.get_revoked_certificate_by_serial_number(plant.certificate.serial_number) is not None


def test_ocsp_serves_a_ca_created_after_it_started(timed_pki, installation, database_url):
    # warm the responder's issuer index, then create a CA through a second instance (as the CLI would)
    issuing = timed_pki.authorities.get("issuing").certificate
    timed_pki.ocsp.respond(ocsp_request_der(issuing, 1 << 70))
    other = Pki.open(load_settings(installation, database_url=database_url))
    try:
        from otward.core.keys import KeyType

        plant = other.authorities.create_subordinate(
            "plant-b", parent="root", key_type=KeyType.EC_P256, organization="ACME"
        )
        serial = other.issuance.issue(build_csr(make_key(), cn="op"), profile="tls-client", ca="plant-b")
    finally:
        other.close()
    answer = ocsp.load_der_ocsp_response(
        timed_pki.ocsp.respond(ocsp_request_der(plant.certificate, serial.certificate.serial_number)).der
    )
    assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD


def test_concurrent_issuance_and_revocation(pki):
    errors: list[BaseException] = []
    serials: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        try:
            for i in range(10):
                issued = pki.issuance.issue(build_csr(make_key(), cn=f"w{n}-{i}"), profile="tls-client")
                with lock:
                    serials.append(issued.certificate.serial_number)
                if i % 3 == 0:
                    pki.revocation.revoke(issued.certificate.serial_number, x509.ReasonFlags.superseded)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(serials)) == 40
    crl = x509.load_der_x509_crl(pki.revocation.current_crl("issuing").der)
    assert len(crl) == 16


def test_issue_many_is_one_transaction_all_or_nothing(pki):
    csrs = [build_csr(make_key(), cn=f"lot-{i}") for i in range(20)]
    before = pki.stores.transparency.log_size()
    issued = pki.issuance.issue_many(csrs, profile="tls-client")
    assert len({i.serial for i in issued}) == 20
    assert pki.stores.transparency.log_size() == before + 20
    for item in issued:
        assert pki.stores.certificates.get_certificate(item.certificate.serial_number) is not None
    assert pki.audit.verify().check.ok
    bad = [*csrs[:3], build_csr(make_key(), cn=None, dns=("x.example",))]  # tls-client needs a CN
    count = pki.stores.transparency.log_size()
    with pytest.raises(PolicyViolationError, match=r"csr #3: .*nothing in this batch was issued") as info:
        pki.issuance.issue_many(bad, profile="tls-client")
    assert info.value.rule == "subject-required"
    assert pki.stores.transparency.log_size() == count
    assert pki.issuance.issue_many([], profile="tls-client") == []


def test_signers_are_rotated_when_two_thirds_of_their_lifetime_passed(timed_pki, clock):
    """What the service's housekeeping does each minute: the audit signer renews itself, the heads it
    signed before still verify, and the trail records the rotation."""
    timed_pki.audit.sign_head()
    old = timed_pki.signers.current("audit").certificate
    assert not timed_pki.signers.rotate_if_due("audit")
    assert not timed_pki.signers.rotate_if_due("edge")  # never used: nothing to rotate
    lifetime = old.not_valid_after_utc - old.not_valid_before_utc
    clock.now = old.not_valid_before_utc + lifetime * 2 / 3 + timedelta(minutes=1)
    assert timed_pki.signers.rotate_if_due("audit")
    new = timed_pki.signers.current("audit").certificate
    assert new.serial_number != old.serial_number
    assert not timed_pki.signers.rotate_if_due("audit")
    timed_pki.audit.sign_head()
    heads = timed_pki.stores.audit.audit_heads()
    assert {h.signer_serial for h in heads} >= {old.serial_number, new.serial_number}
    assert timed_pki.audit.verify().check.ok
    rotated = [r for r in timed_pki.stores.audit.iter_audit() if r.event.type is EventType.SIGNER_ROTATED]
    assert [r.event.details["previous_serial"] for r in rotated] == [format_serial(old.serial_number)]


def test_a_signer_rotated_by_another_process_is_used_at_once(installation, database_url):
    """The CLI rotates while the service runs: the service signs with the new key on its next head."""
    settings = load_settings(installation, database_url=database_url)
    service, cli = Pki.open(settings), Pki.open(settings)
    try:
        service.audit.sign_head()
        before = service.signers.get("audit")[1]
        rotated = cli.signers.rotate("audit")
        assert service.signers.get("audit")[1] == rotated.certificate
        # a rotation that read the signer before the other one committed is refused, not lost
        with pytest.raises(ConflictError, match="changed while it was being rotated"):
            service.signers._replace("audit", before, None, SYSTEM_ACTOR)
        assert service.signers.get("audit")[1] == rotated.certificate
        # the retired key and the one the refused rotation made are gone; one audit key is left
        (left,) = (installation / "keys").glob("signer-audit-*")
        assert left.name.endswith(f"-{rotated.certificate.serial_number:x}.key.pem")
    finally:
        service.close()
        cli.close()


def test_a_signer_whose_key_was_destroyed_by_a_rotation_elsewhere_loads_the_new_one(
    installation, database_url, monkeypatch
):
    """A process reads the signer, another rotates it (destroying the retired key) before the first
    loads the key: the first finds the new signer instead of failing."""
    settings = load_settings(installation, database_url=database_url)
    cli = Pki.open(settings)
    cli.signers.get("edge")
    stale = cli.stores.signers.get_signer("edge")
    rotated = cli.signers.rotate("edge")
    cli.close()
    service = Pki.open(settings)
    try:
        reads = iter([stale])
        real = service.stores.signers.get_signer
        monkeypatch.setattr(
            service.stores.signers, "get_signer", lambda name: next(reads, None) or real(name)
        )
        key, certificate = service.signers.get("edge")
        assert certificate == rotated.certificate
        assert key.public_key() == certificate.public_key()
    finally:
        service.close()
