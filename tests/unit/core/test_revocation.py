from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from otward.core.revocation import REASON_NAMES, RevokedEntry, build_crl, parse_reason, reason_name
from otward.errors import InvalidRequestError
from tests.unit.core.conftest import NOW


@pytest.mark.parametrize("name", list(REASON_NAMES))
def test_reason_names_round_trip(name):
    assert reason_name(parse_reason(name)) == name


def test_missing_reason_is_unspecified():
    assert parse_reason(None) is x509.ReasonFlags.unspecified


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("certificateHold", "permanent"),
        ("removeFromCRL", "delta"),
        ("key_compromise", "unknown revocation reason"),
    ],
)
def test_refused_reasons_explain_why(name, message):
    with pytest.raises(InvalidRequestError, match=message):
        parse_reason(name)


def test_crl_lists_entries_with_reasons_and_required_extensions(issuing_ca):
    entries = [
        RevokedEntry(0x1111_2222_3333_4444_5555, NOW - timedelta(hours=1), x509.ReasonFlags.key_compromise),
        RevokedEntry(0x6666_7777_8888_9999_AAAA, NOW - timedelta(hours=2), x509.ReasonFlags.unspecified),
    ]
    crl = build_crl(
        issuing_ca.info, entries, crl_number=7, this_update=NOW, next_update=NOW + timedelta(days=7)
    ).sign(issuing_ca.key, hashes.SHA256())
    assert crl.is_signature_valid(issuing_ca.info.certificate.public_key())
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert (
        aki
        == issuing_ca.info.certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value.digest
    )
    assert crl.next_update_utc == NOW + timedelta(days=7)
    first = crl.get_revoked_certificate_by_serial_number(entries[0].serial_number)
    assert (
        first.extensions.get_extension_for_class(x509.CRLReason).value.reason
        is x509.ReasonFlags.key_compromise
    )
    second = crl.get_revoked_certificate_by_serial_number(entries[1].serial_number)
    assert len(second.extensions) == 0  # RFC 5280: leave out reason 'unspecified'


def test_crl_with_no_entries(issuing_ca):
    crl = build_crl(
        issuing_ca.info, [], crl_number=1, this_update=NOW, next_update=NOW + timedelta(days=1)
    ).sign(issuing_ca.key, hashes.SHA256())
    assert len(crl) == 0


@pytest.mark.parametrize(
    ("number", "next_update"),
    [(0, timedelta(days=1)), (1 << 160, timedelta(days=1)), (1, timedelta(0))],
    ids=["zero-number", "huge-number", "next-not-after-this"],
)
def test_bad_crl_parameters_are_refused(issuing_ca, number, next_update):
    with pytest.raises(InvalidRequestError):
        build_crl(issuing_ca.info, [], crl_number=number, this_update=NOW, next_update=NOW + next_update)
