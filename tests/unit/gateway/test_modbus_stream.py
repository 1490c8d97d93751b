"""The gateway's Modbus data path without sockets: arbitrary client bytes, fake transports.

Properties: nothing the role may not do ever reaches the upstream; every allowed frame reaches it
whole and unchanged; answers come back in request order; anything malformed closes the connection.
"""

from __future__ import annotations

import ssl
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from otward.core.modbus import parse_policy, request_ranges
from otward.gateway.identity import PeerIdentity
from otward.gateway.proxy import Gateway, GatewayOptions, _Connection, _Upstream
from otward.gateway.revocation import RevocationChecker

POLICY = parse_policy(
    {
        "role": {
            "operator": [{"functions": [1, 2, 3, 4], "addresses": [0, 999]}],
            "engineer": [{"functions": [3, 6, 16, 22, 24], "addresses": [100, 199]}],
        }
    }
)


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.written.append(bytes(data))

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def abort(self) -> None:
        self.closed = True

    def close(self) -> None:
        self.closed = True

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass


def _connection(role: str, in_flight: int) -> tuple[_Connection, FakeTransport, FakeTransport]:
    options = GatewayOptions("127.0.0.1", 0, "127.0.0.1", 1, policy=POLICY, max_in_flight=in_flight)
    gateway = Gateway(options, ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), [], RevocationChecker([], []))
    connection = _Connection(gateway, "192.0.2.1:50000", "192.0.2.1")
    connection.peer = PeerIdentity("plc", (), 1, role, None, ())
    client, upstream = FakeTransport(), FakeTransport()
    gateway.connections.add(connection)
    gateway._hold(connection.host)
    connection.start(client, upstream)  # type: ignore[arg-type]
    return connection, client, upstream


def _frames(data: bytes) -> list[bytes]:
    frames = []
    while len(data) >= 7:
        end = 6 + struct.unpack_from(">H", data, 4)[0]
        frames.append(data[:end])
        data = data[end:]
    assert data == b""
    return frames


def _request(function: int, start: int, quantity: int, transaction: int) -> bytes:
    if function in (15, 16):
        count = (quantity + 7) // 8 if function == 15 else 2 * quantity
        pdu = struct.pack(">BHHB", function, start, quantity, count) + bytes(count)
    elif function == 22:  # address, AND mask, OR mask
        pdu = struct.pack(">BHHH", function, start, quantity, 0)
    elif function == 24:  # the FIFO pointer address alone
        pdu = struct.pack(">BH", function, start)
    else:
        pdu = struct.pack(">BHH", function, start, quantity)
    return struct.pack(">HHHB", transaction, 0, len(pdu) + 1, 1) + pdu


requests = st.builds(
    _request,
    st.sampled_from([1, 2, 3, 4, 5, 6, 15, 16, 22, 24]),
    st.integers(0, 1100),
    st.integers(1, 20),
    st.integers(0, 65535),
)
garbage = st.binary(min_size=1, max_size=20)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["operator", "engineer"]),
    st.integers(1, 8),
    st.lists(st.one_of(requests, requests, requests, garbage), max_size=12),
    st.integers(1, 50),
)
def test_only_allowed_frames_reach_the_upstream(role, in_flight, parts, chunk):
    connection, client, upstream = _connection(role, in_flight)
    stream = b"".join(parts)
    for offset in range(0, len(stream), chunk):
        if connection.closed:
            break
        connection.data_received(stream[offset : offset + chunk])
    forwarded = _frames(b"".join(upstream.written))
    for frame in forwarded:
        ranges = request_ranges(frame[7:])
        assert POLICY.decide(role, frame[7], ranges).allowed
    assert len(forwarded) <= in_flight  # no answers yet: never more than the window
    for frame in _frames(b"".join(client.written)):  # only the gateway's own exceptions so far
        assert frame[7] & 0x80
        assert frame[8] == 0x01


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 8), st.lists(st.booleans(), min_size=1, max_size=30), st.booleans())
def test_answers_come_back_in_request_order(in_flight, allowed, reverse):
    connection, client, upstream = _connection("operator", in_flight)
    answer_side = _Upstream(connection)
    frames = [_request(3 if ok else 6, 5, 1, transaction) for transaction, ok in enumerate(allowed, start=1)]
    connection.data_received(b"".join(frames))
    answered = 0
    while True:
        pending = _frames(b"".join(upstream.written))[answered:]
        if not pending:
            break
        answered += len(pending)
        answers = [f[:4] + struct.pack(">HB", 5, 1) + bytes([3, 2, 0, 5]) for f in pending]
        if reverse:
            answers.reverse()  # an upstream answering out of order
        answer_side.data_received(b"".join(answers))
    got = _frames(b"".join(client.written))
    assert [struct.unpack_from(">H", f)[0] for f in got] == list(range(1, len(allowed) + 1))
    for frame, ok in zip(got, allowed, strict=True):
        assert frame[7] == (3 if ok else 0x86)
    assert not connection.closed


def test_an_unasked_answer_closes_the_connection():
    connection, _, upstream = _connection("operator", 1)
    _Upstream(connection).data_received(struct.pack(">HHHB", 9, 0, 3, 1) + bytes([3, 0]))
    assert connection.closed
    assert upstream.closed


def test_a_malformed_frame_closes_before_anything_after_it():
    connection, _, upstream = _connection("operator", 4)
    good = _request(3, 0, 1, 1)
    bad = struct.pack(">HHHB", 2, 7, 6, 1) + bytes([3, 0, 0, 0, 1])  # protocol id 7
    connection.data_received(good + bad + good)
    assert connection.closed
    assert upstream.closed
