"""Searching certificates in SQL (the console's filters), on SQLite and on PostgreSQL: a part of
the subject in any case (LIKE wildcards taken literally), the start of the serial, the device's
owner, combined with the other filters and counted right."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from otward.config import load_settings
from otward.core.records import CertificateFilter
from otward.errors import InvalidRequestError
from otward.services.audit import Actor
from otward.services.pki import Pki
from otward.services.queries import certificate_filter
from tests.conftest import Clock, build_csr, make_key

pytestmark = pytest.mark.integration

DEVICE = Actor(component="est", identity="est", source="192.0.2.60")


@pytest.fixture
def tpki(installation, database_url):  # type: ignore[no-untyped-def]
    instance = Pki.open(load_settings(installation, database_url=database_url), clock=Clock())
    instance.owners.create("line-1")
    instance.owners.create("line-2")
    yield instance
    instance.close()


def _enroll(pki: Pki, owner: str, device_id: str) -> str:
    _, token = pki.enrollment_tokens.create(owner)
    csr = x509.load_pem_x509_csr(build_csr(make_key(), cn=device_id)).public_bytes(Encoding.DER)
    return pki.est.enroll(csr, token, label=None, actor=DEVICE).serial


def _issue(pki: Pki, cn: str) -> str:
    return pki.issuance.issue(build_csr(make_key(), cn=cn), profile="tls-client").serial


def _found(pki: Pki, query: CertificateFilter) -> tuple[set[str], int]:
    records, total = pki.stores.certificates.list_certificates(query, limit=100, offset=0)
    return {r.serial for r in records}, total


def test_subject_serial_and_owner_filters(tpki: Pki) -> None:
    plain = _issue(tpki, "op_anna")
    percent = _issue(tpki, "op-100%")
    plc1 = _enroll(tpki, "line-1", "plc-1")
    plc2 = _enroll(tpki, "line-2", "plc-2")
    assert _found(tpki, CertificateFilter(subject="OP_ANNA")) == ({plain}, 1)
    assert _found(tpki, CertificateFilter(subject="op_")) == ({plain}, 1)  # "_" is no wildcard
    assert _found(tpki, CertificateFilter(subject="100%")) == ({percent}, 1)
    assert _found(tpki, CertificateFilter(subject="%")) == ({percent}, 1)
    assert _found(tpki, CertificateFilter(subject="plc-")) == ({plc1, plc2}, 2)
    assert _found(tpki, CertificateFilter(owner="line-2")) == ({plc2}, 1)
    assert _found(tpki, CertificateFilter(owner="nobody")) == (set(), 0)
    assert _found(tpki, CertificateFilter(owner="line-1", subject="plc-2")) == (set(), 0)
    assert _found(tpki, CertificateFilter(serial_prefix=plc1)) == ({plc1}, 1)
    assert plc1 in _found(tpki, CertificateFilter(serial_prefix=plc1[:4]))[0]
    now = tpki.clock()
    typed = ":".join(plc2[i : i + 2] for i in range(0, len(plc2), 2)).upper()
    query = certificate_filter(now, serial=typed, owner="line-2", status="valid", subject="PLC")
    assert replace(query, expires_after=None) == CertificateFilter(
        revoked=False, subject="PLC", serial_prefix=plc2, owner="line-2"
    )
    assert _found(tpki, query) == ({plc2}, 1)
    tpki.revocation.revoke(int(plc2, 16), x509.ReasonFlags.key_compromise)
    assert _found(tpki, certificate_filter(now, owner="line-2", status="revoked")) == ({plc2}, 1)
    assert _found(tpki, certificate_filter(now, owner="line-2", status="valid")) == (set(), 0)


@pytest.mark.parametrize(
    ("typed", "stored"),
    [("0A:1B", "a1b"), ("0x00a1b", "a1b"), (" A1B ", "a1b"), ("7", "7")],
)
def test_a_serial_is_searched_as_stored(typed: str, stored: str) -> None:
    assert certificate_filter(datetime(2026, 1, 1, tzinfo=UTC), serial=typed).serial_prefix == stored


@pytest.mark.parametrize("typed", ["", "0", "0x", "xyz", "12g", "1" * 43])
def test_a_serial_that_is_not_hex_is_refused_naming_the_field(typed: str) -> None:
    with pytest.raises(InvalidRequestError, match=r"^serial: "):
        certificate_filter(datetime(2026, 1, 1, tzinfo=UTC), serial=typed)
