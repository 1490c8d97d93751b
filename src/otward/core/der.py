"""Strict DER (X.690 sections 8, 10 and 11) on bytes, without a schema.

``cryptography`` parses the structures it knows with a DER-strict parser, but leaves
some bytes opaque: the value of an extension it does not know, for one. This module
checks that such bytes are canonical DER all the way down, and reads the few
structures otward looks into itself (a subject's attribute tags). It is small,
pure Python and fast enough for every request (a CSR is some forty TLVs).

Checked: definite lengths in the shortest form, tags in the shortest form, universal
string and primitive types never constructed (and SEQUENCE and SET always), BOOLEAN
``00`` or ``FF``, INTEGER and ENUMERATED in the fewest octets, NULL empty, BIT STRING
padding bits zero, SET elements in ascending order of their encodings, nothing after
the last TLV. Not checkable without a schema: omitted DEFAULT values.
"""

from __future__ import annotations

from typing import NamedTuple

from otward.errors import ParseError

__all__ = ["Tlv", "decode_oid", "read_tlv", "read_tlvs", "validate_der"]

_MAX_DEPTH = 32
# Universal types that DER encodes primitive only: BOOLEAN, INTEGER, BIT STRING, OCTET STRING, NULL,
# OBJECT IDENTIFIER, REAL, ENUMERATED, RELATIVE-OID, the string types and the time types.
_PRIMITIVE_ONLY = frozenset(
    {1, 2, 3, 4, 5, 6, 9, 10, 13, 12, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30}
)
_CONSTRUCTED_ONLY = frozenset({16, 17})  # SEQUENCE, SET


class Tlv(NamedTuple):
    """One tag-length-value: class (0 universal, 1 application, 2 context, 3 private), number,
    constructed bit, the content octets and the whole encoding."""

    tag_class: int
    number: int
    constructed: bool
    content: bytes
    encoding: bytes

    def children(self) -> list[Tlv]:
        """The TLVs inside a constructed value (a ParseError for a primitive one)."""
        if not self.constructed:
            raise ParseError("expected a constructed DER value", rule="der")
        return read_tlvs(self.content)


def _fail(what: str) -> ParseError:
    return ParseError(f"not DER: {what}", rule="der")


def read_tlv(data: bytes, offset: int = 0) -> tuple[Tlv, int]:
    """The TLV at ``offset`` and the offset after it; a ParseError unless tag and length are DER."""
    end = len(data)
    if offset >= end:
        raise _fail("value missing")
    first = data[offset]
    tag_class, constructed, number = first >> 6, bool(first & 0x20), first & 0x1F
    pos = offset + 1
    if number == 0x1F:  # high tag number form: base 128, no leading 0x80, and only for numbers >= 31
        number = 0
        while True:
            if pos >= end:
                raise _fail("tag cut short")
            octet = data[pos]
            if number == 0 and octet == 0x80:
                raise _fail("tag number not in its shortest form")
            number = (number << 7) | (octet & 0x7F)
            pos += 1
            if not octet & 0x80:
                break
        if number < 0x1F:
            raise _fail("tag number not in its shortest form")
    if pos >= end:
        raise _fail("length missing")
    length = data[pos]
    pos += 1
    if length == 0x80:
        raise _fail("indefinite length")
    if length & 0x80:
        count = length & 0x7F
        if count > 4 or pos + count > end:
            raise _fail("length cut short or too long")
        length = int.from_bytes(data[pos : pos + count], "big")
        if data[pos] == 0 or length < 0x80:
            raise _fail("length not in its shortest form")
        pos += count
    if pos + length > end:
        raise _fail("value cut short")
    return Tlv(
        tag_class, number, constructed, data[pos : pos + length], data[offset : pos + length]
    ), pos + length


def read_tlvs(data: bytes) -> list[Tlv]:
    """Every TLV of a concatenation (the content of a SEQUENCE or SET), checked for tag and length."""
    items, offset = [], 0
    while offset < len(data):
        item, offset = read_tlv(data, offset)
        items.append(item)
    return items


def _check(tlv: Tlv, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise _fail("nested too deeply")
    content = tlv.content
    if tlv.tag_class == 0:
        if tlv.constructed and tlv.number in _PRIMITIVE_ONLY:
            raise _fail(f"universal type {tlv.number} in constructed form")
        if not tlv.constructed and tlv.number in _CONSTRUCTED_ONLY:
            raise _fail(f"universal type {tlv.number} in primitive form")
        if tlv.number == 1 and content not in (b"\x00", b"\xff"):
            raise _fail("BOOLEAN other than 00 or FF")
        if tlv.number in (2, 10) and (
            not content or (len(content) > 1 and (content[0], content[1] & 0x80) in ((0, 0), (0xFF, 0x80)))
        ):
            raise _fail("INTEGER not in its fewest octets")
        if tlv.number == 5 and content:
            raise _fail("NULL with content")
        if tlv.number == 3 and (
            not content
            or content[0] > 7
            or (len(content) == 1 and content[0])
            or (content[-1] & ((1 << content[0]) - 1))
        ):
            raise _fail("BIT STRING padding")
    if not tlv.constructed:
        return
    children = tlv.children()
    if tlv.tag_class == 0 and tlv.number == 17:
        encodings = [child.encoding for child in children]
        width = max((len(e) for e in encodings), default=0)
        padded = [e.ljust(width, b"\x00") for e in encodings]
        if padded != sorted(padded):
            raise _fail("SET elements out of order")
    for child in children:
        _check(child, depth + 1)


def validate_der(data: bytes) -> Tlv:
    """``data`` as exactly one canonical DER value (ParseError with rule ``der`` otherwise)."""
    tlv, end = read_tlv(data)
    if end != len(data):
        raise _fail("bytes after the value")
    _check(tlv, 0)
    return tlv


def decode_oid(tlv: Tlv) -> str:
    """The dotted form of an OBJECT IDENTIFIER TLV (ParseError if it is none or not minimal)."""
    content = tlv.content
    if (tlv.tag_class, tlv.number, tlv.constructed) != (0, 6, False) or not content or content[-1] & 0x80:
        raise _fail("expected an OBJECT IDENTIFIER")
    arcs: list[int] = []
    value, fresh = 0, True
    for octet in content:
        if fresh and octet == 0x80:
            raise _fail("OBJECT IDENTIFIER arc not in its shortest form")
        value = (value << 7) | (octet & 0x7F)
        fresh = not octet & 0x80
        if fresh:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in (first, arcs[0] - 40 * first, *arcs[1:]))
