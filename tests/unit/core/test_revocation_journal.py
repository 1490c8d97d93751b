"""The revocation journal's lines: encoded, parsed back, a torn last line left, a bad line refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.x509 import ReasonFlags

from otward.core.revocation_journal import (
    JournalContents,
    JournalCrl,
    JournalRevocation,
    encode_entry,
    parse_journal,
)
from otward.errors import ParseError

WHEN = datetime(2026, 12, 7, 10, 0, 0, 123456, tzinfo=UTC)
REVOKED = JournalRevocation(
    ca="issuing",
    serial="1f2e",
    revoked_at=WHEN,
    reason=ReasonFlags.key_compromise,
    certificate_der=b"\x30\x03\x02\x01\x01",
    profile="tls-client",
    kind="end-entity",
    device_id=None,
)
CRL = JournalCrl("issuing", 7, WHEN)


def test_entries_round_trip():
    data = (
        encode_entry(REVOKED)
        + encode_entry(CRL)
        + encode_entry(JournalRevocation("root", "a", WHEN, ReasonFlags.unspecified))
    )
    entries, used = parse_journal(data)
    assert used == len(data)
    assert entries == [REVOKED, CRL, JournalRevocation("root", "a", WHEN, ReasonFlags.unspecified)]


def test_a_torn_last_line_is_left_for_later():
    whole = encode_entry(REVOKED)
    entries, used = parse_journal(whole + encode_entry(CRL)[:-10])
    assert entries == [REVOKED]
    assert used == len(whole)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"not json\n", "not a revocation journal entry"),
        (b'{"v":2,"type":"crl","ca":"x","crl_number":1,"this_update":"2026-01-01T00:00:00Z"}\n', "version"),
        (b'{"v":1,"type":"crl","ca":"x","crl_number":0,"this_update":"2026-01-01T00:00:00Z"}\n', "positive"),
        (
            b'{"v":1,"type":"revoked","ca":"x","serial":"0A","revoked_at":"2026-01-01T00:00:00Z",'
            b'"reason":"keyCompromise"}\n',
            "lower-case",
        ),
        (
            b'{"v":1,"type":"revoked","ca":"x","serial":"a","revoked_at":"2026-01-01T00:00:00",'
            b'"reason":"keyCompromise"}\n',
            "time zone",
        ),
        (
            b'{"v":1,"type":"revoked","ca":"x","serial":"a","revoked_at":"2026-01-01T00:00:00Z",'
            b'"reason":"certificateHold"}\n',
            "certificateHold",
        ),
        (b'{"v":1,"type":"other"}\n', "unknown type"),
    ],
    ids=["json", "version", "crl-number", "serial-case", "naive-time", "hold", "type"],
)
def test_a_bad_line_is_refused_naming_it(line, why):
    with pytest.raises(ParseError, match=f"line 2: .*{why}"):
        parse_journal(encode_entry(CRL) + line)


def test_contents_keep_the_first_revocation_and_the_highest_crl_number():
    later = JournalRevocation("issuing", "1f2e", datetime(2027, 1, 1, tzinfo=UTC), ReasonFlags.superseded)
    contents = JournalContents()
    contents.add([REVOKED, later, CRL, JournalCrl("issuing", 3, WHEN)])
    assert contents.revocations["1f2e"] is REVOKED
    assert contents.crl_numbers == {"issuing": 7}
    other = JournalContents()
    other.add([JournalCrl("issuing", 9, WHEN), JournalCrl("root", 2, WHEN)])
    contents.merge(other)
    assert contents.crl_numbers == {"issuing": 9, "root": 2}
