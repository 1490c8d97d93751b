"""Hostile Modbus frames through a RUNNING gateway: otward's gateway (mutual TLS, the role policy)
in front of a pymodbus server on loopback, clients with real certificates of an otward installation.

Each example sends a few frames (valid requests of every function code, mutated) and then a
legitimate read on one connection. Properties:

* the upstream receives exactly the frames the policy allows for the client's role, in order and
  unchanged (the core parser and policy say which): never a frame the policy refuses;
* every frame before a malformed one is answered (upstream answer or exception 01) and the
  legitimate read after them too; a malformed frame closes the connection, and a new connection
  is then served;
* the gateway's event loop reports no exception.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import event, given, note
from hypothesis import strategies as st

from otward.core.modbus import MBAP_HEADER, parse_mbap_header, parse_policy, request_ranges
from otward.errors import ParseError
from tests.conftest import free_port
from tests.fuzz.frames import frame, request_frames
from tests.fuzz.profile import fuzz_settings
from tests.integration.gateway.conftest import (
    POLICY,
    Credentials,
    GatewayPki,
    LoopThread,
    RunningGateway,
    gateway_pki,
    start_gateway,
)

pytestmark = [pytest.mark.fuzz, pytest.mark.integration]

__all__ = ["gateway_pki"]  # the fixture, imported so this module can use it

PARSED_POLICY = parse_policy(__import__("tomllib").loads(POLICY))
SENTINEL = frame(0xFFFF, struct.pack(">BHH", 3, 10, 2))  # operator and engineer may read 10..11


@dataclass
class Upstream:
    received: bytearray = field(default_factory=bytearray)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> bytes:
        with self.lock:
            data = bytes(self.received)
            self.received.clear()
        return data


@dataclass
class Rig:
    gateway: RunningGateway
    upstream: Upstream
    pki: GatewayPki
    clients: dict[str, Credentials]
    errors: list[dict[str, Any]]
    sessions: dict[str, ssl.SSLSocket | None] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)

    def connect(self, role: str) -> ssl.SSLSocket:
        session = self.sessions.get(role)
        if session is None:
            context = self.clients[role].client_context(self.pki.trust)
            raw = socket.create_connection(("127.0.0.1", self.gateway.port), timeout=10)
            session = context.wrap_socket(raw, server_hostname="127.0.0.1")
            self.sessions[role] = session
        return session

    def drop(self, role: str) -> None:
        session = self.sessions.pop(role, None)
        if session is not None:
            with contextlib.suppress(OSError):
                session.close()


@pytest.fixture(scope="module")
def rig(gateway_pki: GatewayPki) -> Iterator[Rig]:
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    upstream = Upstream()

    def record(sending: bool, data: bytes) -> bytes:
        if not sending:
            with upstream.lock:
                upstream.received += data
        return data

    thread = LoopThread()
    port = free_port()
    device = SimDevice(1, [SimData(0, count=1000, values=list(range(1000)), datatype=DataType.REGISTERS)])
    server = thread.call(lambda: ModbusTcpServer(device, address=("127.0.0.1", port), trace_packet=record))
    thread.run(server.serve_forever(background=True))
    gateway = start_gateway(gateway_pki, port, max_connections_per_source=64)
    errors: list[dict[str, Any]] = []
    gateway.thread.loop.call_soon_threadsafe(
        gateway.thread.loop.set_exception_handler, lambda loop, context: errors.append(context)
    )
    clients = {role: gateway_pki.client(f"fuzz-{role}", role=role) for role in ("operator", "engineer")}
    made = Rig(gateway, upstream, gateway_pki, clients, errors)
    yield made
    for role in list(made.sessions):
        made.drop(role)
    gateway.stop()
    thread.run(server.shutdown())
    thread.stop()


def expected(stream: bytes, role: str) -> tuple[bytes, int, bool]:
    """What the gateway must do with ``stream`` (whole frames, possibly ending in a malformed
    header): the frames it forwards, how many frames it answers, and whether it closes."""
    forwarded, answered, offset = [], 0, 0
    while offset < len(stream):
        try:
            header = parse_mbap_header(stream, offset)
            end = offset + MBAP_HEADER + header.pdu_length
            ranges = request_ranges(stream[offset + MBAP_HEADER : end])
        except ParseError:
            return b"".join(forwarded), answered, True
        if PARSED_POLICY.decide(role, stream[offset + MBAP_HEADER], ranges).allowed:
            forwarded.append(stream[offset:end])
        answered += 1
        offset = end
    return b"".join(forwarded), answered, False


def whole_frames(frames: list[bytes]) -> bytes:
    """The frames as one stream, a frame cut short padded with zeros to its declared length (and a
    header cut short to 7 bytes), so the gateway never waits for bytes that will not come."""
    stream = b"".join(frames)
    offset = 0
    while offset < len(stream):
        stream = stream.ljust(offset + MBAP_HEADER, b"\0")
        _, protocol, length, _ = struct.unpack_from(">HHHB", stream, offset)
        if protocol != 0 or not 2 <= length <= 254:
            return stream
        end = offset + 6 + length
        stream = stream.ljust(end, b"\0")
        offset = end
    return stream


def read_answers(session: ssl.SSLSocket, count: int) -> tuple[list[bytes], bool]:
    """Answer frames until there are ``count`` of them or the gateway closes the connection (True)."""
    buffer, answers = b"", []
    while len(answers) < count:
        try:
            chunk = session.recv(65536)
        except TimeoutError:
            pytest.fail(f"the gateway neither answered nor closed the connection (got {answers})")
        except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
            return answers, True
        if not chunk:
            return answers, True
        buffer += chunk
        while len(buffer) >= MBAP_HEADER:
            end = 6 + struct.unpack_from(">H", buffer, 4)[0]
            if len(buffer) < end:
                break
            answers.append(buffer[:end])
            buffer = buffer[end:]
    return answers, False


@fuzz_settings(scale=0.5)
@given(
    frames=st.lists(request_frames(), min_size=1, max_size=4), role=st.sampled_from(["operator", "engineer"])
)
def test_hostile_frames_never_pass_the_policy_nor_stop_the_gateway(rig, frames, role):
    stream = whole_frames(frames)
    note(f"{role}: {stream.hex()}; before: {rig.history[-3:]}")
    rig.history.append(f"{role} {stream.hex()}")
    forwarded, answered, closes = expected(stream, role)
    rig.upstream.take()
    session = rig.connect(role)
    try:
        session.sendall(stream + (b"" if closes else SENTINEL))
    except OSError:  # the gateway closed on a malformed frame while the rest was being sent
        assert closes, "the gateway closed a connection without a malformed frame"
    if closes:
        event("closed")
        answers, closed = read_answers(session, answered + 1)
        assert closed, "a malformed frame must close the connection"
        assert len(answers) <= answered  # an abort may drop answers still in the write buffer
        rig.drop(role)
        session = rig.connect(role)  # a new connection is served
        session.sendall(SENTINEL)
        answers, closed = read_answers(session, 1)
        assert not closed
        assert answers[-1][:2] == b"\xff\xff"
        received = rig.upstream.take()
        assert received.endswith(SENTINEL)
        received = received[: -len(SENTINEL)]
        assert forwarded.startswith(received), "the upstream got a frame the policy refuses"
    else:
        event(f"answered {answered}")
        answers, closed = read_answers(session, answered + 1)
        assert not closed, "the gateway closed a connection without a malformed frame"
        assert answers[-1][:2] == b"\xff\xff"
        assert rig.upstream.take() == forwarded + SENTINEL
    assert rig.errors == []
