from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from hypothesis import given
from hypothesis import strategies as st

from otward.core.issuance import build_ocsp_responder_certificate
from otward.core.ocsp import (
    CertStatus,
    IssuerIndex,
    StatusAnswer,
    build_ocsp_response,
    build_unsuccessful_response,
    load_ocsp_request,
)
from otward.core.revocation import RevokedEntry
from otward.errors import ParseError
from tests.conftest import ocsp_request_der
from tests.unit.core.conftest import NOW, make_ca

SERIAL = 0xABCDEF_0123456789_ABCDEF


def request_der(issuer_cert, serial=SERIAL, *, algorithm=None, nonce=None) -> bytes:
    return ocsp_request_der(issuer_cert, serial, nonce, algorithm=algorithm)


@pytest.fixture(scope="module")
def responder(issuing_ca):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build_ocsp_responder_certificate(
        subject=x509.Name.from_rfc4514_string("CN=OCSP"),
        public_key=key.public_key(),
        issuer=issuing_ca.info,
        serial_number=1 << 80,
        not_valid_before=NOW,
        not_valid_after=NOW + timedelta(days=30),
    ).sign(issuing_ca.key, hashes.SHA256())
    return cert, key


@pytest.mark.parametrize(
    "algorithm",
    [hashes.SHA1(), hashes.SHA256(), hashes.SHA384(), hashes.SHA512()],
    ids=lambda a: a.name,
)
def test_issuer_index_finds_the_ca_for_every_certid_hash(issuing_ca, root_ca, algorithm):
    index = IssuerIndex([("root", root_ca.info.certificate), ("issuing", issuing_ca.info.certificate)])
    query = load_ocsp_request(request_der(issuing_ca.info.certificate, algorithm=algorithm))
    assert index.find(query) == "issuing"
    stranger = make_ca("stranger", path_length=None)
    assert index.find(load_ocsp_request(request_der(stranger.info.certificate))) is None


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (StatusAnswer(CertStatus.GOOD), ocsp.OCSPCertStatus.GOOD),
        (StatusAnswer(CertStatus.UNKNOWN), ocsp.OCSPCertStatus.UNKNOWN),
        (
            StatusAnswer(
                CertStatus.REVOKED,
                RevokedEntry(SERIAL, NOW - timedelta(hours=1), x509.ReasonFlags.key_compromise),
            ),
            ocsp.OCSPCertStatus.REVOKED,
        ),
    ],
    ids=["good", "unknown", "revoked"],
)
def test_response_is_signed_by_the_responder_and_echoes_the_nonce(issuing_ca, responder, answer, status):
    cert, key = responder
    query = load_ocsp_request(request_der(issuing_ca.info.certificate, nonce=b"\x01" * 16))
    response = ocsp.load_der_ocsp_response(
        build_ocsp_response(
            query, answer, responder_certificate=cert, this_update=NOW, next_update=NOW + timedelta(hours=1)
        )
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status is status
    assert response.serial_number == SERIAL
    assert response.certificates == [cert]
    assert response.responder_key_hash is not None
    assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"\x01" * 16
    assert response.signature_hash_algorithm.name == "sha256"
    cert.public_key().verify(response.signature, response.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))
    if status is ocsp.OCSPCertStatus.REVOKED:
        assert response.revocation_reason is x509.ReasonFlags.key_compromise
        assert response.revocation_time_utc == NOW - timedelta(hours=1)


def test_no_nonce_no_nonce_extension(issuing_ca, responder):
    cert, key = responder
    query = load_ocsp_request(request_der(issuing_ca.info.certificate))
    assert query.nonce is None
    built = build_ocsp_response(
        query,
        StatusAnswer(CertStatus.GOOD),
        responder_certificate=cert,
        this_update=NOW,
        next_update=NOW + timedelta(hours=1),
    ).sign(key, hashes.SHA256())
    assert len(built.extensions) == 0


def test_oversized_nonce_is_refused(issuing_ca):
    with pytest.raises(ParseError, match="nonce"):
        load_ocsp_request(request_der(issuing_ca.info.certificate, nonce=b"\x00" * 64))


def test_unsuccessful_response_encodes_status():
    der = build_unsuccessful_response(ocsp.OCSPResponseStatus.UNAUTHORIZED)
    assert ocsp.load_der_ocsp_response(der).response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED


@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_parse_errors(data):
    try:
        load_ocsp_request(data)
    except ParseError:
        pass


# --- found by the fuzz targets (tests/fuzz/core/test_ocsp.py) -----------------------------------


def test_an_unknown_certid_hash_is_a_parse_error(issuing_ca):
    """cryptography raises UnsupportedAlgorithm (not a ValueError) for a hash OID it does not know."""
    der = request_der(issuing_ca.info.certificate)
    sha1 = bytes.fromhex("06052b0e03021a")
    assert sha1 in der
    with pytest.raises(ParseError, match="hash") as info:
        load_ocsp_request(der.replace(sha1, bytes.fromhex("06052b0e03021b")))  # 1.3.14.3.2.27
    assert info.value.rule == "ocsp-request"


def test_a_nonce_sent_twice_is_a_parse_error(issuing_ca):
    """cryptography raises DuplicateExtension (not a ValueError) when the extensions are read."""
    from otward.core.der import read_tlv
    from tests.hostile import oid, tlv

    plain = request_der(issuing_ca.info.certificate)
    request_list = read_tlv(plain)[0].children()[0].children()[0].encoding
    nonce = tlv(0x30, oid("1.3.6.1.5.5.7.48.1.2") + tlv(0x04, tlv(0x04, b"n" * 16)))
    der = tlv(0x30, tlv(0x30, request_list + tlv(0xA2, tlv(0x30, nonce + nonce))))
    with pytest.raises(ParseError, match="more than once"):
        load_ocsp_request(der)


def test_certid_hashes_of_the_wrong_size_are_a_parse_error():
    """Such a query cannot be answered (the response builder wants digests of the algorithm's size)."""
    from tests.hostile import oid, tlv

    sha1 = tlv(0x30, oid("1.3.14.3.2.26") + b"\x05\x00")
    certid = tlv(0x30, sha1 + tlv(0x04, b"a" * 19) + tlv(0x04, b"b" * 20) + tlv(0x02, b"\x05"))
    der = tlv(0x30, tlv(0x30, tlv(0x30, tlv(0x30, certid))))  # OCSPRequest, TBSRequest, list, Request
    with pytest.raises(ParseError, match="digests"):
        load_ocsp_request(der)


def test_a_negative_serial_number_is_a_parse_error(issuing_ca):
    """Found by tests/fuzz/http/test_ocsp.py in a -m fuzz run: the query was accepted and building the
    answer raised ValueError (a 500 on POST /ocsp)."""
    der = request_der(issuing_ca.info.certificate, 0x7F)
    assert der.endswith(b"\x02\x01\x7f")
    with pytest.raises(ParseError, match="negative"):
        load_ocsp_request(der[:-1] + b"\x80")  # INTEGER -128
