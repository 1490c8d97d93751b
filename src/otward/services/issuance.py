"""Issuing end-entity certificates from CSRs: check, plan, sign, store, then return."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from otward.core.audit import EventType, Outcome
from otward.core.csr import load_csr, validate_csr
from otward.core.issuance import IssuanceRequest, build_certificate, plan_certificate
from otward.core.ports import CertificateStore
from otward.core.profiles import Profile
from otward.core.records import CertificateKind, CertificateRecord, certificate_record
from otward.errors import InvalidRequestError, NotFoundError, PolicyViolationError
from otward.services.audit import SYSTEM_ACTOR, Actor, AuditLog
from otward.services.authorities import AuthorityService, LoadedAuthority, sign

__all__ = ["DEFAULT_CA", "IssuanceService", "IssuedCertificate"]

DEFAULT_CA = "issuing"


@dataclass(frozen=True)
class IssuedCertificate:
    """A stored certificate and the chain a relying party needs (issuing CA first, root last)."""

    record: CertificateRecord
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]

    @property
    def serial(self) -> str:
        return self.record.serial

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(Encoding.PEM).decode()

    @property
    def chain_pem(self) -> list[str]:
        return [c.public_bytes(Encoding.PEM).decode() for c in self.chain]


class IssuanceService:
    def __init__(
        self,
        store: CertificateStore,
        authorities: AuthorityService,
        profiles: Mapping[str, Profile],
        *,
        clock: Callable[[], datetime],
        new_serial: Callable[[], int],
        audit: AuditLog,
    ) -> None:
        self._store = store
        self._audit = audit
        self._authorities = authorities
        self.profiles = dict(profiles)
        self._clock = clock
        self._new_serial = new_serial

    def profile(self, name: str) -> Profile:
        try:
            return self.profiles[name]
        except KeyError:
            raise InvalidRequestError(
                f"unknown profile '{name}' (known: {', '.join(sorted(self.profiles))})", rule="profile"
            ) from None

    def _issuer(self, name: str) -> LoadedAuthority:
        try:
            authority = self._authorities.get(name)
        except NotFoundError as exc:
            raise InvalidRequestError(exc.message, rule="ca") from None
        if authority.parent is None:
            raise PolicyViolationError(
                f"CA '{name}' is a root; end-entity certificates come from a subordinate CA", rule="ca-root"
            )
        # A CA whose own certificate (or an ancestor's) was revoked signs nothing more: checked
        # inside the write transaction (issuer_serials), so it holds across processes too.
        return authority

    def issue(
        self,
        csr: bytes | str,
        *,
        profile: str,
        ca: str | None = None,
        validity_days: int | None = None,
        role: str | None = None,
        owner: str | None = None,
        actor: Actor = SYSTEM_ACTOR,
    ) -> IssuedCertificate:
        """Issue from ``csr`` under ``profile``; the certificate and its ``cert.issued`` event are
        committed together before it is returned. A refusal is recorded as ``cert.refused``."""
        try:
            return self._issue(csr, profile, ca, validity_days, role, owner, actor)
        except (InvalidRequestError, PolicyViolationError) as exc:
            details = {"profile": profile, "ca": ca or DEFAULT_CA, "rule": exc.rule or ""}
            self._audit.record(
                self._audit.event(
                    actor,
                    EventType.CERT_REFUSED,
                    _requested_subject(csr),
                    outcome=Outcome.FAILURE,
                    reason=exc.message,
                    details=details,
                )
            )
            raise

    def _issue(
        self,
        csr: bytes | str,
        profile: str,
        ca: str | None,
        validity_days: int | None,
        role: str | None,
        owner: str | None,
        actor: Actor,
    ) -> IssuedCertificate:
        checked = validate_csr(load_csr(csr))
        chosen = self.profile(profile)
        authority = self._issuer(ca or DEFAULT_CA)
        now = self._clock()
        plan = plan_certificate(
            IssuanceRequest(
                checked=checked,
                profile=chosen,
                issuer=authority.info,
                now=now,
                validity_days=validity_days,
                role=role,
                owner=owner,
            )
        )
        certificate = sign(
            build_certificate(plan, checked.csr.public_key(), authority.info, self._new_serial()),
            authority.key,
        )
        record = certificate_record(
            certificate, ca=authority.name, profile=chosen.name, kind=CertificateKind.END_ENTITY, now=now
        )
        details = {"ca": authority.name, "profile": chosen.name, "dn": record.subject}
        if role:
            details["role"] = role
        event = self._audit.event(actor, EventType.CERT_ISSUED, record.serial, details=details)
        self._store.add_certificate(
            record, [event], issuer_serials=[c.serial_number for c in authority.chain[:-1]]
        )
        return IssuedCertificate(record=record, certificate=certificate, chain=authority.chain)


def _requested_subject(csr: bytes | str) -> str:
    """The CSR's subject for a refusal event, or a placeholder when the CSR cannot be read."""
    try:
        return load_csr(csr).subject.rfc4514_string()[:512] or "(empty subject)"
    except (InvalidRequestError, ValueError):
        return "(unreadable csr)"
