from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from otward.core.csr import load_csr, validate_csr
from otward.core.keys import KeyType
from otward.errors import ParseError, UnsupportedAlgorithmError
from tests.conftest import build_csr, make_key

VECTORS = Path(__file__).parents[2] / "vectors"


@pytest.mark.parametrize("key_type", [k.value for k in KeyType])
def test_every_supported_key_type_is_accepted(key_type):
    checked = validate_csr(load_csr(build_csr(make_key(key_type), dns=("a.example",))))
    assert checked.key_type is KeyType(key_type)
    assert checked.sans.dns == ("a.example",)


def test_der_csr_is_accepted():
    pem = build_csr(make_key())
    der = x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)
    assert validate_csr(load_csr(der)).subject.rfc4514_string() == "CN=device-1"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        b"\x30\x03\x02\x01\x01",
    ],
    ids=["empty", "text", "bad-pem", "bad-der"],
)
def test_garbage_is_a_parse_error(data):
    with pytest.raises(ParseError) as info:
        load_csr(data)
    assert info.value.rule == "csr-format"


def test_oversized_input_is_refused():
    with pytest.raises(ParseError):
        load_csr(b"A" * 70000)


def test_broken_signature_is_refused():
    pem = build_csr(make_key(), cn="victim")
    der = bytearray(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature
    with pytest.raises(ParseError) as info:
        validate_csr(load_csr(bytes(der)))
    assert info.value.rule == "csr-signature"


def test_rsa_1024_is_refused():
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(UnsupportedAlgorithmError, match="1024 bits is too small") as info:
        validate_csr(load_csr(build_csr(key)))
    assert info.value.rule == "key-size"


@pytest.mark.parametrize("vector", ["csr-rsa2048-sha1.pem", "csr-p256-sha1.pem"])
def test_sha1_signature_is_refused(vector):
    pem = (VECTORS / vector).read_bytes()
    with pytest.raises(UnsupportedAlgorithmError, match="sha1") as info:
        validate_csr(load_csr(pem))
    assert info.value.rule == "csr-signature-hash"


def test_unsupported_curve_is_refused():
    key = ec.generate_private_key(ec.SECP521R1())
    with pytest.raises(UnsupportedAlgorithmError, match="secp521r1"):
        validate_csr(load_csr(build_csr(key, algorithm=hashes.SHA512())))


def test_odd_rsa_size_is_refused():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2560)
    with pytest.raises(UnsupportedAlgorithmError, match="2560"):
        validate_csr(load_csr(build_csr(key)))


def test_sans_of_all_kinds_are_grouped():
    pem = build_csr(
        make_key(),
        dns=("A.Example",),
        ips=("10.0.0.1", "::1"),
        uris=("urn:x:y",),
        emails=("ops@plant.example",),
        extra_subject=(x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ACME"),),
    )
    sans = validate_csr(load_csr(pem)).sans
    assert sans.dns == ("a.example",)
    assert [str(i) for i in sans.ip] == ["10.0.0.1", "::1"]
    assert sans.uri == ("urn:x:y",)
    assert sans.email == ("ops@plant.example",)
    assert sans.kinds() == {"dns", "ip", "uri", "email"}
