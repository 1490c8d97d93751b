"""Plumbing shared by the interop tests: issuing through the HTTPS API and running outside tools.

Nothing here checks otward's output; the tests do that with openssl, curl and pkilint.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp

from tests.conftest import RunningServer, build_csr, make_key

TOOL_TIMEOUT = 30.0


def need(binary: str) -> str:
    """The path of ``binary``; skips the test when it is not installed (the only reason to skip)."""
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed")
    return path


def run(
    args: Sequence[str | Path], *, stdin: str = "", check: bool = True, timeout: float = TOOL_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run a tool to completion; with ``check`` a non-zero exit fails the test showing all output."""
    command = [str(a) for a in args]
    proc = subprocess.run(
        command,
        input=stdin,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


def otward_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m otward ARGS --data DIR`` as its own process (next to the running server)."""
    return run([sys.executable, "-m", "otward", *args, "--data", str(data_dir)])


def pem_of(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    return path


def openssl_serial(serial_number: int) -> str:
    """How OpenSSL prints a serial in ``crl -text``: upper-case hex, an even number of digits."""
    digits = f"{serial_number:X}"
    return digits.zfill(len(digits) + len(digits) % 2)


@dataclass(frozen=True)
class IssueCase:
    """One certificate to request: profile, key type, CSR names and extra request fields."""

    id: str
    profile: str
    key_type: str = "ec-p256"
    cn: str | None = None
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    role: str | None = None
    owner: str | None = None
    purposes: tuple[str, ...] = ()  # ``openssl verify -purpose`` values the certificate must pass


PROFILE_CASES: tuple[IssueCase, ...] = (
    IssueCase(
        "tls-server-ec-p256",
        "tls-server",
        cn="plc-7.plant.example",
        dns=("plc-7.plant.example",),
        ips=("10.0.0.7",),
        purposes=("sslserver",),
    ),
    IssueCase(
        "tls-server-ip-only-rsa-2048", "tls-server", "rsa-2048", ips=("fd00::7",), purposes=("sslserver",)
    ),
    IssueCase("tls-client-ec-p256", "tls-client", "ec-p256", cn="operator-1", purposes=("sslclient",)),
    IssueCase("tls-client-ec-p384", "tls-client", "ec-p384", cn="operator-2", purposes=("sslclient",)),
    IssueCase("tls-client-ec-p521", "tls-client", "ec-p521", cn="operator-5", purposes=("sslclient",)),
    IssueCase("tls-client-ed25519", "tls-client", "ed25519", cn="operator-3", purposes=("sslclient",)),
    IssueCase(
        "tls-client-rsa-2048",
        "tls-client",
        "rsa-2048",
        cn="operator-4",
        emails=("operator-4@plant.example",),
        purposes=("sslclient",),
    ),
    IssueCase("device-ec-p256", "device", cn="plc-0042", owner="acme", purposes=("sslclient",)),
    IssueCase(
        "device-ed25519", "device", "ed25519", cn="sensor-17", owner="plant-b", purposes=("sslclient",)
    ),
    IssueCase("device-ec-p521", "device", "ec-p521", cn="plc-0521", owner="acme", purposes=("sslclient",)),
    IssueCase(
        "opcua-application-rsa-2048",
        "opcua-application",
        "rsa-2048",
        cn="server1",
        uris=("urn:plant:opcua:server1",),
        dns=("server1.plant.example",),
        purposes=("sslserver", "sslclient"),
    ),
    IssueCase(
        "opcua-application-ec-p256",
        "opcua-application",
        "ec-p256",
        cn="client7",
        uris=("urn:plant:opcua:client7",),
        ips=("10.0.0.21",),
        purposes=("sslserver", "sslclient"),
    ),
    IssueCase("modbus-role-ec-p256", "modbus-role", cn="hmi-1", role="operator", purposes=("sslclient",)),
)


@dataclass(frozen=True)
class Issued:
    """What ``POST /api/v1/certificates`` answered."""

    serial: str
    pem: str
    chain: tuple[str, ...]  # issuing CA first, root last

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.pem.encode())

    @property
    def serial_number(self) -> int:
        return int(self.serial, 16)

    @property
    def issuer_certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.chain[0].encode())

    def write(self, directory: Path, stem: str = "leaf") -> Path:
        """Write ``<stem>.pem`` (the certificate) and ``<stem>-issuer.pem``; returns the first."""
        write(directory / f"{stem}-issuer.pem", self.chain[0])
        return write(directory / f"{stem}.pem", self.pem)


class Api:
    """A thin client of the running server: the admin API over HTTPS, status over plain HTTP."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.client = server.client()
        self.plain = httpx.Client(base_url=server.http_url)
        self.owners: set[str] = set()

    def ensure_owner(self, owner: str) -> None:
        """A device certificate needs an existing owner: create it on first use."""
        if owner not in self.owners:
            listed = json.loads(otward_cli(self.server.data_dir, "owner", "list", "--json").stdout)
            if owner not in {o["name"] for o in listed}:
                otward_cli(self.server.data_dir, "owner", "create", owner)
            self.owners.add(owner)

    def close(self) -> None:
        self.client.close()
        self.plain.close()

    def request_certificate(
        self,
        profile: str,
        *,
        key_type: str = "ec-p256",
        ca: str | None = None,
        role: str | None = None,
        owner: str | None = None,
        **names: Any,
    ) -> httpx.Response:
        body: dict[str, Any] = {
            "csr": build_csr(make_key(key_type), **names).decode(),
            "profile": profile,
        }
        if profile == "device":
            owner = owner or "acme"
            self.ensure_owner(owner)
        for field, value in (("ca", ca), ("role", role), ("owner", owner)):
            if value is not None:
                body[field] = value
        return self.client.post("/api/v1/certificates", json=body)

    def issue(self, profile: str, **kwargs: Any) -> Issued:
        response = self.request_certificate(profile, **kwargs)
        assert response.status_code == 201, response.text
        body = response.json()
        return Issued(serial=body["serial"], pem=body["certificate"], chain=tuple(body["chain"]))

    def issue_case(self, case: IssueCase, *, ca: str | None = None) -> Issued:
        return self.issue(
            case.profile,
            key_type=case.key_type,
            ca=ca,
            role=case.role,
            owner=case.owner,
            cn=case.cn,
            dns=case.dns,
            ips=case.ips,
            uris=case.uris,
            emails=case.emails,
        )

    def revoke(self, serial: str, reason: str) -> None:
        response = self.client.post(f"/api/v1/certificates/{serial}/revoke", json={"reason": reason})
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "revoked"

    def crl(self, ca: str) -> bytes:
        response = self.plain.get(f"/crl/{ca}.crl")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/pkix-crl"
        return response.content

    def ocsp(self, request: ocsp.OCSPRequest) -> bytes:
        response = self.plain.post(
            "/ocsp",
            content=request.public_bytes(serialization.Encoding.DER),
            headers={"content-type": "application/ocsp-request"},
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/ocsp-response"
        return response.content


@dataclass(frozen=True)
class SubCa:
    """A sub-CA made with ``otward ca create`` while the server runs."""

    name: str
    certificate: x509.Certificate
    chain_file: Path  # ``otward ca export``: this CA, then the root


@dataclass(frozen=True)
class RetiredCa:
    """A sub-CA that issued one leaf and was then revoked under the root with ``reason``."""

    ca: SubCa
    leaf: Issued
    reason: str


# --- EST by hand: openssl req + curl, as a field integrator would do it ---------------------------


def est_csr(directory: Path, stem: str, cn: str, san: str | None = None) -> tuple[Path, Path]:
    """``openssl req`` makes a P-256 key and a CSR (with ``san``, an openssl subjectAltName value);
    the body EST wants is base64 of its DER."""
    key, der, b64 = directory / f"{stem}.key", directory / f"{stem}.der", directory / f"{stem}.b64"
    run(
        [
            need("openssl"),
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            key,
            "-subj",
            f"/CN={cn}",
            *(["-addext", f"subjectAltName={san}"] if san else []),
            "-outform",
            "DER",
            "-out",
            der,
        ]
    )
    run(["openssl", "base64", "-in", der, "-out", b64])
    return key, b64


def est_curl(server: RunningServer, path: str, out: Path, *args: str | Path) -> tuple[int, str]:
    """POST/GET with curl trusting only the installation's root; returns (status, Content-Type)."""
    proc = run(
        [
            need("curl"),
            "-sS",
            "--cacert",
            server.root_pem,
            "-o",
            out,
            "-w",
            "%{http_code} %{content_type}",
            *args,
            f"{server.https_url}{path}",
        ]
    )
    status, _, content_type = proc.stdout.partition(" ")
    return int(status), content_type


def est_enroll_args(csr: Path, *auth: str) -> list[str | Path]:
    return [*auth, "--data-binary", f"@{csr}", "-H", "Content-Type: application/pkcs10"]


def est_certificates(p7_b64: Path, out: Path) -> str:
    """base64 PKCS#7 certs-only -> PEM via openssl; returns the PEM text."""
    der = out.with_suffix(".p7")
    run(["openssl", "base64", "-d", "-in", p7_b64, "-out", der])
    run(["openssl", "pkcs7", "-inform", "DER", "-in", der, "-print_certs", "-out", out])
    return out.read_text()
