"""The gateway between real peers: a pymodbus TLS client with otward certificates and a pymodbus server.

Issue #5 item 4: ``operator`` reads but its write gets exception 0x01 and the upstream
value stays; ``engineer`` writes; no certificate, a self-signed one, an expired one,
one from another CA and a revoked one never reach the upstream.
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from pymodbus.client import ModbusTlsClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType

from otward.adapters.audit_file import FileAuditTrail
from otward.core.audit import EventType, Outcome
from otward.errors import PolicyViolationError
from otward.gateway import AuditWriter
from tests.integration.gateway.conftest import (
    Credentials,
    GatewayPki,
    ModbusUpstream,
    RunningGateway,
    start_gateway,
)

pytestmark = pytest.mark.integration


@pytest.fixture(params=["asyncio", "uvloop"])
def gateway(
    request: pytest.FixtureRequest, gateway_pki: GatewayPki, modbus_upstream: ModbusUpstream
) -> Iterator[RunningGateway]:
    running = start_gateway(gateway_pki, modbus_upstream.port, use_uvloop=request.param == "uvloop")
    yield running
    running.stop()


@contextlib.contextmanager
def modbus_client(credentials: Credentials, trust: Path, port: int) -> Iterator[ModbusTlsClient]:
    client = ModbusTlsClient(
        "127.0.0.1",
        port=port,
        sslctx=credentials.client_context(trust),
        framer=FramerType.TLS,
        retries=0,
        timeout=2,
    )
    try:
        yield client
    finally:
        client.close()


def test_operator_reads_but_cannot_write(gateway, gateway_pki, modbus_upstream):
    operator = gateway_pki.client("hmi-1", role="operator")
    with modbus_client(operator, gateway_pki.trust, gateway.port) as client:
        assert client.connect()
        result = client.read_holding_registers(10, count=5, device_id=1)
        assert not result.isError()
        assert result.registers == modbus_upstream.holding(10, 5)
        before = modbus_upstream.holding(10)
        denied = client.write_register(10, 4242, device_id=1)
        assert denied.isError()
        assert denied.exception_code == 0x01
        assert modbus_upstream.holding(10) == before
        # the connection stays usable after a denial
        assert client.read_holding_registers(10, count=1, device_id=1).registers == before
        # a read beyond the operator's address range is denied as well
        beyond = client.read_holding_registers(9998, count=3, device_id=1)
        assert beyond.isError()
        assert beyond.exception_code == 0x01
    assert gateway.gateway.denied == 2


def test_engineer_can_write(gateway, gateway_pki, modbus_upstream):
    engineer = gateway_pki.client("eng-1", role="engineer")
    with modbus_client(engineer, gateway_pki.trust, gateway.port) as client:
        assert client.connect()
        assert not client.write_register(10, 4242, device_id=1).isError()
        assert not client.write_registers(20, [1, 2, 3], device_id=1).isError()
    assert modbus_upstream.holding(10) == [4242]
    assert modbus_upstream.holding(20, 3) == [1, 2, 3]


def _serve_crl(crls: dict[str, bytes]) -> tuple[http.server.ThreadingHTTPServer, threading.Thread]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = crls.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def crl_server(gateway_pki: GatewayPki) -> Iterator[tuple[str, dict[str, bytes]]]:
    crls: dict[str, bytes] = {}
    server, thread = _serve_crl(crls)
    yield f"http://127.0.0.1:{server.server_address[1]}", crls
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


_KINDS = ("none", "self-signed", "expired", "other-ca", "server-eku", "revoked", "no-role", "unknown-role")


def _refused_client(kind: str, gateway_pki: GatewayPki) -> Credentials | None:
    if kind == "none":
        return None
    if kind == "self-signed":
        return gateway_pki.self_signed("rogue", "engineer")
    if kind == "expired":
        return gateway_pki.expired_client("old-eng", "engineer")
    if kind == "other-ca":
        return gateway_pki.foreign_client("foreign-eng", "engineer")
    if kind == "server-eku":  # a certificate for TLS servers only (the gateway's own)
        return gateway_pki.server
    if kind == "no-role":
        return gateway_pki.client("no-role-1")
    if kind == "unknown-role":
        return gateway_pki.client("visitor-1", role="visitor")
    revoked = gateway_pki.client("revoked-eng", role="engineer")
    gateway_pki.pki.revocation.revoke(revoked.serial, x509.ReasonFlags.key_compromise)
    return revoked


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("none", "PEER_DID_NOT_RETURN_A_CERTIFICATE"),
        ("self-signed", "self-signed certificate"),
        ("expired", "certificate has expired"),
        ("other-ca", "unable to get local issuer certificate"),
        ("server-eku", "unsuitable certificate purpose"),
        ("revoked", "is revoked"),
        ("no-role", "carries no Modbus role"),
        ("unknown-role", "role 'visitor' is not in the policy"),
    ],
    ids=lambda value: value if value in _KINDS else "why",
)
def test_refused_clients_never_reach_upstream(
    kind, reason, gateway_pki, modbus_upstream, crl_server, tmp_path
):
    base_url, crls = crl_server
    credentials = _refused_client(kind, gateway_pki)
    crls["/issuing.crl"] = gateway_pki.pki.revocation.current_crl("issuing").der
    trail = FileAuditTrail(tmp_path / "audit.jsonl")
    running = start_gateway(
        gateway_pki,
        modbus_upstream.port,
        audit=AuditWriter(trail),
        crl_urls=(f"{base_url}/issuing.crl",),
    )
    try:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.load_verify_locations(cafile=str(gateway_pki.trust))
        if credentials is not None:
            context.load_cert_chain(str(credentials.certificate), str(credentials.key))
        client = ModbusTlsClient(
            "127.0.0.1", port=running.port, sslctx=context, framer=FramerType.TLS, retries=0, timeout=1
        )
        try:
            written = None
            with contextlib.suppress(ModbusException, OSError):
                if client.connect():
                    written = client.write_register(3, 7777, device_id=1)
            assert written is None or written.isError()
        finally:
            client.close()
    finally:
        running.stop()
        trail.close()
    assert modbus_upstream.connections == []
    assert modbus_upstream.holding(3) == [3]
    with FileAuditTrail(tmp_path / "audit.jsonl") as reopened:
        refused = [r.event for r in reopened.records() if r.event.type is EventType.GATEWAY_CONNECTION]
    assert refused
    assert all(e.outcome is Outcome.FAILURE for e in refused)
    assert reason in refused[0].reason, refused[0].reason


def _frame(transaction_id: int, pdu: bytes, unit: int = 1) -> bytes:
    return struct.pack(">HHHB", transaction_id, 0, len(pdu) + 1, unit) + pdu


def _read_frames(sock: ssl.SSLSocket, count: int) -> list[bytes]:
    data = b""
    frames: list[bytes] = []
    while len(frames) < count:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
        while len(data) >= 7:
            length = struct.unpack_from(">H", data, 4)[0]
            if len(data) < 6 + length:
                break
            frames.append(data[: 6 + length])
            data = data[6 + length :]
    return frames


@contextlib.contextmanager
def tls_socket(credentials: Credentials, trust: Path, port: int) -> Iterator[ssl.SSLSocket]:
    context = credentials.client_context(trust)
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
    try:
        yield sock
    finally:
        sock.close()


def _pipeline(credentials: Credentials, trust: Path, port: int, batches: int = 1) -> list[bytes]:
    """Send reads and writes interleaved in one burst; return the answers in arrival order."""
    read = bytes([3]) + struct.pack(">HH", 7, 2)
    write = bytes([6]) + struct.pack(">HH", 7, 1)
    burst = b"".join(_frame(t, read if t % 2 else write) for t in range(1, 8 * batches + 1))
    with tls_socket(credentials, trust, port) as sock:
        sock.sendall(burst)
        return _read_frames(sock, 8 * batches)


def _check_order(frames: list[bytes], count: int) -> None:
    assert [struct.unpack_from(">H", f)[0] for f in frames] == list(range(1, count + 1))
    for frame in frames:
        if struct.unpack_from(">H", frame)[0] % 2:
            assert frame[7:] == bytes([3, 4, 0, 7, 0, 8])  # the registers, from upstream
        else:
            assert frame[7:] == bytes([0x86, 0x01])  # the gateway's exception


def test_pipelined_requests_to_a_one_at_a_time_upstream(gateway, gateway_pki):
    """pymodbus handles one frame per segment: the default (one request in flight) keeps it working."""
    operator = gateway_pki.client("hmi-2", role="operator")
    _check_order(_pipeline(operator, gateway_pki.trust, gateway.port), 8)


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
@pytest.mark.parametrize("in_flight", [1, 4, 16])
def test_pipelined_requests_are_answered_in_request_order(
    in_flight, use_uvloop, gateway_pki, pipelining_upstream
):
    running = start_gateway(gateway_pki, pipelining_upstream, max_in_flight=in_flight, use_uvloop=use_uvloop)
    try:
        operator = gateway_pki.client(f"hmi-pipe-{in_flight}", role="operator")
        _check_order(_pipeline(operator, gateway_pki.trust, running.port, batches=8), 64)
    finally:
        running.stop()


RANGE_POLICY = """
[[role.operator]]
functions = [3, 22, 23, 24]
addresses = [0, 99]
"""


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_mask_write_read_write_and_fifo_are_held_to_the_range(use_uvloop, gateway_pki, modbus_upstream):
    """Issue #11 item 9: FC 22, 23 (both ranges) and 24 outside the role's range never reach the device."""
    running = start_gateway(gateway_pki, modbus_upstream.port, policy=RANGE_POLICY, use_uvloop=use_uvloop)
    try:
        operator = gateway_pki.client("hmi-range", role="operator")
        with modbus_client(operator, gateway_pki.trust, running.port) as client:
            assert client.connect()
            outside = [
                client.mask_write_register(address=5000, and_mask=0, or_mask=0xFFFF, device_id=1),
                client.readwrite_registers(
                    read_address=0, read_count=2, write_address=500, values=[4242], device_id=1
                ),
                client.readwrite_registers(
                    read_address=500, read_count=2, write_address=20, values=[4242], device_id=1
                ),
                client.read_fifo_queue(address=60000, device_id=1),
            ]
            assert [(r.isError(), r.exception_code) for r in outside] == [(True, 0x01)] * 4
            assert modbus_upstream.requests == []
            assert modbus_upstream.holding(500) == [500]
            assert modbus_upstream.holding(20) == [20]

            assert not client.mask_write_register(
                address=10, and_mask=0x00F2, or_mask=0x0025, device_id=1
            ).isError()
            both = client.readwrite_registers(
                read_address=0, read_count=3, write_address=20, values=[7, 8], device_id=1
            )
            assert both.registers == [0, 1, 2]
            assert not client.read_fifo_queue(address=5, device_id=1).isError()
        assert modbus_upstream.requests == [22, 23, 24]
        assert modbus_upstream.holding(10) == [(10 & 0x00F2) | (0x0025 & ~0x00F2)]
        assert modbus_upstream.holding(20, 2) == [7, 8]
        assert running.gateway.denied == 4
    finally:
        running.stop()


