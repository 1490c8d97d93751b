from __future__ import annotations

import struct
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otward.core import modbus
from otward.core.modbus import (
    ADDRESS_FUNCTIONS,
    FUNCTION_CODES,
    AddressRange,
    exception_response,
    parse_mbap_header,
    parse_policy,
    ranges_text,
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
        (pdu(15, 1, 0x07B0, tail=bytes([246]) + bytes(246)), (AddressRange(1, 1968),)),
        (pdu(16, 20, 2, tail=bytes([4, 0, 1, 0, 2])), (AddressRange(20, 21),)),
        (pdu(16, 0, 123, tail=bytes([246]) + bytes(246)), (AddressRange(0, 122),)),
        (pdu(22, 5000, 0x00F2, 0x0025), (AddressRange(5000, 5000),)),
        (pdu(23, 0, 3, 100, 1, tail=bytes([2, 0, 9])), (AddressRange(0, 2), AddressRange(100, 100))),
        (
            pdu(23, 0, 125, 9, 121, tail=bytes([242]) + bytes(242)),
            (AddressRange(0, 124), AddressRange(9, 129)),
        ),
        (pdu(24, 60000), (AddressRange(60000, 60000),)),
        (bytes([7]), ()),
        (bytes([8, 0, 0, 0x12, 0x34]), ()),
        (bytes([8, 0, 0]), ()),  # sub-function 0 echoes N x 2 bytes, N may be 0
        (bytes([11]), ()),
        (bytes([12]), ()),
        (bytes([17]), ()),
        (bytes([43, 14, 1, 0]), ()),  # read device identification
        (bytes([43, 13, 1, 2, 3]), None),  # CANopen general reference: an object dictionary
        (bytes([43, 99]), None),  # a reserved MEI type
        (pdu(20, 0x0706, 1, 0, 1), None),  # read file record: file numbers, not the register model
        (bytes([100, 1, 2, 3]), None),  # a user-defined function code
    ],
    ids=[
        "fc1", "fc2", "fc3-max", "fc4-last", "fc5", "fc6", "fc15", "fc15-max", "fc16", "fc16-max", "fc22",
        "fc23", "fc23-max", "fc24", "fc7", "fc8", "fc8-no-data", "fc11", "fc12", "fc17", "fc43-device-id",
        "fc43-canopen", "fc43-reserved", "fc20", "fc100",
    ],
)  # fmt: skip
def test_ranges_of_each_function(request_pdu, expected):
    assert request_ranges(request_pdu) == expected


@pytest.mark.parametrize(
    "request_pdu",
    [
        b"",
        pdu(1, 0, 0),  # quantity 0
        pdu(1, 0, 2001),  # beyond 2000 coils
        pdu(2, 0, 0),
        pdu(2, 0, 2001),
        pdu(3, 0, 0),
        pdu(3, 0, 126),  # beyond 125 registers
        pdu(3, 65535, 2),  # passes address 65535
        pdu(3, 0, 1, tail=b"\x00"),  # trailing byte
        pdu(3, 0),  # short
        pdu(4, 0, 0),
        pdu(4, 0, 126),
        pdu(5, 0),  # short
        pdu(5, 0, 0xFF00, 0),  # long
        pdu(6, 0),  # short
        pdu(6, 0, 1, 1),  # long
        pdu(15, 0, 10, tail=bytes([1, 0xFF])),  # byte count 1 for 10 coils
        pdu(15, 0, 0, tail=bytes([0])),  # quantity 0
        pdu(15, 0, 0x07B1, tail=bytes([247])),  # beyond 1968 coils
        pdu(15, 0, 8, tail=bytes([1])),  # byte count 1 but no data
        pdu(15, 0),  # short
        pdu(16, 0, 2, tail=bytes([4, 0, 1])),  # fewer bytes than the byte count
        pdu(16, 0, 0, tail=bytes([0])),  # quantity 0
        pdu(16, 0, 124, tail=bytes([248]) + bytes(248)),  # beyond 123 registers
        pdu(16, 65535, 2, tail=bytes([4]) + bytes(4)),  # passes address 65535
        pdu(16, 0),  # short
        pdu(22, 5, 0xFFFF),  # mask write without its OR mask
        pdu(22, 5, 0xFFFF, 0, 0),  # mask write with a trailing word
        pdu(22),  # mask write without an address
        pdu(23, 0, 126, 0, 1, tail=bytes([2, 0, 0])),  # read quantity beyond 125
        pdu(23, 0, 0, 0, 1, tail=bytes([2, 0, 0])),  # read quantity 0
        pdu(23, 0, 1, 0, 122, tail=bytes([244]) + bytes(244)),  # write quantity beyond 121
        pdu(23, 0, 1, 0, 0, tail=bytes([0])),  # write quantity 0
        pdu(23, 0, 1, 0, 1, tail=bytes([4, 0, 0])),  # byte count mismatch
        pdu(23, 0, 1, 0, 1, tail=bytes([2, 0])),  # fewer bytes than the byte count
        pdu(23, 0, 1, 65535, 2, tail=bytes([4]) + bytes(4)),  # write range passes address 65535
        pdu(23, 0, 1),  # short
        pdu(24),  # FIFO read without its pointer address
        pdu(24, 5, 0),  # FIFO read with a trailing word
        bytes([7, 0]),  # read exception status takes no data
        bytes([11, 0]),
        bytes([12, 0, 0]),
        bytes([17, 1]),
        bytes([8, 0]),  # diagnostics: half a sub-function
        bytes([8, 0, 0, 1]),  # diagnostics: odd data
        bytes([43]),  # no MEI type
        bytes([43, 14, 1]),  # read device identification without an object id
        bytes([43, 14, 1, 0, 0]),  # ... with a trailing byte
        bytes([0]),  # function 0
        bytes([0x83, 2]),  # an exception response is not a request
        bytes([3]) + bytes(253),  # PDU beyond 253 bytes
    ],
)
def test_malformed_requests_are_parse_errors(request_pdu):
    with pytest.raises(ParseError):
        request_ranges(request_pdu)


