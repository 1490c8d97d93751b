from __future__ import annotations

import struct
import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otward.core import modbus
from otward.core.modbus import (
    AddressRange,
    exception_response,
    parse_mbap_header,
    parse_policy,
    request_ranges,
)
from otward.errors import ConfigError, OtwardError, ParseError

POLICY = """
[[role.operator]]
functions = [1, 2, 3, 4]      # reads
addresses = [0, 9999]         # inclusive range
[[role.engineer]]
functions = [1, 2, 3, 4, 5, 6, 15, 16]
addresses = [0, 65535]
[[role.engineer]]
functions = [23, 43]
addresses = [100, 199]
"""


def test_exports_exist():
    assert all(hasattr(modbus, name) for name in modbus.__all__)


def pdu(function: int, *words: int, tail: bytes = b"") -> bytes:
    return bytes([function]) + b"".join(struct.pack(">H", w) for w in words) + tail


@pytest.mark.parametrize(
    ("request_pdu", "expected"),
    [
        (pdu(1, 0, 2000), (AddressRange(0, 1999),)),
        (pdu(2, 10, 1), (AddressRange(10, 10),)),
        (pdu(3, 100, 125), (AddressRange(100, 224),)),
        (pdu(4, 65535, 1), (AddressRange(65535, 65535),)),
        (pdu(5, 7, 0xFF00), (AddressRange(7, 7),)),
        (pdu(6, 8, 1234), (AddressRange(8, 8),)),
        (pdu(15, 0, 10, tail=bytes([2, 0xFF, 0x03])), (AddressRange(0, 9),)),
        (pdu(16, 20, 2, tail=bytes([4, 0, 1, 0, 2])), (AddressRange(20, 21),)),
        (pdu(23, 0, 3, 100, 1, tail=bytes([2, 0, 9])), (AddressRange(0, 2), AddressRange(100, 100))),
        (bytes([43, 14, 1, 0]), ()),  # read device identification: no addresses
        (bytes([8, 0, 0, 0x12, 0x34]), ()),
    ],
    ids=["fc1", "fc2", "fc3-max", "fc4-last", "fc5", "fc6", "fc15", "fc16", "fc23", "fc43", "fc8"],
)
def test_ranges_of_each_function(request_pdu, expected):
    assert request_ranges(request_pdu) == expected


@pytest.mark.parametrize(
    "request_pdu",
    [
        b"",
        pdu(1, 0, 0),  # quantity 0
        pdu(1, 0, 2001),  # beyond 2000 coils
        pdu(3, 0, 126),  # beyond 125 registers
        pdu(3, 65535, 2),  # passes address 65535
        pdu(3, 0, 1, tail=b"\x00"),  # trailing byte
        pdu(3, 0),  # short
        pdu(6, 0),  # short
        pdu(15, 0, 10, tail=bytes([1, 0xFF])),  # byte count 1 for 10 coils
        pdu(15, 0, 0x07B1, tail=bytes([247])),  # beyond 1968 coils
        pdu(16, 0, 2, tail=bytes([4, 0, 1])),  # fewer bytes than the byte count
        pdu(16, 0, 124, tail=bytes([248]) + bytes(248)),  # beyond 123 registers
        pdu(16, 0),  # short
        pdu(23, 0, 126, 0, 1, tail=bytes([2, 0, 0])),  # read quantity beyond 125
        pdu(23, 0, 1, 0, 122, tail=bytes([244]) + bytes(244)),  # write quantity beyond 121
        pdu(23, 0, 1, 0, 1, tail=bytes([4, 0, 0])),  # byte count mismatch
        pdu(23, 0, 1),  # short
        bytes([0]),  # function 0
        bytes([0x83, 2]),  # an exception response is not a request
        bytes([3]) + bytes(253),  # PDU beyond 253 bytes
    ],
)
def test_malformed_requests_are_parse_errors(request_pdu):
    with pytest.raises(ParseError):
        request_ranges(request_pdu)


def test_header_parsing():
    header = parse_mbap_header(struct.pack(">HHHB", 0xBEEF, 0, 6, 17))
    assert (header.transaction_id, header.unit_id, header.length, header.pdu_length) == (0xBEEF, 17, 6, 5)


@pytest.mark.parametrize(
    "data",
    [
        struct.pack(">HHHB", 1, 1, 6, 1),  # protocol id 1
        struct.pack(">HHHB", 1, 0, 1, 1),  # length 1: no function
        struct.pack(">HHHB", 1, 0, 255, 1),  # PDU of 254 bytes
        b"\x00\x01\x00",  # short
    ],
    ids=["protocol-id", "too-short-length", "too-long-length", "short"],
)
def test_bad_headers_are_parse_errors(data):
    with pytest.raises(ParseError):
        parse_mbap_header(data)


