"""Protocols the services need from the outside world; adapters implement them.

Each optional capability is its own small protocol so that a backend supports
what it can and nothing raises NotImplementedError.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509 import ReasonFlags

from otward.core.keys import KeyType
from otward.core.records import (
    AuthorityRecord,
    CertificateFilter,
    CertificateRecord,
    CrlRecord,
    TokenRecord,
)
from otward.core.revocation import RevokedEntry

__all__ = [
    "AuthorityStore",
    "CertificateStore",
    "CrlBuilder",
    "CrlStore",
    "KeyBackend",
    "PkiStore",
    "TokenStore",
]


class KeyBackend(Protocol):
    """Creates and loads CA signing keys.

    ``load_key`` returns an object implementing cryptography's private-key
    interface; for a PKCS#11 backend its ``sign`` runs in the token, so issuance
    code never knows where the key lives.
    """

    def create_key(self, key_type: KeyType, label: str) -> str:
        """Generate a key and return its reference (e.g. ``file:keys/root.key.pem``)."""
        ...

    def load_key(self, key_ref: str) -> CertificateIssuerPrivateKeyTypes: ...


class AuthorityStore(Protocol):
    def add_authority(self, authority: AuthorityRecord, certificates: Sequence[CertificateRecord]) -> None:
        """Store a CA with its own and its responder's certificate records, atomically."""
        ...

    def get_authority(self, name: str) -> AuthorityRecord | None: ...

    def list_authorities(self) -> Sequence[AuthorityRecord]: ...

    def replace_ocsp_responder(self, name: str, certificate: CertificateRecord, key_ref: str) -> None: ...


class CertificateStore(Protocol):
    def add_certificate(self, record: CertificateRecord) -> None:
        """Store durably; returns only once committed."""
        ...

    def get_certificate(self, serial_number: int) -> CertificateRecord | None: ...

    def list_certificates(
        self, query: CertificateFilter, *, limit: int, offset: int
    ) -> tuple[Sequence[CertificateRecord], int]:
        """A page of certificates, newest first, and the total matching."""
        ...

    def revoke_certificate(
        self, serial_number: int, when: datetime, reason: ReasonFlags
    ) -> CertificateRecord:
        """Mark revoked; raise NotFoundError or ConflictError (already revoked)."""
        ...

    def revoked_entries(self, ca: str) -> Sequence[RevokedEntry]: ...

    def certificate_status(self, ca: str, serial_number: int) -> tuple[bool, RevokedEntry | None]:
        """(issued by ``ca``?, its revocation if revoked) — the OCSP hot path."""
        ...


class CrlStore(Protocol):
    def save_crl(self, ca: str, build: CrlBuilder) -> CrlRecord:
        """Allocate the next CRL number, let ``build`` make the CRL and store it, atomically."""
        ...

    def get_crl(self, ca: str) -> CrlRecord | None: ...


class CrlBuilder(Protocol):
    def __call__(self, crl_number: int, revoked: Sequence[RevokedEntry]) -> CrlRecord: ...


class TokenStore(Protocol):
    def add_token(self, token: TokenRecord) -> None: ...

    def get_token(self, token_id: str) -> TokenRecord | None: ...


class PkiStore(AuthorityStore, CertificateStore, CrlStore, TokenStore, Protocol):
    """Everything the CA services persist; one database implements it all."""
