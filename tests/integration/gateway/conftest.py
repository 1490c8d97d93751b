"""Gateway fixtures: certificates from a real otward installation, a pymodbus upstream, a running gateway."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from otward.core.extensions import modbus_role_extension
from otward.gateway import AuditWriter, Gateway, GatewayOptions, RevocationChecker, server_context
from otward.gateway.revocation import StalePolicy
from otward.gateway.tls import load_trusted_certificates
from otward.services.pki import Pki
from tests.conftest import build_csr, free_port, make_key, write_key

POLICY = """
[[role.operator]]
functions = [1, 2, 3, 4]
addresses = [0, 9999]

[[role.engineer]]
functions = [1, 2, 3, 4, 5, 6, 15, 16]
addresses = [0, 65535]
"""


@dataclass
class Credentials:
    certificate: Path
    key: Path
    serial: int = 0

    def client_context(self, trust: Path | None) -> ssl.SSLContext:
        """A client context presenting this certificate; verifies the gateway against ``trust``."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if trust is None:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context.check_hostname = False  # pymodbus passes no server name; the chain is still verified
            context.load_verify_locations(cafile=str(trust))
        context.load_cert_chain(str(self.certificate), str(self.key))
        return context


@dataclass
class GatewayPki:
    """Certificates for the gateway tests, issued by a real otward installation."""

    pki: Pki
    directory: Path
    trust: Path = field(init=False)
    server: Credentials = field(init=False)

    def __post_init__(self) -> None:
        issuing = self.pki.authorities.get("issuing")
        self.trust = self.directory / "trust.pem"
        self.trust.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in issuing.chain))
        key = make_key()
        issued = self.pki.issuance.issue(
            build_csr(key, cn="127.0.0.1", dns=("localhost",), ips=("127.0.0.1",)), profile="tls-server"
        )
        self.server = self._write("gateway", issued.pem.encode(), key, issued.certificate.serial_number)

    def _write(self, name: str, pem: bytes, key: Any, serial: int) -> Credentials:
        certificate = self.directory / f"{name}.pem"
        certificate.write_bytes(pem)
        return Credentials(certificate, write_key(self.directory / f"{name}.key", key), serial)

    def client(self, name: str, role: str | None = None, *, uris: tuple[str, ...] = ()) -> Credentials:
        """A client certificate from the issuing CA: ``modbus-role`` with a role, else ``tls-client``."""
        key = make_key()
        profile = "modbus-role" if role is not None else "tls-client"
        issued = self.pki.issuance.issue(build_csr(key, cn=name, uris=uris), profile=profile, role=role)
        return self._write(name, issued.pem.encode(), key, issued.certificate.serial_number)

    def device(self, device_id: str, owner: str = "acme") -> Credentials:
        """A device certificate obtained the way devices get them: EST with an owner's token."""
        from otward.services.audit import Actor

        if self.pki.stores.owners.get_owner(owner) is None:
            self.pki.owners.create(owner)
        _, token = self.pki.enrollment_tokens.create(owner)
        key = make_key()
        csr = x509.load_pem_x509_csr(build_csr(key, cn=device_id)).public_bytes(serialization.Encoding.DER)
        issued = self.pki.est.enroll(csr, token, label=None, actor=Actor(component="est", identity="est"))
        return self._write(device_id, issued.pem.encode(), key, issued.certificate.serial_number)

    def expired_client(self, name: str, role: str) -> Credentials:
        """Signed by the real issuing CA, with the role, but valid only in the past."""
        issuing = self.pki.authorities.get("issuing")
        now = datetime.now(UTC)
        return self._signed(
            name, role, issuing.certificate, issuing.key, now - timedelta(days=30), now - timedelta(days=1)
        )

    def foreign_client(self, name: str, role: str) -> Credentials:
        """Issued by another CA with the same name as the real one."""
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = self.pki.authorities.get("issuing").certificate.subject
        now = datetime.now(UTC)
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        return self._signed(name, role, ca, ca_key, now - timedelta(days=1), now + timedelta(days=30))

    def self_signed(self, name: str, role: str) -> Credentials:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(modbus_role_extension(role), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return self._write(
            name, certificate.public_bytes(serialization.Encoding.PEM), key, certificate.serial_number
        )

    def _signed(
        self,
        name: str,
        role: str,
        issuer: x509.Certificate,
        issuer_key: Any,
        not_before: datetime,
        not_after: datetime,
    ) -> Credentials:
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(modbus_role_extension(role), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                    issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
                ),
                critical=False,
            )
            .sign(issuer_key, hashes.SHA256())
        )
        return self._write(
            name, certificate.public_bytes(serialization.Encoding.PEM), key, certificate.serial_number
        )


@pytest.fixture(scope="module")
def gateway_pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayPki]:
    """One real installation per module (initialising one takes seconds); tests issue fresh clients."""
    from otward.config import load_settings
    from otward.core.keys import KeyType
    from otward.services.bootstrap import initialize

    root = tmp_path_factory.mktemp("gateway-pki")
    initialize(root / "data", key_type=KeyType.EC_P256, organization="ACME Chemicals")
    pki = Pki.open(load_settings(root / "data"))
    directory = root / "certs"
    directory.mkdir()
    yield GatewayPki(pki, directory)
    pki.close()