def test_exception_response_echoes_transaction_and_unit():
    frame = exception_response(0x1234, 9, 6)
    assert frame == bytes.fromhex("1234 0000 0003 09 86 01")


@given(st.binary(max_size=300))
def test_arbitrary_pdus_raise_only_otward_errors(data):
    try:
        ranges = request_ranges(data)
    except OtwardError:
        return
    for r in ranges:
        assert 0 <= r.first <= r.last <= 0xFFFF


@given(st.binary(min_size=0, max_size=20), st.integers(0, 20))
def test_arbitrary_headers_raise_only_otward_errors(data, offset):
    try:
        header = parse_mbap_header(data, offset)
    except OtwardError:
        return
    assert 2 <= header.length <= 254


@given(
    st.integers(0, 65535),
    st.integers(1, 125),
)
def test_register_reads_round_trip(start, quantity):
    try:
        (result,) = request_ranges(pdu(3, start, quantity))
    except ParseError:
        assert start + quantity > 65536
        return
    assert (result.first, result.last) == (start, start + quantity - 1)


def test_policy_decisions():
    policy = parse_policy(tomllib.loads(POLICY))
    assert policy.decide("operator", 3, (AddressRange(0, 124),)).allowed
    assert policy.decide("operator", 3, (AddressRange(9999, 9999),)).allowed
    partly_outside = policy.decide("operator", 3, (AddressRange(9990, 10010),))
    assert not partly_outside.allowed
    assert "addresses 9990-10010" in partly_outside.reason
    write = policy.decide("operator", 6, (AddressRange(5, 5),))
    assert not write.allowed
    assert "function 6 not granted" in write.reason
    assert policy.decide("engineer", 16, (AddressRange(65000, 65535),)).allowed
    # FC 23 needs both ranges inside one entry listing 23
    assert policy.decide("engineer", 23, (AddressRange(100, 110), AddressRange(150, 150))).allowed
    assert not policy.decide("engineer", 23, (AddressRange(0, 1), AddressRange(150, 150))).allowed
    # functions without addresses: allowed only when listed
    assert policy.decide("engineer", 43, ()).allowed
    assert not policy.decide("operator", 43, ()).allowed
    assert not policy.decide("engineer", 8, ()).allowed
    unknown = policy.decide("visitor", 3, (AddressRange(0, 0),))
    assert not unknown.allowed
    assert "not in the policy" in unknown.reason


@given(st.integers(1, 127), st.integers(0, 65535), st.integers(0, 65535))
def test_an_empty_role_denies_everything(function, first, last):
    policy = parse_policy({"role": {"nobody": [{"functions": [1], "addresses": [0, 0]}]}})
    low, high = min(first, last), max(first, last)
    decision = policy.decide("somebody", function, (AddressRange(low, high),))
    assert not decision.allowed


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({}, "grants nothing"),
        ({"role": {}, "roles": {}}, "unknown top-level key(s) roles"),
        ({"role": {"op": {"functions": [1], "addresses": [0, 1]}}}, "role.op: must be an array of tables"),
        (
            {"role": {"op": [{"functions": [1], "addresses": [0, 1], "units": [1]}]}},
            "role.op[0]: unknown key(s) units",
        ),
        ({"role": {"op": [{"functions": [1]}]}}, "role.op[0]: missing addresses"),
        ({"role": {"op": [{"functions": [0], "addresses": [0, 1]}]}}, "role.op[0].functions: 0 is not"),
        ({"role": {"op": [{"functions": [128], "addresses": [0, 1]}]}}, "128 is not a function code"),
        ({"role": {"op": [{"functions": [True], "addresses": [0, 1]}]}}, "True is not a function code"),
        ({"role": {"op": [{"functions": [], "addresses": [0, 1]}]}}, "non-empty list"),
        ({"role": {"op": [{"functions": [1], "addresses": [5, 4]}]}}, "[5, 4] is not a range"),
        ({"role": {"op": [{"functions": [1], "addresses": [0, 65536]}]}}, "[0, 65536] is not a range"),
        ({"role": {"op": [{"functions": [1], "addresses": [0]}]}}, "must be [first, last]"),
        ({"role": {"op": [{"functions": [1], "addresses": ["0", 1]}]}}, "must be [first, last]"),
        ({"role": {"op": ["x"]}}, "role.op[0]: must be a table"),
    ],
)
def test_policy_errors_name_the_key(document, message):
    with pytest.raises(ConfigError) as info:
        parse_policy(document)
    assert message in info.value.message


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
        max_leaves=10,
    )
)
def test_arbitrary_documents_raise_only_config_errors(document):
    try:
        parse_policy(document if isinstance(document, dict) else {"role": document})
    except ConfigError:
        pass
