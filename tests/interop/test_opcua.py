"""asyncua (FreeOpcUa opcua-asyncio) server and client with otward ``opcua-application`` certificates,
validating each other against the trust list ``otward opcua trustlist`` exports.

The installation's CAs are EC P-256 (otward's default) while the application certificates are
RSA-2048, which the RSA security policies need: asyncua's TrustStore verifies the ECDSA-signed
chain with OpenSSL and accepts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from otward.config import load_settings
from otward.core.keys import KeyType
from otward.services.bootstrap import initialize
from otward.services.channels import Channels
from otward.services.pki import Pki
from tests.conftest import build_csr, free_port, make_key, write_key
from tests.interop.helpers import otward_cli

asyncua = pytest.importorskip("asyncua")
from asyncua import Client, Server, ua  # noqa: E402
from asyncua.crypto.security_policies import (  # noqa: E402
    SecurityPolicyAes256Sha256RsaPss,
    SecurityPolicyBasic256Sha256,
)
from asyncua.crypto.truststore import TrustStore  # noqa: E402
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions  # noqa: E402

pytestmark = [
    pytest.mark.interop,
    # asyncua 1.1.8's TrustStore.is_trusted calls pyOpenSSL's X509.get_subject(), deprecated in
    # pyOpenSSL 26; with warnings as errors that would turn every validation into BadInternalError.
    pytest.mark.filterwarnings(
        "ignore:.*is deprecated. You should use cryptography's X.509 APIs instead:DeprecationWarning"
    ),
]

SERVER_URI = "urn:acme-chemicals:opcua:reactor-3"
POLICIES = {
    "Basic256Sha256": (SecurityPolicyBasic256Sha256, ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt),
    "Aes256_Sha256_RsaPss": (
        SecurityPolicyAes256Sha256RsaPss,
        ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
    ),
}
# asyncua logs refused certificates with tracebacks at ERROR; they are expected here.
logging.getLogger("asyncua").setLevel(logging.WARNING)
logging.getLogger("asyncuagds").setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class Application:
    uri: str
    certificate: Path  # DER, as OPC UA stacks keep them
    key: Path  # PEM, unencrypted, 0600


@dataclass(frozen=True)
class Setup:
    data_dir: Path
    trust_list: Path
    server: Application
    client: Application
    revoked: Application
    self_signed: Application
    foreign: Application


def _write_application(
    directory: Path, name: str, uri: str, certificate: x509.Certificate, key
) -> Application:  # type: ignore[no-untyped-def]
    cert_path = directory / f"{name}.der"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.DER))
    key_path = directory / f"{name}.key.pem"
    write_key(key_path, key)
    return Application(uri, cert_path, key_path)


def _issue_application(pki: Pki, directory: Path, name: str, uri: str) -> tuple[Application, int]:
    key = make_key("rsa-2048")
    csr = build_csr(key, cn=name, uris=(uri,), dns=("localhost",), ips=("127.0.0.1",))
    issued = pki.issuance.issue(csr, profile="opcua-application")
    return _write_application(directory, name, uri, issued.certificate, key), issued.certificate.serial_number


def _self_signed(directory: Path, name: str, uri: str) -> Application:
    """What an OPC UA stack generates for itself on first start: self-signed, right usages."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(uri), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return _write_application(directory, name, uri, certificate, key)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    root = tmp_path_factory.mktemp("opcua")
    apps = root / "applications"
    apps.mkdir()
    data_dir = root / "data"
    initialize(data_dir, key_type=KeyType.EC_P256, organization="ACME Chemicals")
    pki = Pki.open(load_settings(data_dir))
    try:
        server, _ = _issue_application(pki, apps, "reactor-3", SERVER_URI)
        client, _ = _issue_application(pki, apps, "hmi-1", "urn:acme-chemicals:opcua:hmi-1")
        revoked, revoked_serial = _issue_application(pki, apps, "hmi-2", "urn:acme-chemicals:opcua:hmi-2")
    finally:
        pki.close()
    otward_cli(data_dir, "cert", "revoke", f"{revoked_serial:x}", "--reason", "keyCompromise")
    # Another otward installation: a different root the trust list knows nothing about.
    other_dir = root / "other"
    initialize(other_dir, key_type=KeyType.EC_P256, organization="Rival Chemicals")
    other = Pki.open(load_settings(other_dir))
    try:
        foreign, _ = _issue_application(other, apps, "hmi-3", "urn:rival:opcua:hmi-3")
    finally:
        other.close()
    trust_list = root / "pki"
    otward_cli(data_dir, "opcua", "trustlist", "--out", str(trust_list))
    return Setup(
        data_dir=data_dir,
        trust_list=trust_list,
        server=server,
        client=client,
        revoked=revoked,
        self_signed=_self_signed(apps, "hmi-4", "urn:acme-chemicals:opcua:hmi-4"),
        foreign=foreign,
    )


class OpcUaTrustStore(TrustStore):
    """asyncua 1.1.8's TrustStore reads only files whose names contain ``der`` or ``pem`` as CRLs,
    so it skips the ``*.crl`` files of the OPC UA layout: this adds them (DER, as Part 12 has it)."""

    async def _load_crl_location(self, location: Path) -> None:
        for path in sorted(Path(location).glob("*.crl")):
            self._revoked_list.extend(x509.load_der_x509_crl(path.read_bytes()))
        await super()._load_crl_location(location)


