"""Shared fixtures: throwaway installations, CSR factory, databases, a running server."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from otward.config import load_settings
from otward.core.keys import KeyType
from otward.services.bootstrap import initialize
from otward.services.pki import Pki

POSTGRES_ADMIN_URL = os.environ.get(
    "OTWARD_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

# Tests own their environment: no passphrase or data directory leaks in from the caller.
for _name in (
    "OTWARD_CA_PASSPHRASE",
    "OTWARD_CA_PASSPHRASE_FILE",
    "OTWARD_DATA",
    "OTWARD_DB",
    "OTWARD_PKCS11_PIN",
):
    os.environ.pop(_name, None)
# The suite runs as in an activated virtual environment (`.venv/bin/python -m pytest`): the tools
# installed with the test extras (ruff, pkilint's linters) are found next to the interpreter first.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


class Clock:
    """A clock the tests move by hand (expiry, challenge lifetimes, grace periods)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def make_key(key_type: str = "ec-p256"):  # type: ignore[no-untyped-def]
    from otward.adapters.keys import generate_private_key

    return generate_private_key(KeyType(key_type))


def write_key(path: Path, key: Any) -> Path:
    """An unencrypted PKCS#8 PEM key file, mode 0600 (as the gateway, brokers and readers want it)."""
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)
    return path


