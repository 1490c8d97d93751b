"""Request and response bodies of the HTTPS API (they define the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import BaseModel, ConfigDict, Field

from otward.core.records import AuthorityRecord, CertificateRecord, CertificateStatus, DeviceRecord
from otward.core.revocation import reason_name

__all__ = [
    "AttestRequest",
    "AttestResponse",
    "AuthorityOut",
    "CertificateOut",
    "CertificatePage",
    "ChallengeRequest",
    "ChallengeResponse",
    "DeviceOut",
    "DevicePage",
    "IssueRequest",
    "IssueResponse",
    "RevokeRequest",
]


class IssueRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    csr: str = Field(description="PKCS#10 request, PEM", max_length=65536)
    profile: str = Field(
        description="tls-server, tls-client, device, opcua-application, modbus-role or firmware-signing"
    )
    ca: str | None = Field(default=None, description="issuing CA (default 'issuing')")
    days: int | None = Field(default=None, description="validity in days (default: the profile's)")
    role: str | None = Field(default=None, description="Modbus/TCP Security role (profile modbus-role)")
    owner: str | None = Field(
        default=None, description="device owner, an existing one (required by profile device)"
    )


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


class DeviceOut(BaseModel):
    device_id: str
    owner: str
    status: str = Field(description="active, disabled or revoked")
    profile: str
    current_serial: str | None
    enrollment_token: str | None = Field(description="id of the token that enrolled it last")
    first_seen: datetime
    last_seen: datetime
    last_attested_at: datetime | None
    certificates: list[CertificateOut] | None = Field(
        default=None, description="history, newest first (only when one device is shown)"
    )

    @classmethod
    def from_record(
        cls, record: DeviceRecord, now: datetime, history: list[CertificateRecord] | None = None
    ) -> DeviceOut:
        return cls(
            device_id=record.device_id,
            owner=record.owner,
            status=record.status.value,
            profile=record.profile,
            current_serial=record.current_serial,
            enrollment_token=record.enrollment_token_id,
            first_seen=record.first_seen,
            last_seen=record.last_seen,
            last_attested_at=record.last_attested_at,
            certificates=None if history is None else [CertificateOut.from_record(c, now) for c in history],
        )


class DevicePage(BaseModel):
    items: list[DeviceOut]
    total: int
    limit: int
    offset: int


class ChallengeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    purpose: str = Field(default="attest", description="attest, or renew to earn a renewal token")


class ChallengeResponse(BaseModel):
    challenge_id: str
    nonce: str = Field(description="base64url without padding; sign challenge_message(...) over it")
    purpose: str
    expires_at: datetime


class AttestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    challenge_id: str = Field(max_length=64)
    signature: str = Field(max_length=2048, description="base64url (padding optional) of the signature")


class AttestResponse(BaseModel):
    device_id: str
    result: str = Field(description="passed (a failure is a 401 problem)")
    serial: str = Field(description="the certificate whose key answered")
    renewal_token: str | None = Field(
        default=None, description="single use, minutes long; for purpose 'renew' only"
    )
