"""RFC 5424 syslog messages, one line each whatever the fields contain.

Audit events carry text that requesters chose (a CSR's subject, a device id, a
reason), and collectors read one message per line (or per RFC 5425 frame). So
every field goes through this encoder, which keeps each part within its grammar:

* header fields (HOSTNAME, APP-NAME, PROCID, MSGID) are PRINTUSASCII (``!`` to
  ``~``), at most 255, 48, 128 and 32 characters; any other character becomes
  ``_``, and an empty field is the NILVALUE ``-`` (RFC 5424 section 6.2);
* PARAM-NAMEs are ASCII names of at most 32 characters (others are left out);
* PARAM-VALUEs escape ``"``, ``\\`` and ``]`` with a backslash (section 6.3.3);
* in PARAM-VALUEs and the MSG, control, format and line-separator characters
  (Unicode categories Cc, Cf, Cs, Zl, Zp: newline, carriage return, NEL, U+2028,
  bidirectional overrides ...) are written as ``\\uXXXX`` (``\\UXXXXXXXX`` above
  the BMP), and the MSG escapes ``\\`` as ``\\\\`` so that the escape is unambiguous.

A receiver that only knows RFC 5424 shows such an escape as its characters; no
field can start a second message or forge one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

from otward.core.audit import AuditRecord, Outcome, format_time

__all__ = [
    "HEADER_LIMITS",
    "escape_text",
    "format_message",
    "header_field",
    "is_line_unsafe",
    "is_param_name",
    "param_value",
    "to_syslog",
]

HEADER_LIMITS = {"hostname": 255, "app_name": 48, "procid": 128, "msgid": 32}
"""RFC 5424 section 6: the longest each header field may be."""

_NILVALUE = "-"
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _escape_char(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def is_line_unsafe(char: str) -> bool:
    """True for a control, format, surrogate or line/paragraph separator character: what no field of
    a line-oriented export may carry as it is."""
    return unicodedata.category(char) in _UNSAFE_CATEGORIES


def header_field(value: str | None, max_length: int) -> str:
    """``value`` as a header field: PRINTUSASCII only (others become ``_``), cut to ``max_length``,
    ``-`` when empty."""
    if not value:
        return _NILVALUE
    return "".join(c if "!" <= c <= "~" else "_" for c in value[:max_length])


def is_param_name(name: str) -> bool:
    """True for a PARAM-NAME otward writes: ASCII letters, digits and ``_.-``, at most 32 long."""
    return _PARAM_NAME.fullmatch(name) is not None


def escape_text(value: str, *, specials: str = "\\") -> str:
    """``value`` with each character of ``specials`` preceded by ``\\`` and each control, format or
    line-separator character written as ``\\uXXXX``; the result contains no line break."""
    if value.isascii() and value.isprintable() and not any(s in value for s in specials):
        return value
    out = []
    for char in value:
        if char in specials:
            out.append("\\" + char)
        elif is_line_unsafe(char):
            out.append(_escape_char(char))
        else:
            out.append(char)
    return "".join(out)


def param_value(value: str) -> str:
    """A PARAM-VALUE: ``"``, ``\\`` and ``]`` escaped (RFC 5424 6.3.3), control characters as ``\\uXXXX``."""
    return escape_text(value, specials='\\"]')


def format_message(
    *,
    priority: int,
    timestamp: str,
    hostname: str | None,
    app_name: str | None,
    procid: str | None,
    msgid: str | None,
    sd_id: str,
    params: Mapping[str, str],
    msg: str,
) -> str:
    """One RFC 5424 message (no trailing newline) with a single SD-ELEMENT ``sd_id``.

    Parameters whose names are not PARAM-NAMEs are left out; ``sd_id`` must be one.
    """
    if not 0 <= priority <= 191:
        raise ValueError(f"syslog priority {priority} is outside 0..191")
    if not re.fullmatch(r"[A-Za-z0-9_.@-]{1,32}", sd_id):
        raise ValueError(f"{sd_id!r} is not an SD-ID")
    header = " ".join(
        (
            f"<{priority}>1",
            header_field(timestamp, 64),
            header_field(hostname, HEADER_LIMITS["hostname"]),
            header_field(app_name, HEADER_LIMITS["app_name"]),
            header_field(procid, HEADER_LIMITS["procid"]),
            header_field(msgid, HEADER_LIMITS["msgid"]),
        )
    )
    sd = "".join(f' {name}="{param_value(value)}"' for name, value in params.items() if is_param_name(name))
    return f"{header} [{sd_id}{sd}]" + (f" {escape_text(msg)}" if msg else "")


_SEVERITY = {Outcome.SUCCESS: 6, Outcome.FAILURE: 4}  # informational / warning
_FACILITY = 10  # security/authorization (authpriv)
_SD_ID = "otward@32473"  # RFC 5424 requires a private enterprise number; 32473 is the documentation PEN


def to_syslog(record: AuditRecord) -> str:
    """RFC 5424 message with the event in structured data (no trailing newline, never a line break)."""
    event = record.event
    params = {
        "seq": str(record.sequence),
        "type": event.type.value,
        "subject": event.subject,
        "outcome": event.outcome.value,
        "hash": record.hash.hex(),
    }
    if event.reason:
        params["reason"] = event.reason
    if event.source:
        params["src"] = event.source
    for key, value in event.details.items():
        params.setdefault(key, str(value))  # details never override the event's own fields
    return format_message(
        priority=_FACILITY * 8 + _SEVERITY[event.outcome],
        timestamp=format_time(event.time),
        hostname=event.host,
        app_name=f"otward-{event.component}",
        procid=event.request_id,
        msgid=event.type.value.replace(".", "-"),
        sd_id=_SD_ID,
        params=params,
        msg=f"{event.type.value} {event.outcome.value}: {event.subject}",
    )