def test_the_function_table_knows_every_addressed_code_of_the_specification():
    assert ADDRESS_FUNCTIONS == {1, 2, 3, 4, 5, 6, 15, 16, 22, 23, 24}
    assert {code for code, spec in FUNCTION_CODES.items() if not spec.addressed} == {7, 8, 11, 12, 17, 43}
    assert all(spec.code == code for code, spec in FUNCTION_CODES.items())


@given(st.sampled_from(sorted(ADDRESS_FUNCTIONS)), st.binary(max_size=252))
def test_an_addressed_request_always_names_its_addresses(function, rest):
    """No PDU of a code that touches coils or registers parses to "no address" or "unknown"."""
    try:
        ranges = request_ranges(bytes([function]) + rest)
    except ParseError:
        return
    assert ranges


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
    for r in ranges or ():
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


SMALL = parse_policy(
    tomllib.loads(
        """
[[role.operator]]
functions = [1, 2, 3, 4, 5, 6, 15, 16, 22, 23, 24]
addresses = [0, 99]
"""
    )
)


@pytest.mark.parametrize(
    ("request_pdu", "allowed"),
    [
        (pdu(1, 0, 100), True),
        (pdu(1, 0, 101), False),
        (pdu(2, 99, 1), True),
        (pdu(2, 99, 2), False),
        (pdu(3, 50, 50), True),
        (pdu(3, 100, 1), False),
        (pdu(4, 0, 1), True),
        (pdu(4, 65535, 1), False),
        (pdu(5, 99, 0xFF00), True),
        (pdu(5, 100, 0xFF00), False),
        (pdu(6, 0, 7), True),
        (pdu(6, 5000, 7), False),
        (pdu(15, 92, 8, tail=bytes([1, 0xFF])), True),
        (pdu(15, 93, 8, tail=bytes([1, 0xFF])), False),
        (pdu(16, 98, 2, tail=bytes([4]) + bytes(4)), True),
        (pdu(16, 99, 2, tail=bytes([4]) + bytes(4)), False),
        (pdu(22, 10, 0x00F2, 0x0025), True),
        (pdu(22, 5000, 0x00F2, 0x0025), False),
        (pdu(23, 0, 3, 20, 2, tail=bytes([4]) + bytes(4)), True),
        (pdu(23, 0, 3, 5000, 2, tail=bytes([4]) + bytes(4)), False),  # the write range outside
        (pdu(23, 5000, 3, 20, 2, tail=bytes([4]) + bytes(4)), False),  # the read range outside
        (pdu(24, 5), True),
        (pdu(24, 60000), False),
    ],
    ids=lambda value: value.hex() if isinstance(value, bytes) else str(value),
)
def test_every_addressed_function_is_held_to_the_range(request_pdu, allowed):
    decision = SMALL.decide("operator", request_pdu[0], request_ranges(request_pdu))
    assert decision.allowed is allowed, decision.reason
    if not allowed:
        assert "not granted to role 'operator'" in decision.reason


