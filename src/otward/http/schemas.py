"""Request and response bodies of the HTTPS API (they define the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import BaseModel, ConfigDict, Field

from otward.core.records import AuthorityRecord, CertificateRecord, CertificateStatus
from otward.core.revocation import reason_name

__all__ = [
    "AuthorityOut",
    "CertificateOut",
    "CertificatePage",
    "IssueRequest",
    "IssueResponse",
    "RevokeRequest",
]


class IssueRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    csr: str = Field(description="PKCS#10 request, PEM", max_length=65536)
    profile: str = Field(description="tls-server, tls-client, device, opcua-application or modbus-role")
    ca: str | None = Field(default=None, description="issuing CA (default 'issuing')")
    days: int | None = Field(default=None, description="validity in days (default: the profile's)")
    role: str | None = Field(default=None, description="Modbus/TCP Security role (profile modbus-role)")
    owner: str | None = Field(default=None, description="device owner (profile device; default: the CA name)")


class IssueResponse(BaseModel):
    serial: str = Field(description="lower-case hex")
    certificate: str = Field(description="PEM")
    chain: list[str] = Field(description="PEM, issuing CA first, root last")


class RevokeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="unspecified", description="RFC 5280 reason name, e.g. keyCompromise")


class CertificateOut(BaseModel):
    serial: str
    ca: str
    profile: str
    kind: str
    subject: str
    not_valid_before: datetime
    not_valid_after: datetime
    status: CertificateStatus
    revoked_at: datetime | None = None
    revocation_reason: str | None = None
    certificate: str

    @classmethod
    def from_record(cls, record: CertificateRecord, now: datetime) -> CertificateOut:
        pem = x509.load_der_x509_certificate(record.der).public_bytes(Encoding.PEM).decode()
        return cls(
            serial=record.serial,
            ca=record.ca,
            profile=record.profile,
            kind=record.kind.value,
            subject=record.subject,
            not_valid_before=record.not_valid_before,
            not_valid_after=record.not_valid_after,
            status=record.status_at(now),
            revoked_at=record.revoked_at,
            revocation_reason=reason_name(record.revocation_reason) if record.revocation_reason else None,
            certificate=pem,
        )


class CertificatePage(BaseModel):
    items: list[CertificateOut]
    total: int
    limit: int
    offset: int


class AuthorityOut(BaseModel):
    name: str
    parent: str | None
    subject: str
    not_valid_after: datetime
    path_length: int | None
    permitted_dns: list[str]
    permitted_ip: list[str]
    certificate: str

    @classmethod
    def from_record(cls, record: AuthorityRecord) -> AuthorityOut:
        certificate = x509.load_der_x509_certificate(record.certificate_der)
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        try:
            nc = certificate.extensions.get_extension_for_class(x509.NameConstraints).value
            permitted = [n.value for n in nc.permitted_subtrees or () if isinstance(n, x509.DNSName)]
            networks = [str(n.value) for n in nc.permitted_subtrees or () if isinstance(n, x509.IPAddress)]
        except x509.ExtensionNotFound:
            permitted, networks = [], []
        return cls(
            name=record.name,
            parent=record.parent,
            subject=certificate.subject.rfc4514_string(),
            not_valid_after=certificate.not_valid_after_utc,
            path_length=constraints.path_length,
            permitted_dns=permitted,
            permitted_ip=networks,
            certificate=certificate.public_bytes(Encoding.PEM).decode(),
        )