def test_a_function_of_unknown_addressing_passes_only_as_address_less(gateway_pki, pipelining_upstream):
    """A code otward cannot parse (here read file record) is denied unless granted as address_less."""
    policy = RANGE_POLICY + "[[role.vendor]]\naddress_less = [20]\n"
    running = start_gateway(gateway_pki, pipelining_upstream, policy=policy)
    file_record = bytes([20, 7, 6, 0, 1, 0, 0, 0, 1])
    try:
        operator = gateway_pki.client("hmi-file", role="operator")
        with tls_socket(operator, gateway_pki.trust, running.port) as sock:
            sock.sendall(_frame(1, file_record))
            assert [frame[7:] for frame in _read_frames(sock, 1)] == [bytes([0x94, 0x01])]
        vendor = gateway_pki.client("vendor-tool", role="vendor")
        with tls_socket(vendor, gateway_pki.trust, running.port) as sock:
            sock.sendall(_frame(2, file_record))
            (answer,) = _read_frames(sock, 1)
            assert answer[7] == 3  # the test upstream answers every request as FC 3: it got through
        assert running.gateway.forwarded == 1
        assert running.gateway.denied == 1
    finally:
        running.stop()


@pytest.mark.parametrize(
    "frame",
    [
        struct.pack(">HHHB", 1, 1, 6, 1) + bytes([3, 0, 0, 0, 1]),  # protocol id 1
        struct.pack(">HHHB", 1, 0, 300, 1) + bytes(299),  # length beyond 254
        struct.pack(">HHHB", 1, 0, 1, 1),  # length 1: no function code
        _frame(1, bytes([3, 0, 0, 0, 200])),  # quantity 200 > 125
        _frame(1, bytes([16, 0, 0, 0, 2, 3, 0, 1, 0])),  # byte count does not match
        _frame(1, bytes([22, 0, 5, 0xFF, 0xFF])),  # mask write without its OR mask
        _frame(1, bytes([23, 0, 0, 0, 1, 0, 0, 0, 0, 0])),  # read/write, write quantity 0
        _frame(1, bytes([24, 0, 5, 0])),  # FIFO read with a trailing byte
    ],
    ids=["protocol-id", "oversized", "empty-pdu", "quantity", "byte-count", "fc22", "fc23", "fc24"],
)
def test_malformed_frames_close_the_connection(frame, gateway, gateway_pki, modbus_upstream):
    engineer = gateway_pki.client("eng-2", role="engineer")
    with tls_socket(engineer, gateway_pki.trust, gateway.port) as sock:
        sock.sendall(frame)
        assert _read_frames(sock, 1) == []  # closed, nothing answered
    assert modbus_upstream.holding(0) == [0]