@given(st.sampled_from(sorted(ADDRESS_FUNCTIONS)), st.binary(max_size=252))
def test_no_allowed_request_touches_an_address_outside_the_range(function, rest):
    try:
        ranges = request_ranges(bytes([function]) + rest)
    except ParseError:
        return
    if SMALL.decide("operator", function, ranges).allowed:
        assert ranges
        assert all(r.last <= 99 for r in ranges)


ADDRESS_LESS = parse_policy(
    tomllib.loads(
        """
[[role.engineer]]
functions = [3, 8, 43]
addresses = [0, 99]

[[role.vendor]]
address_less = [43, 100, 20]   # unchecked: any MEI type, a user-defined code, read file record
"""
    )
)


@pytest.mark.parametrize(
    ("role", "request_pdu", "allowed"),
    [
        ("engineer", bytes([43, 14, 1, 0]), True),  # address-less and known: listed in functions
        ("engineer", bytes([8, 0, 0, 0, 0]), True),
        ("engineer", bytes([43, 13, 1, 2]), False),  # CANopen: addressing unknown, not address_less
        ("engineer", bytes([100, 1]), False),  # unknown code, not granted
        ("engineer", pdu(20, 0x0706, 1, 0, 1), False),
        ("engineer", bytes([17]), False),  # known address-less code, not listed
        ("vendor", bytes([43, 13, 1, 2]), True),
        ("vendor", bytes([43, 14, 1, 0]), True),
        ("vendor", bytes([100, 1]), True),
        ("vendor", pdu(20, 0x0706, 1, 0, 1), True),
        ("vendor", bytes([101, 1]), False),
        ("vendor", pdu(3, 0, 1), False),  # address_less grants no addressed function
    ],
)
def test_unknown_addressing_passes_only_as_address_less(role, request_pdu, allowed):
    decision = ADDRESS_LESS.decide(role, request_pdu[0], request_ranges(request_pdu))
    assert decision.allowed is allowed, decision.reason


def test_ranges_in_audit_words():
    assert ranges_text((AddressRange(0, 2), AddressRange(100, 100))) == "0-2,100-100"
    assert ranges_text(()) == "-"
    assert ranges_text(None) == "unknown"


def test_a_denial_of_unknown_addressing_says_so():
    decision = ADDRESS_LESS.decide("engineer", 100, None)
    assert decision.reason == (
        "function 100: addressing unknown to otward, not granted as address_less to role 'engineer'"
    )


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
        (
            {"role": {"op": [{"functions": [3, 100], "addresses": [0, 1]}]}},
            "role.op[0].functions: otward does not know what function 100 addresses",
        ),
        (
            {"role": {"op": [{"functions": [20], "addresses": [0, 1]}]}},
            "list it in address_less to let it pass unchecked",
        ),
        (
            {"role": {"op": [{"address_less": [43, 22]}]}},
            "role.op[0].address_less: function 22 (mask write register) addresses coils or registers",
        ),
        ({"role": {"op": [{"address_less": [24]}]}}, "function 24 (read FIFO queue)"),
        ({"role": {"op": [{"address_less": []}]}}, "role.op[0].address_less: must be a non-empty list"),
        ({"role": {"op": [{"address_less": [0]}]}}, "role.op[0].address_less: 0 is not a function code"),
        (
            {"role": {"op": [{"address_less": [100], "addresses": [0, 1]}]}},
            "role.op[0].addresses: applies to",
        ),
        ({"role": {"op": [{}]}}, "role.op[0]: grants nothing"),
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


def test_the_policy_examples_in_the_docs_load():
    text = (Path(__file__).parents[3] / "docs" / "gateway.md").read_text(encoding="utf-8")
    blocks = [block.split("```", 1)[0] for block in text.split("```toml\n")[1:]]
    assert blocks
    for block in blocks:
        parse_policy(tomllib.loads(block))
