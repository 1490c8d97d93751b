"""OCSP request decoding on hostile DER: only ParseError, and every accepted query can be answered."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from functools import cache

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from hypothesis import given

from otward.core.keys import public_key_bits
from otward.core.ocsp import CertStatus, IssuerIndex, StatusAnswer, build_ocsp_response, load_ocsp_request
from otward.core.revocation import RevokedEntry
from otward.errors import ParseError
from tests.fuzz.mutate import der_inputs
from tests.fuzz.profile import fuzz_settings
from tests.unit.core.conftest import make_ca

pytestmark = pytest.mark.fuzz

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def request_der(
    issuer: x509.Certificate, serial: int, nonce: bytes | None, algorithm: hashes.HashAlgorithm
) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        hashlib.new(algorithm.name, issuer.subject.public_bytes()).digest(),
        hashlib.new(algorithm.name, public_key_bits(issuer.public_key())).digest(),
        serial,
        algorithm,
    )
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def valid_requests(issuer: x509.Certificate) -> list[bytes]:
    return [
        request_der(issuer, serial, nonce, algorithm)
        for serial, nonce, algorithm in [
            (1, None, hashes.SHA1()),
            (0x1234_5678_9ABC_DEF0_1234, b"n" * 16, hashes.SHA256()),
            ((1 << 159) - 1, b"\x00", hashes.SHA384()),
            (7, b"x" * 32, hashes.SHA512()),
            (2, b"y" * 8, hashes.SHA224()),
        ]
    ]


@cache
def _ca():  # type: ignore[no-untyped-def]
    return make_ca("issuing", make_ca("root", path_length=None))


@fuzz_settings()
@given(der_inputs(valid_requests(_ca().info.certificate)))
def test_hostile_requests_are_parse_errors_or_answerable(data):
    ca = _ca()
    try:
        query = load_ocsp_request(data)
    except ParseError:
        return
    IssuerIndex([("issuing", ca.info.certificate)]).find(query)
    revoked = RevokedEntry(serial_number=1, revocation_date=NOW, reason=x509.ReasonFlags.key_compromise)
    for answer in (StatusAnswer(CertStatus.GOOD), StatusAnswer(CertStatus.REVOKED, revoked)):
        build_ocsp_response(
            query,
            answer,
            responder_certificate=ca.info.certificate,
            this_update=NOW,
            next_update=NOW + timedelta(hours=1),
        ).sign(ca.key, hashes.SHA256())