def self_signed(
    key: Any,
    cn: str,
    *,
    valid_from: datetime | None = None,
    valid_for: timedelta = timedelta(days=1),
    signer: Any = None,
) -> x509.Certificate:
    """A self-signed certificate for ``key`` (signed by ``signer`` if the signing object differs), from a
    minute ago unless ``valid_from``: a certificate no otward CA issued."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    start = valid_from or datetime.now(UTC) - timedelta(minutes=1)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + valid_for)
        .sign(signer or key, hashes.SHA256())
    )


def build_csr(
    key,  # type: ignore[no-untyped-def]
    *,
    cn: str | None = "device-1",
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    uris: tuple[str, ...] = (),
    emails: tuple[str, ...] = (),
    extra_subject: tuple[x509.NameAttribute, ...] = (),
    algorithm: hashes.HashAlgorithm | None = None,
) -> bytes:
    """A PEM CSR signed by ``key``; pass ``algorithm`` to force a hash (e.g. SHA-1 for refusal tests)."""
    import ipaddress

    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else []
    attrs += list(extra_subject)
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    names += [x509.UniformResourceIdentifier(u) for u in uris]
    names += [x509.RFC822Name(e) for e in emails]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        algorithm = None
    elif algorithm is None:
        algorithm = hashes.SHA256()
    csr = builder.sign(key, algorithm)
    return csr.public_bytes(serialization.Encoding.PEM)


def with_change_subject_name(
    csr_pem: bytes,
    key,  # type: ignore[no-untyped-def]
    *,
    subject: bool = False,
    subject_alt: tuple[str, ...] | None = (),
) -> bytes:
    """``csr_pem`` (signed by ``key``, an EC or RSA key) again with an RFC 6402 ChangeSubjectName
    attribute, re-signed, as DER: ``subject`` puts the CSR's own subject in the attribute,
    ``subject_alt`` the given DNS names (None leaves the field out). Built with pyasn1."""
    from cryptography.hazmat.primitives.asymmetric import ec, padding
    from pyasn1.codec.der import decoder, encoder
    from pyasn1.type import univ
    from pyasn1_alt_modules import rfc2986, rfc5280, rfc6402

    der = x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER)
    request, _ = decoder.decode(der, asn1Spec=rfc2986.CertificationRequest())
    info = request["certificationRequestInfo"]
    change = rfc6402.ChangeSubjectName()
    if subject:
        name, _ = decoder.decode(encoder.encode(info["subject"]), asn1Spec=rfc5280.Name())
        change["subject"] = name
    if subject_alt is not None:
        for dns in subject_alt:
            general = rfc5280.GeneralName()
            general["dNSName"] = dns
            change["subjectAlt"].append(general)
    attribute = rfc2986.Attribute()
    attribute["type"] = rfc6402.id_cmc_changeSubjectName
    attribute["values"].append(univ.Any(encoder.encode(change)))
    info["attributes"].append(attribute)
    signed = encoder.encode(info)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(signed, ec.ECDSA(hashes.SHA256()))
    else:
        signature = key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
    request["signature"] = univ.BitString.fromOctetString(signature)
    return bytes(encoder.encode(request))


def openssl_verifies(csr_pem: bytes, tmp_path: Path) -> bool:
    """``openssl req -verify`` on ``csr_pem``: True when the system OpenSSL accepts its self-signature.

    OpenSSL 3.0 exits 0 even when the signature is bad, so the verdict is read from its output.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    path = tmp_path / "request.csr.pem"
    path.write_bytes(csr_pem)
    result = subprocess.run(
        [openssl, "req", "-in", str(path), "-verify", "-noout"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return result.returncode == 0 and "self-signature verify OK" in result.stdout + result.stderr


def ocsp_request_der(
    issuer: x509.Certificate,
    serial: int,
    nonce: bytes | None = None,
    *,
    algorithm: hashes.HashAlgorithm | None = None,
) -> bytes:
    """A DER OCSP request for ``serial`` under ``issuer``; SHA-1 CertID by default, as openssl sends."""
    import hashlib

    from cryptography.x509 import ocsp

    from otward.core.keys import public_key_bits

    algorithm = algorithm or hashes.SHA1()
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        hashlib.new(algorithm.name, issuer.subject.public_bytes()).digest(),
        hashlib.new(algorithm.name, public_key_bits(issuer.public_key())).digest(),
        serial,
        algorithm,
    )
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


@pytest.fixture
def csr_factory() -> Callable[..., bytes]:
    """``csr_factory(key_type="ec-p256", cn=..., dns=(...), ...)`` -> PEM bytes."""

    def factory(key_type: str = "ec-p256", **kwargs: object) -> bytes:
        return build_csr(make_key(key_type), **kwargs)  # type: ignore[arg-type]

    return factory


def _postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"otward_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server is a hard error here
        admin.dispose()
        pytest.fail(f"PostgreSQL at {POSTGRES_ADMIN_URL} is required for postgres tests: {exc}")
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """None means the embedded default (SQLite in the data directory); else a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield None
    else:
        yield from _postgres_database()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def installation(data_dir: Path, database_url: str | None) -> Path:
    """An initialised data directory (P-256), on SQLite and on PostgreSQL."""
    initialize(data_dir, key_type=KeyType.EC_P256, organization="ACME Chemicals", database_url=database_url)
    return data_dir


@pytest.fixture
def pki(installation: Path, database_url: str | None) -> Iterator[Pki]:
    instance = Pki.open(load_settings(installation, database_url=database_url))
    yield instance
    instance.close()


@pytest.fixture
def sqlite_pki(data_dir: Path) -> Iterator[Pki]:
    """A SQLite-only installation for tests that need no database matrix."""
    initialize(data_dir, key_type=KeyType.EC_P256, organization="ACME Chemicals")
    instance = Pki.open(load_settings(data_dir))
    yield instance
    instance.close()


def est_refusal(text: str) -> tuple[str, str | None]:
    """(detail, rule) of an EST refusal, which is one line of text: ``detail (rule R)``."""
    assert text.endswith("\n"), text
    assert "\n" not in text[:-1], text
    line = text[:-1]
    detail, marker, rule = line.rpartition(" (rule ")
    if not marker:
        return line, None
    assert rule.endswith(")"), text
    return detail, rule[:-1]


SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")


@dataclass(frozen=True)
class SoftHsm:
    """One freshly initialised SoftHSM2 token in its own SOFTHSM2_CONF."""

    module: Path
    label: str
    pin: str
    pin_file: Path  # 0600
    config: Path

    def session(self) -> Any:
        """A session of the test's own, to ask the token directly. PKCS#11 login is per process: while
        a backend of this process is logged in, the session shares that login instead of its own."""
        import pkcs11
        from pkcs11.exceptions import UserAlreadyLoggedIn

        token = pkcs11.lib(str(self.module)).get_token(token_label=self.label)
        try:
            return token.open(user_pin=self.pin)
        except UserAlreadyLoggedIn:
            return token.open()


@contextlib.contextmanager
def softhsm_token(directory: Path, label: str = "otward", pin: str = "1234") -> Iterator[SoftHsm]:
    """Set SOFTHSM2_CONF to a private token directory holding one new token, for the ``with`` block.

    SoftHSM2 reads SOFTHSM2_CONF in C_Initialize and python-pkcs11 keeps each module initialised
    per process, so the module is re-initialised on entry and finalised on exit (never unloaded:
    that would unmap it under any session object still alive). Processes started inside the block
    (``otward serve``) inherit the configuration. SoftHSM2 is required (scripts/install).
    """
    import pkcs11

    util = shutil.which("softhsm2-util")
    if util is None or not SOFTHSM_MODULE.is_file():
        pytest.fail(f"SoftHSM2 is required (softhsm2-util and {SOFTHSM_MODULE}; Debian package softhsm2)")
    (directory / "tokens").mkdir(parents=True)
    config = directory / "softhsm2.conf"
    config.write_text(
        f"directories.tokendir = {directory / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    pin_file = directory / "pin"
    pin_file.write_text(pin + "\n")
    pin_file.chmod(0o600)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOFTHSM2_CONF", str(config))
        subprocess.run(
            [util, "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", "5678"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        library = pkcs11.lib(str(SOFTHSM_MODULE))
        library.reinitialize()
        try:
            yield SoftHsm(SOFTHSM_MODULE, label, pin, pin_file, config)
        finally:
            library.finalize()


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    data_dir: Path
    https_url: str
    http_url: str
    token: str
    process: subprocess.Popen[bytes]
    log: BinaryIO

    @property
    def root_pem(self) -> Path:
        return self.data_dir / "root.pem"

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts only this installation's root: the pinning clients are told to do."""
        return ssl.create_default_context(cafile=str(self.root_pem))

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.https_url,
            verify=self.ssl_context(),
            headers={"Authorization": f"Bearer {self.token}"},
        )


