"""A test manufacturer: an IDevID CA built with cryptography, the factory certificates (IEEE 802.1AR
IDevID) it puts into its devices, and its CRL. Nothing here is otward's: it stands for a chip
vendor's PKI."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pyasn1.codec.der import encoder
from pyasn1.type import univ
from pyasn1_alt_modules import rfc4108

HW_TYPE = "1.3.6.1.4.1.99999.1.1"  # a private-enterprise OID standing for "sensor model X"


def hardware_module_name(serial: bytes, hw_type: str = HW_TYPE) -> x509.OtherName:
    value = rfc4108.HardwareModuleName()
    value["hwType"] = univ.ObjectIdentifier(hw_type)
    value["hwSerialNum"] = univ.OctetString(serial)
    return x509.OtherName(x509.ObjectIdentifier("1.3.6.1.5.5.7.8.4"), encoder.encode(value))


@dataclass
class Manufacturer:
    name: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    certificate: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"{self.name} GmbH"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{self.name} IDevID CA"),
            ]
        )
        now = datetime.now(UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .sign(self.key, hashes.SHA256())
        )

    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def write(self, directory: Path) -> Path:
        path = directory / f"{self.name}-ca.pem"
        path.write_bytes(self.pem())
        return path

    def idevid(
        self,
        serial: str | None,
        *,
        hardware_serial: bytes | None = None,
        key: Any = None,
        valid_from: datetime | None = None,
        valid_for: timedelta = timedelta(days=7300),
    ) -> tuple[Any, x509.Certificate]:
        """An IDevID: serialNumber in the subject (unless None) and/or a hardwareModuleName SAN; no
        EKU (802.1AR does not require one)."""
        key = key or ec.generate_private_key(ec.SECP256R1())
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"{self.name} GmbH")]
        if serial is not None:
            attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial))
        start = valid_from or datetime.now(UTC) - timedelta(hours=1)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attributes))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + valid_for)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if hardware_serial is not None:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([hardware_module_name(hardware_serial)]), critical=False
            )
        return key, builder.sign(self.key, hashes.SHA256())

    def crl(
        self, revoked: tuple[x509.Certificate, ...] = (), *, next_update: timedelta = timedelta(days=7)
    ) -> bytes:
        now = datetime.now(UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(min(now - timedelta(hours=1), now + next_update - timedelta(days=1)))
            .next_update(now + next_update)
        )
        for certificate in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(certificate.serial_number)
                .revocation_date(now - timedelta(minutes=1))
                .build()
            )
        return builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
