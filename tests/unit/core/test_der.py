"""The schema-less DER checker: canonical encodings pass, each BER liberty is refused."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from otward.core.der import decode_oid, read_tlv, validate_der
from otward.errors import OtwardError, ParseError
from tests.conftest import build_csr, make_key
from tests.hostile import tlv


@pytest.mark.parametrize("key_type", ["ec-p256", "rsa-2048", "ed25519"])
def test_csrs_from_cryptography_are_der(key_type):
    pem = build_csr(make_key(key_type), cn="plc-1", dns=("a.example",), ips=("10.0.0.1",))
    der = x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)
    assert validate_der(der).number == 16


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "value missing"),
        (b"\x30", "length missing"),
        (b"\x30\x80\x00\x00", "indefinite length"),
        (b"\x04\x81\x01\x00", "shortest form"),
        (b"\x04\x82\x00\x81" + b"\x00" * 0x81, "shortest form"),
        (b"\x04\x85\x01\x00\x00\x00\x00", "too long"),
        (b"\x04\x05\x00", "cut short"),
        (b"\x05\x00\x00", "bytes after"),
        (b"\x1f\x80\x01\x00", "tag number"),
        (b"\x1f\x1e\x00", "tag number"),
        (b"\x1f", "tag cut short"),
        (b"\x24\x03\x04\x01\x00", "constructed form"),
        (b"\x10\x00", "primitive form"),
        (b"\x01\x01\x01", "BOOLEAN"),
        (b"\x02\x02\x00\x01", "INTEGER"),
        (b"\x02\x02\xff\x80", "INTEGER"),
        (b"\x02\x00", "INTEGER"),
        (b"\x05\x01\x00", "NULL"),
        (b"\x03\x00", "BIT STRING"),
        (b"\x03\x01\x01", "BIT STRING"),
        (b"\x03\x02\x08\x00", "BIT STRING"),
        (b"\x03\x02\x01\x01", "BIT STRING"),
        (b"\x31\x06\x02\x01\x02\x02\x01\x01", "out of order"),
    ],
)
def test_ber_liberties_are_refused(data, problem):
    with pytest.raises(ParseError, match=problem) as info:
        validate_der(data)
    assert info.value.rule == "der"


def test_deep_nesting_is_refused():
    data = b"\x05\x00"
    for _ in range(40):
        data = tlv(0x30, data)
    with pytest.raises(ParseError, match="deeply"):
        validate_der(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\x01\x01\xff",
        b"\x02\x01\x00",
        b"\x02\x02\x00\x80",
        b"\x02\x02\xff\x7f",
        b"\x03\x02\x04\xf0",
        b"\x31\x06\x02\x01\x01\x02\x01\x02",
        b"\xbf\x1f\x00",  # context tag 31, high tag number form
        b"\x04\x81\x80" + b"\x00" * 0x80,
    ],
)
def test_canonical_encodings_pass(data):
    validate_der(data)


def test_oids_decode_and_refuse_non_minimal_arcs():
    assert decode_oid(read_tlv(bytes.fromhex("0603550403"))[0]) == "2.5.4.3"
    assert decode_oid(read_tlv(bytes.fromhex("06092a864886f70d01090e"))[0]) == "1.2.840.113549.1.9.14"
    assert decode_oid(read_tlv(bytes.fromhex("0603883703"))[0]) == "2.999.3"
    for bad in ("0604558004 03", "0601 80", "0400", "0600"):
        with pytest.raises(ParseError):
            decode_oid(read_tlv(bytes.fromhex(bad.replace(" ", "")))[0])


def test_children_of_a_primitive_value_are_refused():
    with pytest.raises(ParseError, match="constructed"):
        read_tlv(b"\x04\x00")[0].children()


@given(st.binary(max_size=64))
def test_arbitrary_bytes_raise_only_parse_errors(data):
    try:
        validate_der(data)
    except OtwardError:
        pass