def test_tunnel_mode_admits_only_listed_identities(gateway_pki, modbus_upstream):
    running = start_gateway(
        gateway_pki,
        modbus_upstream.port,
        policy=None,
        allow_identities=frozenset({"scada-1", "urn:example:plc-7"}),
    )
    try:
        by_cn = gateway_pki.client("scada-1")
        by_uri = gateway_pki.client("whatever", uris=("urn:example:plc-7",))
        stranger = gateway_pki.client("scada-2")
        for credentials in (by_cn, by_uri):
            with modbus_client(credentials, gateway_pki.trust, running.port) as client:
                assert client.connect()
                assert client.read_holding_registers(5, count=1, device_id=1).registers == [5]
        with modbus_client(stranger, gateway_pki.trust, running.port) as client:
            with contextlib.suppress(ModbusException, OSError):
                client.connect()
                result = client.read_holding_registers(5, count=1, device_id=1)
                assert result.isError()
        assert running.gateway.refused == 1
        assert running.gateway.accepted == 2
    finally:
        running.stop()


def test_audit_records_connections_and_denials(gateway_pki, modbus_upstream, tmp_path):
    trail = FileAuditTrail(tmp_path / "audit.jsonl")
    running = start_gateway(gateway_pki, modbus_upstream.port, audit=AuditWriter(trail))
    try:
        operator = gateway_pki.client("hmi-3", role="operator")
        with modbus_client(operator, gateway_pki.trust, running.port) as client:
            assert client.connect()
            assert client.write_registers(100, [1, 2], device_id=1).exception_code == 1
    finally:
        running.stop()
        trail.close()
    trail = FileAuditTrail(tmp_path / "audit.jsonl")
    assert trail.check().ok
    events = [r.event for r in trail.records()]
    trail.close()
    accepted = [e for e in events if e.type is EventType.GATEWAY_CONNECTION]
    assert [(e.subject, e.outcome, e.details["role"]) for e in accepted] == [
        ("hmi-3", Outcome.SUCCESS, "operator")
    ]
    denied = [e for e in events if e.type is EventType.GATEWAY_DENIED]
    assert len(denied) == 1
    assert denied[0].subject == "hmi-3"
    assert denied[0].details["function"] == "16"
    assert denied[0].details["addresses"] == "100-101"
    assert denied[0].details["role"] == "operator"
    assert all(e.component == "gateway" for e in events)


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_connection_limit_refuses_at_accept(use_uvloop, gateway_pki, modbus_upstream):
    running = start_gateway(gateway_pki, modbus_upstream.port, max_connections=1, use_uvloop=use_uvloop)
    try:
        engineer = gateway_pki.client("eng-3", role="engineer")
        with tls_socket(engineer, gateway_pki.trust, running.port) as first:
            first.sendall(_frame(1, bytes([3, 0, 0, 0, 1])))
            assert len(_read_frames(first, 1)) == 1
            raw = socket.create_connection(("127.0.0.1", running.port), timeout=5)
            with raw:
                try:
                    assert raw.recv(1) == b""  # closed without a handshake
                except ConnectionResetError:
                    pass
        assert running.gateway.refused == 1
    finally:
        running.stop()


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_slow_clients_do_not_keep_a_slot(use_uvloop, gateway_pki, modbus_upstream):
    running = start_gateway(
        gateway_pki,
        modbus_upstream.port,
        max_connections=1,
        handshake_timeout=0.5,
        idle_timeout=1.0,
        use_uvloop=use_uvloop,
    )
    try:
        # a client that never finishes its handshake is dropped...
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as silent:
            try:
                assert silent.recv(1) == b""
            except ConnectionResetError:
                pass
        # ...and so is one that handshakes and then stays silent
        engineer = gateway_pki.client("eng-4", role="engineer")
        with tls_socket(engineer, gateway_pki.trust, running.port) as idle:
            idle.settimeout(15)
            assert _read_frames(idle, 1) == []
        # the slot is free again
        deadline = time.monotonic() + 10
        while running.gateway.active and time.monotonic() < deadline:
            time.sleep(0.05)
        with tls_socket(engineer, gateway_pki.trust, running.port) as sock:
            sock.sendall(_frame(9, bytes([3, 0, 0, 0, 1])))
            assert len(_read_frames(sock, 1)) == 1
    finally:
        running.stop()


