"""A device can never take an administrator-certified client's name, nor the other way round
(security review, issue #11 item 2), on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from otward.core.audit import EventType
from otward.errors import PolicyViolationError
from otward.services.audit import Actor
from otward.services.pki import Pki
from tests.conftest import build_csr, make_key

pytestmark = pytest.mark.integration

DEVICE = Actor(component="est", identity="est", source="192.0.2.61")


@pytest.fixture
def acme(pki: Pki) -> Pki:
    pki.owners.create("acme")
    return pki


def enroll(pki: Pki, cn: str):  # type: ignore[no-untyped-def]
    _, token = pki.enrollment_tokens.create("acme")
    csr = x509.load_pem_x509_csr(build_csr(make_key(), cn=cn)).public_bytes(Encoding.DER)
    return pki.est.enroll(csr, token, label=None, actor=DEVICE)


def issue(pki: Pki, cn: str, profile: str = "tls-client"):  # type: ignore[no-untyped-def]
    role = "operator" if profile == "modbus-role" else None
    return pki.issuance.issue(build_csr(make_key(), cn=cn), profile=profile, role=role)


def test_a_device_cannot_enroll_under_an_operator_stations_name(acme):
    issue(acme, "hmi-operator")
    with pytest.raises(PolicyViolationError, match="belongs to an administrator-certified client") as refused:
        enroll(acme, "hmi-operator")
    assert refused.value.rule == "identity-namespace"
    assert acme.stores.devices.get_device("hmi-operator") is None  # nothing half-written
    refusals = [r.event for r in acme.stores.audit.iter_audit() if r.event.type is EventType.ENROLL_REFUSED]
    assert refusals[-1].details["rule"] == "identity-namespace"


@pytest.mark.parametrize("profile", ["tls-client", "modbus-role"])
def test_an_administrator_cannot_certify_a_client_under_a_devices_name(acme, profile):
    enroll(acme, "plc-7")
    for cn in ("plc-7", "PLC-7"):  # relying parties differ in case handling: names are compared folded
        with pytest.raises(PolicyViolationError, match="belongs to a device") as refused:
            issue(acme, cn, profile)
        assert refused.value.rule == "identity-namespace"
    refusals = [r.event for r in acme.stores.audit.iter_audit() if r.event.type is EventType.CERT_REFUSED]
    assert refusals[-1].details["rule"] == "identity-namespace"


def test_each_namespace_keeps_issuing_under_its_own_names(acme):
    first = enroll(acme, "plc-8")
    acme.revocation.revoke(first.certificate.serial_number, x509.ReasonFlags.superseded)
    enroll(acme, "plc-8")  # the device, enrolled anew, keeps its name
    issue(acme, "scada-1")
    issue(acme, "scada-1")  # a second operator station certificate under one name is fine
    # a server certificate (no clientAuth) does not authenticate clients, so it claims no name
    acme.issuance.issue(build_csr(make_key(), cn="plc-8", dns=("plc-8",)), profile="tls-server")


def test_the_first_claim_wins_when_both_kinds_are_issued_at_once(acme):
    """One group commit holding a device enrollment and a client certificate of the same name:
    exactly one of them is stored."""
    import threading

    outcomes: list[object] = []

    def attempt(action) -> None:  # type: ignore[no-untyped-def]
        try:
            outcomes.append(action())
        except PolicyViolationError as exc:
            outcomes.append(exc)

    threads = [
        threading.Thread(target=attempt, args=(lambda: enroll(acme, "twin-1"),)),
        threading.Thread(target=attempt, args=(lambda: issue(acme, "twin-1"),)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    refused = [o for o in outcomes if isinstance(o, PolicyViolationError)]
    assert len(outcomes) == 2
    assert len(refused) == 1
    assert refused[0].rule == "identity-namespace"
