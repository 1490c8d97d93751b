from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otward.core.extensions import decode_modbus_role, encode_modbus_role, validate_role_name
from otward.errors import OtwardError, ParseError, PolicyViolationError


@pytest.mark.parametrize("role", ["Operator", "Engineer", "read-only", "Plant A/Maintenance", "r" * 128])
def test_role_round_trips_as_utf8string(role):
    der = encode_modbus_role(role)
    assert der[0] == 0x0C  # UNIVERSAL 12, UTF8String
    assert decode_modbus_role(der) == role


@pytest.mark.parametrize(
    ("der", "why"),
    [
        (b"Operator", "raw bytes, as some public code writes it"),
        (bytes.fromhex("1308") + b"Operator", "PrintableString instead of UTF8String"),
        (bytes.fromhex("0c08") + b"Operator" + b"\x00", "trailing bytes"),
        (b"", "empty"),
    ],
    ids=["raw", "printable-string", "trailing", "empty"],
)
def test_only_der_utf8string_is_accepted(der, why):
    with pytest.raises(ParseError):
        decode_modbus_role(der)


@pytest.mark.parametrize("role", ["", " leading-space", "new\nline", "r" * 129, "tab\there"])
def test_bad_role_names_are_refused(role):
    with pytest.raises(PolicyViolationError):
        validate_role_name(role)


@given(st.binary(max_size=200))
def test_decoding_arbitrary_bytes_raises_only_otward_errors(data):
    try:
        decode_modbus_role(data)
    except OtwardError:
        pass


@pytest.mark.parametrize(
    ("der", "why"),
    [
        (bytes.fromhex("0c8108") + b"Engineer", "long-form length (BER)"),
        (bytes.fromhex("0c820008") + b"Engineer", "two-octet length (BER)"),
        (bytes.fromhex("2c0a0c08") + b"Engineer", "constructed UTF8String (BER)"),
        (bytes.fromhex("0c0a") + b"Eng\nineer\r\n"[:10], "control characters"),
        (bytes.fromhex("0c81c8") + b"r" * 200, "longer than 128 characters"),
        (bytes.fromhex("0c00"), "empty"),
        (bytes.fromhex("0c02fffe"), "not UTF-8"),
    ],
    ids=["long-form", "two-octet-length", "constructed", "controls", "too-long", "empty-string", "bad-utf8"],
)
def test_role_extension_must_be_a_der_utf8string_of_a_bounded_role(der, why):
    with pytest.raises(ParseError) as info:
        decode_modbus_role(der)
    assert info.value.rule == "modbus-role-encoding"