class LoopThread:
    """An event loop in a thread, so blocking clients (pymodbus sync, ssl sockets) can be used in tests."""

    def __init__(self, *, use_uvloop: bool = False) -> None:
        if use_uvloop:
            import uvloop

            self.loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Any, timeout: float = 30) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def call(self, function: Callable[[], Any]) -> Any:
        async def call() -> Any:
            return function()

        return self.run(call())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@dataclass
class ModbusUpstream:
    port: int
    server: Any
    thread: LoopThread
    connections: list[bool]
    requests: list[int]  # function code of every request the device received

    def holding(self, address: int, count: int = 1) -> list[int]:
        return list(self.thread.run(self.server.async_getValues(1, 3, address, count)))


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.stop()


@pytest.fixture
def modbus_upstream(loop_thread: LoopThread) -> Iterator[ModbusUpstream]:
    """A pymodbus TCP server on a free loopback port: registers 0..999 holding their own address."""
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    device = SimDevice(1, [SimData(0, count=1000, values=list(range(1000)), datatype=DataType.REGISTERS)])
    port = free_port()
    connections: list[bool] = []
    requests: list[int] = []

    def received(sending: bool, pdu: Any) -> Any:
        if not sending:
            requests.append(pdu.function_code)
        return pdu

    def build() -> Any:
        return ModbusTcpServer(
            device,
            address=("127.0.0.1", port),
            trace_connect=lambda up: connections.append(up),
            trace_pdu=received,
        )

    server = loop_thread.call(build)
    loop_thread.run(server.serve_forever(background=True))
    yield ModbusUpstream(port, server, loop_thread, connections, requests)
    loop_thread.run(server.shutdown())


@dataclass
class RunningGateway:
    gateway: Gateway
    thread: LoopThread

    @property
    def port(self) -> int:
        return self.gateway.port

    def stop(self) -> None:
        self.thread.run(self.gateway.close())
        self.gateway.audit.close()
        self.thread.stop()


def start_gateway(
    gateway_pki: GatewayPki,
    upstream_port: int,
    *,
    policy: str | None = POLICY,
    policy_dir: Path | None = None,
    audit: AuditWriter | None = None,
    crl_urls: tuple[str, ...] = (),
    crl_cache: Path | None = None,
    stale: StalePolicy = StalePolicy.KEEP,
    use_uvloop: bool = False,
    **overrides: Any,
) -> RunningGateway:
    """A gateway on its own loop thread, in front of ``upstream_port``."""
    from otward.gateway.proxy import load_policy

    parsed = None
    if policy is not None:
        path = (policy_dir or gateway_pki.directory) / "policy.toml"
        path.write_text(policy)
        parsed = load_policy(path)
    options = GatewayOptions(
        listen_host="127.0.0.1",
        listen_port=0,
        upstream_host="127.0.0.1",
        upstream_port=upstream_port,
        policy=parsed,
        **overrides,
    )
    trusted = load_trusted_certificates(gateway_pki.trust)
    context = server_context(gateway_pki.trust, gateway_pki.server.certificate, gateway_pki.server.key)
    checker = RevocationChecker(trusted, crl_urls, cache_dir=crl_cache, stale=stale)
    gateway = Gateway(options, context, trusted, checker, audit)
    thread = LoopThread(use_uvloop=use_uvloop)
    try:
        thread.run(gateway.start())
    except BaseException:
        thread.stop()
        raise
    return RunningGateway(gateway, thread)


class PipelinedModbus(asyncio.Protocol):
    """A minimal Modbus server that accepts pipelined requests (FC 3 only: register N holds N).

    With ``reverse`` it answers each batch of frames that arrived together in reverse
    order, as a multi-threaded device might; the gateway must restore request order.
    """

    reverse = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        answers = []
        while len(self.buffer) >= 7:
            length = int.from_bytes(self.buffer[4:6], "big")
            if len(self.buffer) < 6 + length:
                break
            frame, self.buffer = self.buffer[: 6 + length], self.buffer[6 + length :]
            start, count = int.from_bytes(frame[8:10], "big"), int.from_bytes(frame[10:12], "big")
            pdu = bytes([3, 2 * count]) + b"".join((start + i).to_bytes(2, "big") for i in range(count))
            answers.append(frame[:4] + (len(pdu) + 1).to_bytes(2, "big") + frame[6:7] + pdu)
        if self.reverse:
            answers.reverse()
        self.transport.write(b"".join(answers))


@pytest.fixture(params=[False, True], ids=["in-order", "out-of-order"])
def pipelining_upstream(request: pytest.FixtureRequest, loop_thread: LoopThread) -> Iterator[int]:
    reverse = request.param

    class Upstream(PipelinedModbus):
        pass

    Upstream.reverse = reverse

    async def serve() -> asyncio.Server:
        return await asyncio.get_running_loop().create_server(Upstream, "127.0.0.1", 0)

    server = loop_thread.run(serve())
    yield int(server.sockets[0].getsockname()[1])

    async def close() -> None:
        # asyncio.Server is not thread-safe: close it on its own loop, not from the test thread.
        server.close()
        await server.wait_closed()

    loop_thread.run(close())