def _closed(sock: socket.socket | ssl.SSLSocket) -> bool:
    """True when the peer has closed the connection (EOF or reset), False while it is open."""
    sock.settimeout(0.2)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:  # reset, or a TLS alert
        return True


def _wait_until(condition: Any, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def _reads(client: ModbusTlsClient) -> list[int]:
    result = client.read_holding_registers(5, count=2, device_id=1)
    assert not result.isError()
    return list(result.registers)


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_one_source_cannot_hold_the_slots_of_others(use_uvloop, gateway_pki, modbus_upstream, tmp_path):
    """Issue #11 item 12: silent connections from one address hold at most its per-source slots (8)."""
    trail = FileAuditTrail(tmp_path / "audit.jsonl")
    running = start_gateway(
        gateway_pki,
        modbus_upstream.port,
        audit=AuditWriter(trail),
        max_connections=10,
        handshake_timeout=60,  # the silent clients stay in their handshake for the whole test
        use_uvloop=use_uvloop,
    )
    gateway = running.gateway
    engineer = gateway_pki.client("eng-sources", role="engineer")
    silent: list[socket.socket] = []
    try:
        for _ in range(30):
            silent.append(socket.create_connection(("127.0.0.1", running.port), timeout=5))
        _wait_until(lambda: gateway.active + gateway.refused >= 30)

        # another address still gets a slot and its requests through
        other = ModbusTlsClient(
            "127.0.0.1",
            port=running.port,
            sslctx=engineer.client_context(gateway_pki.trust),
            source_address=("127.0.0.2", 0),
            retries=0,
            timeout=5,
        )
        try:
            assert other.connect()
            assert _reads(other) == [5, 6]
            assert not other.write_register(30, 4242, device_id=1).isError()
            assert gateway.per_source == {"127.0.0.1": 8, "127.0.0.2": 1}
        finally:
            other.close()
        assert modbus_upstream.holding(30) == [4242]
        assert gateway.refused == 22
        assert sum(_closed(sock) for sock in silent) == 22  # closed at accept, before any TLS work

        # the flooding address itself is over its limit...
        with socket.create_connection(("127.0.0.1", running.port), timeout=5) as one_more:
            assert _closed(one_more)
        # ...until it lets its slots go
        for sock in silent:
            sock.close()
        _wait_until(lambda: "127.0.0.1" not in gateway.per_source)
        with modbus_client(engineer, gateway_pki.trust, running.port) as client:
            assert client.connect()
            assert _reads(client) == [5, 6]
    finally:
        for sock in silent:
            sock.close()
        running.stop()
        trail.close()
    with FileAuditTrail(tmp_path / "audit.jsonl") as reopened:
        refusals = [
            r.event
            for r in reopened.records()
            if r.event.type is EventType.GATEWAY_CONNECTION
            and (r.event.reason or "").startswith("per-source limit")
        ]
    # 23 refusals: the first recorded at once, the rest counted into summary events
    first, *summaries = refusals
    assert first.reason == "per-source limit 8 reached"
    assert first.outcome is Outcome.FAILURE
    assert (first.source or "").startswith("127.0.0.1:")
    assert summaries
    assert all(e.source == "127.0.0.1" and e.outcome is Outcome.FAILURE for e in summaries)
    assert sum(int(e.details["refused"]) for e in summaries) == 22


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_a_trickling_client_does_not_keep_its_slot(use_uvloop, gateway_pki, modbus_upstream):
    """In Modbus mode only whole requests count as activity: a byte now and then is still idle."""
    running = start_gateway(gateway_pki, modbus_upstream.port, idle_timeout=1.0, use_uvloop=use_uvloop)
    try:
        engineer = gateway_pki.client("eng-trickle", role="engineer")
        with tls_socket(engineer, gateway_pki.trust, running.port) as sock:
            sock.sendall(struct.pack(">HHHB", 1, 0, 254, 1))  # a frame of 260 bytes, sent a byte at a time
            closed = False
            deadline = time.monotonic() + 30  # 150 of the 253 PDU bytes: never a whole request
            while not closed and time.monotonic() < deadline:
                try:
                    sock.sendall(b"\x03")
                except OSError:
                    closed = True
                    break
                closed = _closed(sock)
            assert closed
        assert modbus_upstream.requests == []
    finally:
        running.stop()


def test_a_device_named_like_an_allowed_operator_is_not_admitted(gateway_pki, modbus_upstream):
    """The review's impostor: a device enrolls with the CN of an identity the gateway admits. A plain
    name in the allow-list names administrator-certified clients only; a device is admitted by its
    device URI (security review, issue #11 item 2)."""
    impostor = gateway_pki.device("hmi-operator")
    for allowed, admitted in (
        ({"hmi-operator"}, False),
        ({"urn:otward:device:acme:hmi-operator"}, True),
    ):
        running = start_gateway(
            gateway_pki, modbus_upstream.port, policy=None, allow_identities=frozenset(allowed)
        )
        try:
            with modbus_client(impostor, gateway_pki.trust, running.port) as client:
                with contextlib.suppress(ModbusException, OSError):
                    client.connect()
                    result = client.read_holding_registers(5, count=1, device_id=1)
                    assert result.isError() is not admitted
            assert (running.gateway.accepted, running.gateway.refused) == ((1, 0) if admitted else (0, 1))
        finally:
            running.stop()
    # and the operator station cannot be certified under the name the device took
    with pytest.raises(PolicyViolationError, match="belongs to a device"):
        gateway_pki.client("hmi-operator")
