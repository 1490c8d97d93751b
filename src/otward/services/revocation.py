"""Revoking certificates and publishing each CA's CRL."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ReasonFlags

from otward.config import CrlSettings
from otward.core.audit import AuditEvent, EventType, Outcome
from otward.core.keys import signature_hash_for
from otward.core.ports import CertificateStore, CrlStore
from otward.core.records import CertificateKind, CertificateRecord, CrlRecord, format_serial
from otward.core.revocation import RevokedEntry, build_crl, reason_name
from otward.core.revocation_journal import JournalCrl, JournalEntry, JournalRevocation, RevocationJournal
from otward.errors import ConflictError, NotFoundError, PolicyViolationError
from otward.services.audit import SYSTEM_ACTOR, Actor, AuditLog
from otward.services.authorities import AuthorityService

__all__ = ["RevocationService"]


class RevocationService:
    def __init__(
        self,
        certificates: CertificateStore,
        crls: CrlStore,
        authorities: AuthorityService,
        settings: CrlSettings,
        *,
        clock: Callable[[], datetime],
        audit: AuditLog,
        journal: RevocationJournal | None = None,
    ) -> None:
        self._certificates = certificates
        self._journal = journal
        self._crls = crls
        self._audit = audit
        self._authorities = authorities
        self._settings = settings
        self._clock = clock

    def revoke(
        self, serial_number: int, reason: ReasonFlags, actor: Actor = SYSTEM_ACTOR
    ) -> CertificateRecord:
        """Revoke for good (with its ``cert.revoked`` event) and republish the CA's CRL at once.

        A device's current certificate takes the device's older unrevoked ones with it (superseded,
        each with its own event): a renewed device kept its previous certificate for the overlap, and
        with it its access (the Mosquitto ACL lists devices holding a valid certificate).

        The revocation commits first and the CRL is signed after it; if the process dies (or
        signing fails) in between, :meth:`publish_stale` finds the CRL behind and re-signs it (the
        service checks every few seconds), and revoking the same certificate again re-signs it too.
        """
        serial = format_serial(serial_number)
        existing = self._certificates.get_certificate(serial_number)
        try:
            if existing is not None and existing.kind is CertificateKind.CA and existing.profile == "root-ca":
                raise PolicyViolationError(
                    "a root CA certificate cannot be revoked; remove it from the trust stores instead",
                    rule="revoke-root",
                )
            details = {"ca": existing.ca, "dn": existing.subject} if existing else {}
            event = self._audit.event(
                actor, EventType.CERT_REVOKED, serial, reason=reason_name(reason), details=details
            )
            retired: list[CertificateRecord] = []

            def superseded_event(certificate: CertificateRecord) -> AuditEvent:
                retired.append(certificate)
                details = {
                    "ca": certificate.ca,
                    "dn": certificate.subject,
                    "device_id": certificate.device_id or "",
                    "with": serial,
                }
                return self._audit.event(
                    actor, EventType.CERT_REVOKED, certificate.serial, reason="superseded", details=details
                )

            record = self._certificates.revoke_certificate(
                serial_number, self._clock(), reason, [event], superseded_event=superseded_event
            )
        except (PolicyViolationError, NotFoundError, ConflictError) as exc:
            self._audit.record(
                self._audit.event(
                    actor, EventType.CERT_REVOKED, serial, outcome=Outcome.FAILURE, reason=exc.message
                )
            )
            if existing is not None and exc.rule == "already-revoked":
                self.publish_if_stale(existing.ca, actor)  # an earlier revoke may have died before its CRL
            raise
        for ca in sorted({record.ca, *(c.ca for c in retired)}):
            self.publish_crl(ca, actor)
        if record.kind is CertificateKind.CA:
            self._authorities.forget()
        return record

    def revoke_authority(
        self, name: str, reason: ReasonFlags, actor: Actor = SYSTEM_ACTOR
    ) -> CertificateRecord:
        """Revoke subordinate CA ``name``: its certificate goes on its parent's CRL (for a root's
        children that CRL is the root's, serving as its ARL), the CA and every CA below it issue
        nothing more, and its own CRL and OCSP responder keep answering so that relying parties see
        its certificates fail through the chain. A root cannot be revoked, nor a CA whose parent is
        outside otward (its certificate is on that parent's CRL)."""
        record = self._authorities.record(name)
        refusal: PolicyViolationError | None = None
        if record.is_root:
            refusal = PolicyViolationError(
                f"CA '{name}' is a root and cannot be revoked; remove it from the trust stores instead "
                "(or roll it over: otward ca rollover)",
                rule="revoke-root",
            )
        elif record.parent is None:
            refusal = PolicyViolationError(
                f"CA '{name}' was signed outside otward; its certificate is revoked by the operator of "
                "that root (on that root's CRL)",
                rule="revoke-external",
            )
        if refusal is not None:
            self._audit.record(
                self._audit.event(
                    actor,
                    EventType.CA_REVOKED,
                    name,
                    outcome=Outcome.FAILURE,
                    reason=refusal.message,
                    details={"rule": refusal.rule or ""},
                )
            )
            raise refusal
        serial_number = x509.load_der_x509_certificate(record.certificate_der).serial_number
        event = self._audit.event(
            actor,
            EventType.CA_REVOKED,
            name,
            reason=reason_name(reason),
            details={"parent": record.parent or "", "serial": format_serial(serial_number)},
        )
        revoked = self.revoke(serial_number, reason, actor)
        self._audit.record(event)
        self.publish_crl(name, actor)  # its own CRL stays current for the leaves it issued
        return revoked

    def publish_crl(self, ca: str, actor: Actor = SYSTEM_ACTOR) -> CrlRecord:
        """Sign and store a new CRL for ``ca`` with the next CRL number."""
        authority = self._authorities.get(ca)
        now = self._clock()
        next_update = min(now + self._settings.validity, authority.certificate.not_valid_after_utc)

        def build(crl_number: int, revoked: Sequence[RevokedEntry]) -> tuple[CrlRecord, list[AuditEvent]]:
            builder = build_crl(
                authority.info, revoked, crl_number=crl_number, this_update=now, next_update=next_update
            )
            crl = builder.sign(authority.key, signature_hash_for(authority.key))  # type: ignore[arg-type]
            details = {
                "crl_number": str(crl_number),
                "entries": str(len(revoked)),
                "next_update": next_update.isoformat(),
            }
            event = self._audit.event(actor, EventType.CRL_SIGNED, ca, details=details)
            # What the CRL lists and its number reach the journal before the CRL is stored and served.
            self._journal_crl(ca, revoked, JournalCrl(ca, crl_number, now))
            return CrlRecord(ca, crl_number, now, next_update, crl.public_bytes(Encoding.DER)), [
                event
            ] if event else []

        return self._crls.save_crl(ca, build)

    def _journal_crl(self, ca: str, revoked: Sequence[RevokedEntry], crl: JournalCrl) -> None:
        """Append the revocations the journal lacks (with the certificate, so that a restore of a backup
        taken before it was issued can store it again) and the CRL number (docs/backup.md)."""
        if self._journal is None:
            return
        known = self._journal.known_serials()
        entries: list[JournalEntry] = []
        for entry in revoked:
            serial = format_serial(entry.serial_number)
            if serial in known:
                continue
            record = self._certificates.get_certificate(entry.serial_number)
            entries.append(
                JournalRevocation(
                    ca=ca,
                    serial=serial,
                    revoked_at=entry.revocation_date,
                    reason=entry.reason,
                    certificate_der=record.der if record is not None else None,
                    profile=record.profile if record is not None else None,
                    kind=record.kind.value if record is not None else None,
                    device_id=record.device_id if record is not None else None,
                )
            )
        entries.append(crl)
        self._journal.append(entries)

    def current_crl(self, ca: str) -> CrlRecord:
        """The stored CRL, regenerated first when it is missing or close to its nextUpdate."""
        record = self._crls.get_crl(ca)
        if record is None or record.next_update - self._clock() < self._settings.refresh_margin:
            return self.publish_crl(ca)
        return record

    def publish_if_stale(self, ca: str, actor: Actor = SYSTEM_ACTOR) -> bool:
        """Re-sign ``ca``'s CRL if it is missing or lists other revocations than are committed."""
        if ca not in self._crls.stale_crls():
            return False
        self.publish_crl(ca, actor)
        return True

    def publish_stale(self, actor: Actor = SYSTEM_ACTOR) -> list[str]:
        """Re-sign every CRL that is behind a committed revocation (one query when none is)."""
        stale = list(self._crls.stale_crls())
        for ca in stale:
            self.publish_crl(ca, actor)
        return stale

    def refresh_all(self) -> list[str]:
        """Regenerate every CRL that is behind a revocation or due; returns the names of the CAs refreshed."""
        refreshed = self.publish_stale()
        for authority in self._authorities.list():
            if authority.name in refreshed:
                continue
            before = self._crls.get_crl(authority.name)
            after = self.current_crl(authority.name)
            if before is None or after.crl_number != before.crl_number:
                refreshed.append(authority.name)
        return refreshed
