"""Modbus/TCP request frames: valid ones for every function code otward knows, then mutated."""

from __future__ import annotations

import struct

from hypothesis import strategies as st

from tests.fuzz.mutate import byte_mutation


def frame(
    transaction: int, pdu: bytes, *, unit: int = 1, protocol: int = 0, length: int | None = None
) -> bytes:
    """An MBAP header and ``pdu``; ``length`` overrides the header's length field."""
    return struct.pack(">HHHB", transaction, protocol, len(pdu) + 1 if length is None else length, unit) + pdu


@st.composite
def valid_pdus(draw: st.DrawFn) -> bytes:
    """A request PDU the gateway's parser accepts (its policy may still deny it)."""
    address = draw(st.integers(0, 0xFFFF) | st.sampled_from([0, 9, 9999, 10000, 0xFFFF]))
    code = draw(
        st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 15, 16, 17, 22, 23, 24, 43, 20, 21, 42, 100])
    )
    if code in (1, 2, 3, 4):
        limit = 2000 if code < 3 else 125
        quantity = draw(st.integers(1, min(limit, 0x10000 - address)))
        return struct.pack(">BHH", code, address, quantity)
    if code in (5, 6):
        return struct.pack(">BHH", code, address, draw(st.integers(0, 0xFFFF)))
    if code in (7, 11, 12, 17):
        return bytes([code])
    if code == 8:
        return (
            struct.pack(">BH", code, draw(st.integers(0, 0xFFFF)))
            + draw(st.binary(max_size=8)).ljust(2, b"\0")[:2]
        )
    if code in (15, 16):
        limit = 0x07B0 if code == 15 else 0x7B
        quantity = draw(st.integers(1, min(limit, 0x10000 - address)))
        count = (quantity + 7) // 8 if code == 15 else 2 * quantity
        return struct.pack(">BHHB", code, address, quantity, count) + bytes(count)
    if code == 22:
        return struct.pack(">BHHH", code, address, 0xFFFF, 0)
    if code == 23:
        write = draw(st.integers(1, 0x79))
        return struct.pack(">BHHHHB", code, address, draw(st.integers(1, 0x7D)), 0, write, 2 * write) + bytes(
            2 * write
        )
    if code == 24:
        return struct.pack(">BH", code, address)
    if code == 43:
        return bytes([43, draw(st.sampled_from([14, 13])), 1, 0])
    return bytes([code]) + draw(st.binary(max_size=16))


@st.composite
def request_frames(draw: st.DrawFn) -> bytes:
    """One frame: valid, or with its header or PDU mutated (lengths, protocol id, bytes)."""
    pdu = draw(valid_pdus())
    transaction = draw(st.integers(0, 0xFFFE))
    kind = draw(
        st.sampled_from(["valid", "valid", "valid", "pdu", "length", "protocol", "bytes", "empty", "huge"])
    )
    if kind == "pdu":
        return frame(transaction, draw(byte_mutation(pdu)))
    if kind == "length":
        return frame(
            transaction,
            pdu,
            length=draw(st.sampled_from([0, 1, 2, 253, 254, 255, 0xFFFF]))
            if draw(st.booleans())
            else len(pdu) + draw(st.sampled_from([-1, 1, 2])),
        )
    if kind == "protocol":
        return frame(transaction, pdu, protocol=draw(st.integers(1, 0xFFFF)))
    if kind == "bytes":
        return draw(byte_mutation(frame(transaction, pdu)))
    if kind == "empty":
        return frame(transaction, b"")
    if kind == "huge":
        return frame(transaction, bytes([3]) + bytes(260))
    return frame(transaction, pdu)
