"""Certificates for the assess tests, built with cryptography: a throwaway CA and leaves with exactly the
flaw a test wants (expired, not yet valid, RSA-1024, wrong name, no EKU, self-signed ...); the SHA-1
signed leaf is a static vector (tests/vectors/README.md)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VECTORS = Path(__file__).parent / "vectors"
SERVER_AUTH = (ExtendedKeyUsageOID.SERVER_AUTH,)


def load_sha1_vector() -> tuple[x509.Certificate, x509.Certificate, Path, Path]:
    """(CA, SHA-1 signed leaf for localhost/127.0.0.1, leaf PEM path, leaf key path)."""
    ca = x509.load_pem_x509_certificate((VECTORS / "assess-sha1-ca.pem").read_bytes())
    leaf = x509.load_pem_x509_certificate((VECTORS / "assess-sha1-leaf.pem").read_bytes())
    return ca, leaf, VECTORS / "assess-sha1-leaf.pem", VECTORS / "assess-sha1-leaf.key.pem"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class Issued:
    certificate: x509.Certificate
    key: Any

    def write(self, directory: Path, name: str, *chain: x509.Certificate) -> tuple[Path, Path]:
        """PEM certificate (followed by ``chain``) and 0600 PKCS#8 key files."""
        cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
        cert_path.write_bytes(
            b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (self.certificate, *chain))
        )
        key_path.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        key_path.chmod(0o600)
        return cert_path, key_path


class TestCa:
    """A root CA (EC P-256) issuing leaves."""

    __test__ = False

    def __init__(self, now: datetime | None = None, cn: str = "assess test root") -> None:
        self.now = now or datetime.now(UTC)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(_name(cn))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - timedelta(days=365))
            .not_valid_after(self.now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def pem(self, directory: Path) -> Path:
        path = directory / "trust.pem"
        path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        return path

    def leaf(
        self,
        *,
        dns: tuple[str, ...] = ("localhost",),
        ips: tuple[str, ...] = ("127.0.0.1",),
        uris: tuple[str, ...] = (),
        eku: tuple[x509.ObjectIdentifier, ...] | None = SERVER_AUTH,
        key: Any = None,
        valid_from: timedelta = timedelta(days=-1),
        valid_for: timedelta = timedelta(days=365),
        self_signed: bool = False,
        cn: str = "assess test server",
    ) -> Issued:
        key = key or ec.generate_private_key(ec.SECP256R1())
        start = self.now + valid_from
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        names += [x509.UniformResourceIdentifier(u) for u in uris]
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(_name(cn) if self_signed else self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + valid_for)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        if eku is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
        if not self_signed:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        return Issued(builder.sign(key if self_signed else self.key, hashes.SHA256()), key)


def rsa_key(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)
