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
    key = ec.generate_private_key(ec.SECP256K1())
    with pytest.raises(UnsupportedAlgorithmError, match="secp256k1"):
        validate_csr(load_csr(build_csr(key, algorithm=hashes.SHA256())))


def test_a_p521_request_signed_with_sha512_is_accepted():
    key = ec.generate_private_key(ec.SECP521R1())
    assert validate_csr(load_csr(build_csr(key, algorithm=hashes.SHA512()))).key_type is KeyType.EC_P521


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


# --- hostile subjects and encodings (built from raw DER: tests/hostile.py) ---------------------------

from otward.errors import PolicyViolationError  # noqa: E402
from tests.hostile import (  # noqa: E402
    BMP_STRING,
    IA5_STRING,
    OCTET_STRING,
    OID_C,
    OID_CN,
    OID_L,
    OID_O,
    PRINTABLE_STRING,
    TELETEX_STRING,
    UNIVERSAL_STRING,
    UTF8_STRING,
    attribute,
    hostile_csr,
    tlv,
)


def test_the_hostile_builder_makes_acceptable_requests():
    der = hostile_csr(
        rdns=[
            attribute(OID_CN, "plc-7"),
            attribute(OID_O, "ACME", PRINTABLE_STRING),
            attribute(OID_C, "DE", PRINTABLE_STRING),
        ],
        extensions=[("1.3.6.1.4.1.32473.99", tlv(UTF8_STRING, b"fine"))],
    )
    checked = validate_csr(load_csr(der))
    assert checked.subject.rfc4514_string() == "C=DE,O=ACME,CN=plc-7"


TYPE = "subject-string-type"
HOSTILE_SUBJECTS = [
    pytest.param([attribute(OID_CN, "plc-7", OCTET_STRING)], TYPE, id="cn-octet-string"),
    pytest.param([attribute(OID_CN, "plc-7", BMP_STRING)], TYPE, id="cn-bmpstring"),
    pytest.param([attribute(OID_CN, "plc-7", UNIVERSAL_STRING)], TYPE, id="cn-universalstring"),
    pytest.param([attribute(OID_CN, "plc-7", TELETEX_STRING)], TYPE, id="cn-teletexstring"),
    pytest.param([attribute(OID_CN, "plc-7", IA5_STRING)], TYPE, id="cn-ia5string"),
    pytest.param([attribute(OID_CN, b"\xff\xfeplc", UTF8_STRING)], TYPE, id="cn-invalid-utf8"),
    pytest.param([attribute(OID_C, "DE", UTF8_STRING)], TYPE, id="country-utf8string"),
    pytest.param([attribute(OID_CN, "plc*7", PRINTABLE_STRING)], "csr-format", id="printable-with-star"),
    pytest.param([attribute(OID_CN, "plc-7\n<86>1 forged")], "subject-characters", id="cn-newline"),
    pytest.param([attribute(OID_CN, "plc\x00-7")], "subject-characters", id="cn-nul"),
    pytest.param([attribute(OID_CN, "plc\u202e7-")], "subject-characters", id="cn-bidi-override"),
    pytest.param([attribute(OID_CN, "p" * 65)], "subject-length", id="cn-65-characters"),
    pytest.param([attribute(OID_L, "l" * 129)], "subject-length", id="locality-129-characters"),
    pytest.param([attribute(OID_C, "DEU", PRINTABLE_STRING)], "subject-length", id="country-three-letters"),
    pytest.param([attribute(OID_CN, "   ")], "subject-value", id="cn-blank"),
    pytest.param(
        [[attribute(OID_CN, "plc-7"), attribute(OID_O, "ACME")]], "subject-rdn", id="multi-valued-rdn"
    ),
]


@pytest.mark.parametrize(("rdns", "rule"), HOSTILE_SUBJECTS)
def test_subjects_outside_rfc5280_are_refused_with_the_rule(rdns, rule):
    with pytest.raises((PolicyViolationError, ParseError)) as info:
        validate_csr(load_csr(hostile_csr(rdns=rdns)))
    assert info.value.rule == rule, info.value.message


def test_upper_bounds_are_inclusive():
    rdns = [attribute(OID_CN, "c" * 64), attribute(OID_L, "ł" * 128), attribute(OID_O, "ö" * 64)]
    assert len(validate_csr(load_csr(hostile_csr(rdns=rdns))).subject) == 3


def test_unknown_attributes_are_left_to_the_profile():
    rdns = [attribute(OID_CN, "plc-7"), attribute("1.2.840.113549.1.9.1", "a@b.example", IA5_STRING)]
    assert len(validate_csr(load_csr(hostile_csr(rdns=rdns))).subject) == 2


def test_a_ber_value_inside_an_unknown_extension_is_refused():
    """cryptography keeps an unknown extension's value as bytes; it must still be DER."""
    ber_role = tlv(UTF8_STRING, b"Engineer", long_form=True)  # 0c 81 08 ...: a needless long-form length
    der = hostile_csr(rdns=[attribute(OID_CN, "eng")], extensions=[("1.3.6.1.4.1.50316.802.1", ber_role)])
    with pytest.raises(ParseError) as info:
        validate_csr(load_csr(der))
    assert info.value.rule == "csr-der"
    assert "1.3.6.1.4.1.50316.802.1" in info.value.message


def test_a_ber_length_in_the_subject_is_refused():
    subject = tlv(0x30, tlv(0x31, attribute(OID_CN, "plc-7")), long_form=True)
    with pytest.raises(ParseError):
        validate_csr(load_csr(hostile_csr(der_subject=subject)))


def test_a_printablestring_with_other_characters_is_refused_by_the_name_check_too():
    from otward.core.names import validate_subject_der

    with pytest.raises(PolicyViolationError) as info:
        validate_subject_der(tlv(0x30, tlv(0x31, attribute(OID_CN, "plc*7", PRINTABLE_STRING))))
    assert info.value.rule == TYPE


# --- found by the fuzz targets (tests/fuzz/core/test_csr.py) ------------------------------------


def test_a_version_other_than_v1_is_a_parse_error():
    """cryptography raises InvalidVersion (not a ValueError) for version 5."""
    der = hostile_csr(rdns=[attribute(OID_CN, "plc-1")])
    version = der.index(b"\x02\x01\x00")  # the first INTEGER: the info's version, 0
    assert version < 8  # right after the two SEQUENCE headers
    with pytest.raises(ParseError) as info:
        load_csr(der[: version + 2] + b"\x05" + der[version + 3 :])
    assert info.value.rule == "csr-format"


def test_an_extension_requested_twice_is_a_parse_error():
    """cryptography raises DuplicateExtension (not a ValueError) when the extensions are read."""
    san = tlv(0x30, tlv(0x82, b"plc-1.example"))
    csr = load_csr(hostile_csr(rdns=[attribute(OID_CN, "plc-1")], extensions=[("2.5.29.17", san)] * 2))
    with pytest.raises(ParseError, match=r"extension 2\.5\.29\.17 more than once") as info:
        validate_csr(csr)
    assert info.value.rule == "csr-format"
