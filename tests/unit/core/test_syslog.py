"""The RFC 5424 encoder: one line per message, whatever the fields hold, and every part in its grammar."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otward.core.audit import AuditEvent, AuditRecord, EventType, Outcome
from otward.core.syslog import escape_text, format_message, header_field, param_value, to_syslog
from otward.services.audit import to_jsonl

FORGED = (
    '\n<86>1 2026-11-22T12:00:00.000000Z plc otward-ca - cert-issued [otward@32473 type="cert.issued"] forged'
)
HOSTILE = [
    FORGED,
    "cr\rlf\r\n",
    'quote " bracket ] backslash \\ end',
    "nel\x85 ls\u2028 ps\u2029 vt\x0b ff\x0c fs\x1c",
    "nul\x00 del\x7f esc\x1b[31m",
    "bidi \u202egnp.exe",
    "tag \U000e0041 emoji \U0001f600",
    "lone surrogate \ud800",
    "",
]

_HEADER = re.compile(
    r"<(?P<pri>\d{1,3})>1 (?P<time>[!-~]+) (?P<host>[!-~]{1,255}) (?P<app>[!-~]{1,48})"
    r" (?P<procid>[!-~]{1,128}) (?P<msgid>[!-~]{1,32}) "
)


def parse_rfc5424(line: str) -> dict[str, object]:
    """A strict reader of the RFC 5424 grammar otward writes: header, one SD-ELEMENT, optional MSG.

    PARAM-VALUE escapes are undone as RFC 5424 6.3.3 says (only \\", \\\\ and \\]); anything else
    after a backslash stays as it is."""
    assert "\n" not in line
    assert "\r" not in line
    header = _HEADER.match(line)
    assert header, line
    pos = header.end()
    assert line[pos] == "[", line
    end_id = pos + 1
    while line[end_id] not in " ]":
        assert "!" <= line[end_id] <= "~"
        assert line[end_id] not in '="'
        end_id += 1
    sd_id = line[pos + 1 : end_id]
    assert 1 <= len(sd_id) <= 32
    pos = end_id
    params: dict[str, str] = {}
    while line[pos] == " ":
        eq = line.index("=", pos)
        name = line[pos + 1 : eq]
        assert re.fullmatch(r"[!-~]{1,32}", name), name
        assert not set(name) & set(' ]"'), name
        assert line[eq + 1] == '"'
        pos, value = eq + 2, []
        while line[pos] != '"':
            if line[pos] == "\\" and line[pos + 1] in '"\\]':
                value.append(line[pos + 1])
                pos += 2
            else:
                assert line[pos] != "]", "an unescaped ] inside a PARAM-VALUE"
                value.append(line[pos])
                pos += 1
        params[name] = "".join(value)
        pos += 1
    assert line[pos] == "]", line
    rest = line[pos + 1 :]
    assert rest == "" or rest.startswith(" ")
    return {**header.groupdict(), "sd_id": sd_id, "params": params, "msg": rest[1:]}


def _record(text: str, **fields: str) -> AuditRecord:
    event = AuditEvent(
        time=datetime(2026, 11, 22, 12, 0, tzinfo=UTC),
        host=fields.get("host", "ca-1"),
        component=fields.get("component", "api"),
        type=EventType.DEVICE_ATTESTED,
        subject=text,
        outcome=Outcome.FAILURE,
        reason=text or None,
        source=fields.get("source", "192.0.2.7"),
        request_id=fields.get("request_id", "req-1"),
        details={"actor": "anonymous", "rule": text, "é": "dropped", "bad name": "dropped", "k": text},
    )
    return AuditRecord(7, event, b"\x00" * 32, b"\x01" * 32)


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_fields_make_exactly_one_rfc5424_line(text):
    record = _record(text, host=f"host{text}", component=f"api{text}", request_id=f"r{text}")
    line = to_syslog(record)
    assert len((line + "\n").splitlines()) == 1  # splitlines also splits at NEL, U+2028, VT, FS ...
    line.encode("utf-8")  # no lone surrogate left either
    parsed = parse_rfc5424(line)
    assert parsed["pri"] == str(10 * 8 + 4)
    assert parsed["sd_id"] == "otward@32473"
    params = parsed["params"]
    assert isinstance(params, dict)
    assert params["seq"] == "7"
    # RFC 5424 unescaping gives back ", \\ and ]; otward's \\uXXXX escapes stay as text
    assert params["subject"] == escape_text(text, specials="")
    assert params["k"] == escape_text(text, specials="")
    assert "é" not in params
    assert "bad name" not in params
    assert parsed["msg"] == escape_text(f"device.attested failure: {text}")


def test_a_forged_message_stays_inside_its_field():
    line = to_syslog(_record(FORGED))
    assert "\\u000a<86>1" in line
    assert not re.search(r"(^|\n)<86>", line)


@pytest.mark.parametrize(
    ("value", "limit", "expected"),
    [
        ("ca-1.plant.example", 255, "ca-1.plant.example"),
        ("with space", 255, "with_space"),
        ("new\nline", 255, "new_line"),
        ("müller", 255, "m_ller"),
        ("", 48, "-"),
        (None, 48, "-"),
        ("x" * 40, 32, "x" * 32),
    ],
)
def test_header_fields_are_printusascii_within_their_length(value, limit, expected):
    assert header_field(value, limit) == expected


def test_param_values_escape_the_three_rfc5424_characters():
    assert param_value('a"b\\c]d') == 'a\\"b\\\\c\\]d'
    assert param_value("plain text, ünïcödé") == "plain text, ünïcödé"


def test_empty_msg_leaves_out_the_separator():
    line = format_message(
        priority=14,
        timestamp="2026-11-22T12:00:00.000000Z",
        hostname="h",
        app_name="a",
        procid=None,
        msgid=None,
        sd_id="x@32473",
        params={},
        msg="",
    )
    assert line == "<14>1 2026-11-22T12:00:00.000000Z h a - - [x@32473]"


@pytest.mark.parametrize("priority", [-1, 192])
def test_priority_outside_the_grammar_is_refused(priority):
    with pytest.raises(ValueError, match="priority"):
        format_message(
            priority=priority,
            timestamp="t",
            hostname=None,
            app_name=None,
            procid=None,
            msgid=None,
            sd_id="x@1",
            params={},
            msg="m",
        )


def test_sd_id_outside_the_grammar_is_refused():
    with pytest.raises(ValueError, match="SD-ID"):
        format_message(
            priority=1,
            timestamp="t",
            hostname=None,
            app_name=None,
            procid=None,
            msgid=None,
            sd_id="a b",
            params={},
            msg="m",
        )


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_json_lines_export_stays_one_line_per_event_and_decodes_to_the_event(text):
    records = [_record(text), _record("second")]
    out = "".join(to_jsonl(iter(records)))
    lines = out.splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["subject"] == text
    assert first["details"]["k"] == text
    assert json.loads(lines[1])["subject"] == "second"


@given(st.text(max_size=60))
def test_any_text_gives_one_parseable_line(text):
    line = to_syslog(_record(text, host=text, request_id=text))
    assert len((line + "\n").splitlines()) == 1
    parse_rfc5424(line)
    assert len("".join(to_jsonl(iter([_record(text)]))).splitlines()) == 1