async def _trust_store(trust_list: Path) -> TrustStore:
    """asyncua's TrustStore has no separate issuer list and needs a self-signed anchor in its
    OpenSSL store, so it gets both certificate directories and both CRL directories."""
    store = OpcUaTrustStore(
        [trust_list / "trusted" / "certs", trust_list / "issuers" / "certs"],
        [trust_list / "trusted" / "crl", trust_list / "issuers" / "crl"],
    )
    await store.load()
    return store


def _validator(store: TrustStore, peer: CertificateValidatorOptions) -> CertificateValidator:
    return CertificateValidator(CertificateValidatorOptions.TRUSTED_VALIDATION | peer, store)


@dataclass
class Reactor:
    """A running asyncua server: its URL, the variable to read and the trust store it validates with."""

    url: str
    node_id: ua.NodeId
    trust_store: TrustStore
    policy: str


@contextlib.asynccontextmanager
async def _reactor(setup: Setup, policy: str, trust_list: Path | None = None) -> AsyncIterator[Reactor]:
    """A server that accepts only ``policy`` in SignAndEncrypt and validates clients against the
    trust list."""
    _, server_policy = POLICIES[policy]
    url = f"opc.tcp://127.0.0.1:{free_port()}/otward/"
    server = Server()
    await server.init()
    server.set_endpoint(url)
    server.set_server_name("otward test reactor")
    await server.set_application_uri(SERVER_URI)
    server.set_security_policy([server_policy])
    await server.load_certificate(str(setup.server.certificate))
    await server.load_private_key(str(setup.server.key))
    store = await _trust_store(trust_list or setup.trust_list)
    server.set_certificate_validator(_validator(store, CertificateValidatorOptions.PEER_CLIENT))
    namespace = await server.register_namespace("urn:acme-chemicals:reactor")
    reactor = await server.nodes.objects.add_object(namespace, "Reactor3")
    temperature = await reactor.add_variable(namespace, "Temperature", 81.25)
    async with server:
        yield Reactor(url, temperature.nodeid, store, policy)


async def _read(setup: Setup, reactor: Reactor, application: Application) -> float:
    """Connect as ``application`` (checking the server against the same trust list) and read."""
    client_policy, _ = POLICIES[reactor.policy]
    client = Client(reactor.url, timeout=10)
    client.application_uri = application.uri
    await client.set_security(
        client_policy,
        str(application.certificate),
        str(application.key),
        server_certificate=str(setup.server.certificate),
        mode=ua.MessageSecurityMode.SignAndEncrypt,
    )
    client.certificate_validator = _validator(
        await _trust_store(setup.trust_list), CertificateValidatorOptions.PEER_SERVER
    )
    async with client:
        value = await client.get_node(reactor.node_id).read_value()
        assert client.security_policy.URI == client_policy.URI
        return float(value)


def test_trust_list_layout(setup):
    files = sorted(
        str(p.relative_to(setup.trust_list))
        for p in setup.trust_list.rglob("*")
        if p.is_file() and p.relative_to(setup.trust_list).parts[0] != "issuer"
    )
    assert files == [
        ".otward-trustlist.json",
        "issuers/certs/root.der",
        "issuers/crl/root.crl",
        "trusted/certs/issuing.der",
        "trusted/crl/issuing.crl",
    ]
    # the spelling of OPC 10000-12 Table F.1 leads to the same directory
    assert (setup.trust_list / "issuer").resolve() == (setup.trust_list / "issuers").resolve()
    issuing = x509.load_der_x509_certificate((setup.trust_list / "trusted/certs/issuing.der").read_bytes())
    crl = x509.load_der_x509_crl((setup.trust_list / "trusted/crl/issuing.crl").read_bytes())
    assert crl.issuer == issuing.subject
    assert crl.is_signature_valid(issuing.public_key())


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_trusted_client_reads_a_value_with_sign_and_encrypt(setup, policy):
    async def scenario() -> float:
        async with _reactor(setup, policy) as reactor:
            return await _read(setup, reactor, setup.client)

    assert asyncio.run(scenario()) == 81.25


def test_revoked_self_signed_and_foreign_clients_are_refused(setup):
    cases = [
        (setup.revoked, ua.uaerrors.BadCertificateRevoked),
        (setup.self_signed, ua.uaerrors.BadCertificateUntrusted),
        (setup.foreign, ua.uaerrors.BadCertificateUntrusted),
    ]

    async def scenario() -> None:
        async with _reactor(setup, "Basic256Sha256") as reactor:
            for application, refusal in cases:
                with pytest.raises(refusal):
                    await _read(setup, reactor, application)
            assert await _read(setup, reactor, setup.client) == 81.25  # the server still serves

    asyncio.run(scenario())


def test_revocation_reaches_a_running_server_through_a_refresh(setup, tmp_path):
    """A client revoked after the export is refused once the trust list is exported again and the
    server's TrustStore reloaded."""
    pki = Pki.open(load_settings(setup.data_dir))
    trust_list = tmp_path / "pki"

    async def scenario() -> None:
        late, serial = _issue_application(pki, tmp_path, "hmi-5", "urn:acme-chemicals:opcua:hmi-5")
        Channels.for_pki(pki).export_opcua_trust_list(trust_list, ["issuing"])
        async with _reactor(setup, "Aes256_Sha256_RsaPss", trust_list) as reactor:
            assert await _read(setup, reactor, late) == 81.25
            pki.revocation.revoke(serial, x509.ReasonFlags.key_compromise)
            Channels.for_pki(pki).export_opcua_trust_list(trust_list, ["issuing"])
            await reactor.trust_store.load()
            with pytest.raises(ua.uaerrors.BadCertificateRevoked):
                await _read(setup, reactor, late)

    try:
        asyncio.run(scenario())
    finally:
        pki.close()
