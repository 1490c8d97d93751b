"""The gateway's Modbus frame parser and policy decision on hostile frames.

Frames are valid requests of every function code (and unknown ones) with their header or PDU
mutated. Properties: only ParseError from the parser; a request the policy allows for a role only
touches addresses a grant of that role holds; a frame the parser refuses is never "allowed".
"""

from __future__ import annotations

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from otward.core.modbus import MBAP_HEADER, parse_mbap_header, parse_policy, request_ranges
from otward.errors import ParseError
from tests.fuzz.frames import request_frames
from tests.fuzz.profile import fuzz_settings

pytestmark = pytest.mark.fuzz

POLICY = parse_policy(
    {
        "role": {
            "operator": [{"functions": [1, 2, 3, 4], "addresses": [0, 9999]}],
            "engineer": [
                {"functions": [3, 6, 16, 22, 23, 24], "addresses": [100, 199]},
                {"address_less": [7, 8, 17, 43, 100]},
            ],
        }
    }
)
GRANTS = {"operator": {1: (0, 9999), 2: (0, 9999), 3: (0, 9999), 4: (0, 9999)}}
GRANTS["engineer"] = {code: (100, 199) for code in (3, 6, 16, 22, 23, 24)}
ADDRESS_LESS = {"operator": frozenset(), "engineer": frozenset({7, 8, 17, 43, 100})}


@fuzz_settings()
@given(
    data=st.binary(max_size=300) | request_frames(), role=st.sampled_from(["operator", "engineer", "nobody"])
)
def test_hostile_frames_are_parse_errors_or_decided_within_the_grants(data, role):
    try:
        header = parse_mbap_header(data)
        pdu = data[MBAP_HEADER : MBAP_HEADER + header.pdu_length]
        if len(pdu) != header.pdu_length:
            event("frame cut short")
            return
        ranges = request_ranges(pdu)
    except ParseError as exc:
        event(f"refused: {exc.rule}")
        return
    function = pdu[0]
    decision = POLICY.decide(role, function, ranges)
    event(f"{role} {'allowed' if decision.allowed else 'denied'}")
    if not decision.allowed:
        assert decision.reason
        return
    if function in ADDRESS_LESS.get(role, frozenset()):
        return
    first, last = GRANTS[role][function]
    assert ranges is not None
    for touched in ranges:
        assert first <= touched.first <= touched.last <= last, (function, ranges)
