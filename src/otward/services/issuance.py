"""Issuing end-entity certificates from CSRs: check, plan, sign, store, then return."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from otward.core.audit import AuditEvent, EventType, Outcome
from otward.core.csr import load_csr, validate_csr
from otward.core.issuance import IssuanceRequest, build_certificate, plan_certificate
from otward.core.ports import CertificateStore, OwnerStore
from otward.core.profiles import Identity, Profile
from otward.core.records import CertificateKind, CertificateRecord, certificate_record
from otward.core.renewal import Renewal
from otward.errors import InvalidRequestError, NotFoundError, OtwardError, PolicyViolationError
from otward.services.audit import SYSTEM_ACTOR, Actor, AuditLog
from otward.services.authorities import AuthorityService, LoadedAuthority, sign

__all__ = ["DEFAULT_CA", "IssuanceService", "IssuedCertificate", "SignedCertificate"]

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


@dataclass(frozen=True)
class SignedCertificate:
    """A certificate signed but not yet stored: it exists only once a store call commits it,
    together with ``event`` and after checking that no CA of ``issuer_serials`` was revoked."""

    issued: IssuedCertificate
    event: AuditEvent
    issuer_serials: tuple[int, ...]


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
        owners: OwnerStore | None = None,
    ) -> None:
        self._store = store
        self._owners = owners
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
        """The CA that signs for ``name``: its newest generation after a rollover, refused with a
        clear error when it (or a parent) is revoked, has expired or waits for its certificate."""
        try:
            authority = self._authorities.signing_authority(name)
        except NotFoundError as exc:
            raise InvalidRequestError(exc.message, rule="ca") from None
        if authority.is_root:
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
        committed together before it is returned. A refusal is recorded as ``cert.refused``.

        A device certificate names its owner (``urn:otward:device:<owner>:<id>``), so the device
        profile needs an owner that exists; its CA is then the owner's unless ``ca`` says otherwise."""
        try:
            ca = self._device_owner_ca(profile, owner, ca)
            signed = self.sign(
                csr, profile=profile, ca=ca, validity_days=validity_days, role=role, owner=owner, actor=actor
            )
            try:
                self._store.add_certificate(
                    signed.issued.record, [signed.event], issuer_serials=signed.issuer_serials
                )
            except PolicyViolationError as exc:
                self._explain_revoked(exc, signed.issued.record.ca)
                raise
        except (InvalidRequestError, PolicyViolationError) as exc:
            self.record_refusal(actor, csr, profile, ca, exc)
            raise
        return signed.issued

    def _explain_revoked(self, exc: PolicyViolationError, ca: str) -> None:
        """The store refused because the CA or a parent is revoked: raise the refusal that says which
        one, when and why (read only on this rare path, never on the hot one)."""
        if exc.rule == "ca-revoked":
            self._authorities.check_can_sign(ca)

    def _device_owner_ca(self, profile: str, owner: str | None, ca: str | None) -> str | None:
        """The CA to issue from; refuses a device certificate without an existing owner."""
        if self.profile(profile).identity is not Identity.DEVICE or self._owners is None:
            return ca
        if owner is None:
            raise InvalidRequestError(
                f"profile '{profile}' needs an owner (otward owner list shows them)", rule="device-owner"
            )
        record = self._owners.get_owner(owner)
        if record is None:
            raise InvalidRequestError(
                f"owner '{owner}' does not exist (otward owner create {owner} makes it)", rule="device-owner"
            )
        return ca if ca is not None else record.ca

    def record_refusal(
        self, actor: Actor, csr: bytes | str, profile: str, ca: str | None, exc: OtwardError, **extra: str
    ) -> None:
        details = {"profile": profile, "ca": ca or DEFAULT_CA, "rule": exc.rule or "", **extra}
        refusal = self._audit.event(
            actor,
            EventType.CERT_REFUSED,
            _requested_subject(csr),
            outcome=Outcome.FAILURE,
            reason=exc.message,
            details=details,
        )
        self._audit.record(refusal)

    def sign(
        self,
        csr: bytes | str,
        *,
        profile: str,
        ca: str | None = None,
        validity_days: int | None = None,
        role: str | None = None,
        owner: str | None = None,
        device_id: str | None = None,
        renewal: Renewal | None = None,
        actor: Actor = SYSTEM_ACTOR,
    ) -> SignedCertificate:
        """Check and sign, without storing (see :class:`SignedCertificate`); ``renewal`` names the
        certificate a re-enrollment renews, whose names the new one keeps (RFC 7030 4.2.2)."""
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
                renewal=renewal,
            )
        )
        certificate = sign(
            build_certificate(plan, checked.csr.public_key(), authority.info, self._new_serial()),
            authority.key,
        )
        record = certificate_record(
            certificate, ca=authority.name, profile=chosen.name, kind=CertificateKind.END_ENTITY, now=now
        )
        if device_id is not None:
            record = dataclasses.replace(record, device_id=device_id)
        details = {"ca": authority.name, "profile": chosen.name, "dn": record.subject}
        if role:
            details["role"] = role
        if device_id:
            details["device_id"] = device_id
        event = self._audit.event(actor, EventType.CERT_ISSUED, record.serial, details=details)
        return SignedCertificate(
            IssuedCertificate(record=record, certificate=certificate, chain=authority.chain),
            event,
            tuple(c.serial_number for c in authority.chain[:-1]),
        )

    def issue_many(
        self,
        csrs: Sequence[bytes | str],
        *,
        profile: str,
        ca: str | None = None,
        validity_days: int | None = None,
        actor: Actor = SYSTEM_ACTOR,
    ) -> list[IssuedCertificate]:
        """Issue a batch (a plant's devices, a production lot) under one profile, all or nothing.

        Every CSR is checked and signed first; then all certificates, their events and log entries
        are committed in one transaction, so the batch costs one durable commit. A refusal names the
        CSR by its position and stores nothing.
        """
        signed: list[SignedCertificate] = []
        for position, csr in enumerate(csrs):
            try:
                one = self.sign(csr, profile=profile, ca=ca, validity_days=validity_days, actor=actor)
            except (InvalidRequestError, PolicyViolationError) as exc:
                details = {
                    "profile": profile,
                    "ca": ca or DEFAULT_CA,
                    "rule": exc.rule or "",
                    "batch_index": str(position),
                }
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
                error = type(exc)(
                    f"csr #{position}: {exc.message}; nothing in this batch was issued", rule=exc.rule
                )
                raise error from exc
            signed.append(one)
        if not signed:
            return []
        try:
            self._store.add_certificates(
                [s.issued.record for s in signed],
                [s.event for s in signed],
                issuer_serials=signed[0].issuer_serials,
            )
        except PolicyViolationError as exc:
            self._explain_revoked(exc, signed[0].issued.record.ca)
            raise
        return [s.issued for s in signed]


def _requested_subject(csr: bytes | str) -> str:
    """The CSR's subject for a refusal event, or a placeholder when the CSR cannot be read."""
    try:
        return load_csr(csr).subject.rfc4514_string()[:512] or "(empty subject)"
    except (InvalidRequestError, ValueError):
        return "(unreadable csr)"