def start_server(
    data_dir: Path, *, workers: int = 1, database_url: str | None = None, ready_crl: str = "root"
) -> RunningServer:
    """``otward serve`` as a real process on free loopback ports; initialises ``data_dir`` if needed.

    The CRL/OCSP URLs in certificates must match the plain-HTTP port, so a new data
    directory is initialised with that port as its public URL.
    """
    http_port, https_port = free_port(), free_port()
    if not (data_dir / "config.toml").exists():
        initialize(
            data_dir,
            organization="ACME Chemicals",
            public_url=f"http://127.0.0.1:{http_port}",
            database_url=database_url,
        )
    else:
        http_port = int(load_settings(data_dir).public_url.rsplit(":", 1)[1])
    command = [
        sys.executable,
        "-m",
        "otward",
        "serve",
        "--data",
        str(data_dir),
        "--port",
        str(https_port),
        "--http-port",
        str(http_port),
        "--workers",
        str(workers),
    ]
    if database_url:
        command += ["--db", database_url]
    log = (data_dir / "serve.log").open("wb")
    # Own process group: the server and its workers can be signalled (or SIGKILLed) together.
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = RunningServer(
        data_dir=data_dir,
        https_url=f"https://127.0.0.1:{https_port}",
        http_url=f"http://127.0.0.1:{http_port}",
        token=(data_dir / "admin.token").read_text().strip(),
        process=process,
        log=log,
    )
    try:
        _wait_until_ready(server, ready_crl)
    except BaseException:
        stop_server(server)
        raise
    return server


def _wait_until_ready(server: RunningServer, crl: str = "root") -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"otward serve exited: {(server.data_dir / 'serve.log').read_text()}")
        try:
            with httpx.Client(verify=server.ssl_context(), timeout=1) as client:
                if (
                    client.get(f"{server.https_url}/healthz").status_code == 200
                    and client.get(f"{server.http_url}/crl/{crl}.crl").status_code == 200
                ):
                    return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("otward serve did not become ready within 30 s")


def kill_server(server: RunningServer) -> None:
    """kill -9 of the whole service: supervisor and workers, no shutdown of any kind."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait()


def stop_server(server: RunningServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        kill_server(server)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGKILL)  # no worker may outlive a test
    server.log.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    """A running ``otward serve`` on SQLite with a fresh installation."""
    running = start_server(tmp_path / "served")
    yield running
    stop_server(running)
