"""Service signing keys that are not CAs: the audit and transparency-log signer, the edge signer.

The signer's certificate is issued by the ``issuing`` CA (keyUsage
digitalSignature + nonRepudiation) so that anyone holding the root can check
signed audit heads and signed tree heads offline. Each signer also carries its
own EKU, which its relying parties require, so that no other certificate of the
CA (a device's, whose key the device chose) can sign what they trust:
id-kp-otwardAuditSigning for audit heads, id-kp-otwardEdgeSigning for policy
bundles and access credentials.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from otward.core.audit import AUDIT_SIGNING_OID, EventType
from otward.core.edge.formats import EDGE_SIGNING_OID
from otward.core.issuance import BACKDATE, build_signer_certificate, service_subject
from otward.core.keys import classify_public_key
from otward.core.ports import CertificateStore, KeyBackend, SignerStore
from otward.core.records import (
    CertificateFilter,
    CertificateKind,
    CertificateRecord,
    certificate_record,
    format_serial,
)
from otward.errors import ConfigError, ConflictError, InvalidRequestError, PolicyViolationError, SignerError
from otward.services.audit import SYSTEM_ACTOR, Actor, AuditLog
from otward.services.authorities import AuthorityService, sign
from otward.services.revocation import RevocationService

__all__ = ["AUDIT_SIGNER", "EDGE_SIGNER", "SIGNERS", "EdgeSignerSet", "SignerInfo", "SignerService"]

AUDIT_SIGNER = "audit"
EDGE_SIGNER = "edge"
SIGNERS = (AUDIT_SIGNER, EDGE_SIGNER)
_PREVIOUS_SIGNERS = 16  # earlier edge signers a bundle names at most (newest first)
_EXTENDED_KEY_USAGE = {AUDIT_SIGNER: (AUDIT_SIGNING_OID,), EDGE_SIGNER: (EDGE_SIGNING_OID,)}
SIGNER_CA = "issuing"
SIGNER_VALIDITY = timedelta(days=5 * 365)


@dataclass(frozen=True)
class SignerInfo:
    name: str
    certificate: x509.Certificate
    revoked: bool

    def summary(self) -> dict[str, object]:
        """What the CLI and the API show of a signer."""
        return {
            "name": self.name,
            "serial": format_serial(self.certificate.serial_number),
            "not_before": self.certificate.not_valid_before_utc,
            "not_after": self.certificate.not_valid_after_utc,
            "revoked": self.revoked,
            "sha256": self.certificate.fingerprint(hashes.SHA256()).hex(),
        }


@dataclass(frozen=True)
class EdgeSignerSet:
    previous: tuple[x509.Certificate, ...]  # earlier edge signers, unexpired and unrevoked
    revoked: tuple[x509.Certificate, ...]  # earlier edge signers, unexpired and revoked


class SignerService:
    def __init__(
        self,
        store: SignerStore,
        certificates: CertificateStore,
        keys: KeyBackend,
        authorities: AuthorityService,
        *,
        clock: Callable[[], datetime],
        new_serial: Callable[[], int],
        audit: AuditLog,
        revocation: RevocationService | None = None,
    ) -> None:
        """``revocation`` revokes a previous certificate when a rotation asks for it (and republishes
        the CRL)."""
        self._store = store
        self._certificates = certificates
        self._revocation = revocation
        self._audit = audit
        self._keys = keys
        self._authorities = authorities
        self._clock = clock
        self._new_serial = new_serial
        self._loaded: dict[str, tuple[CertificateIssuerPrivateKeyTypes, x509.Certificate, bytes]] = {}
        self._lock = threading.Lock()

    def get(self, name: str = AUDIT_SIGNER) -> tuple[CertificateIssuerPrivateKeyTypes, x509.Certificate]:
        """The signer's current key and certificate, created on first use.

        The signer row and its certificate are read on every call (two indexed reads; signers sign
        heads and bundles, not every request), so a rotation made by another process is used at
        once. A revoked signer signs nothing: PolicyViolationError until it is rotated. A signer
        whose certificate lacks its EKU (made before signers carried one) is rotated first.
        """
        key, certificate = self._current(name)
        if not _has_usage(name, certificate):
            try:
                self.rotate(name)
            except ConflictError:
                pass  # another process rotated it at the same time
            key, certificate = self._current(name)
        return key, certificate

    def check_keys(self) -> None:
        """Load the key of every signer that exists (SignerError if one is not where its row says)."""
        for name in SIGNERS:
            stored = self._store.get_signer(name)
            if stored is not None:
                self._keys.load_key(stored[0])

    def _current(self, name: str) -> tuple[CertificateIssuerPrivateKeyTypes, x509.Certificate]:
        with self._lock:
            stored = self._store.get_signer(name)
            if stored is None:
                self._create(name)
                stored = self._store.get_signer(name)
                assert stored is not None  # noqa: S101 - just stored
            loaded = self._loaded.get(name)
            if loaded is None or loaded[2] != stored[1]:
                loaded = self._load(name, stored)
                self._loaded[name] = loaded
            record = self._certificates.get_certificate(loaded[1].serial_number)
            if record is not None and record.revoked_at is not None:
                raise PolicyViolationError(
                    f"the {name} signer's certificate {record.serial} is revoked: "
                    f"run 'otward signer rotate {name}'",
                    rule="signer-revoked",
                )
            return loaded[0], loaded[1]

    def _load(
        self, name: str, stored: tuple[str, bytes]
    ) -> tuple[CertificateIssuerPrivateKeyTypes, x509.Certificate, bytes]:
        try:
            key = self._keys.load_key(stored[0])
        except SignerError:
            # Another process rotated between our read of the signer and the key load, and destroyed
            # the key we were about to load: the signer row names the new one by now.
            fresh = self._store.get_signer(name)
            if fresh is None or fresh == stored:
                raise
            stored = fresh
            key = self._keys.load_key(stored[0])
        return key, x509.load_der_x509_certificate(stored[1]), stored[1]

    def current(self, name: str) -> SignerInfo | None:
        """The named signer's certificate and state, without creating it."""
        stored = self._store.get_signer(name)
        if stored is None:
            return None
        certificate = x509.load_der_x509_certificate(stored[1])
        record = self._certificates.get_certificate(certificate.serial_number)
        return SignerInfo(name, certificate, revoked=record is not None and record.revoked_at is not None)

    def rotate(
        self,
        name: str,
        *,
        revoke_previous: x509.ReasonFlags | None = None,
        actor: Actor = SYSTEM_ACTOR,
    ) -> SignerInfo:
        """A new key and certificate for the named signer; the previous certificate stays valid (what
        it signed still verifies; edge credentials it signed keep working until they expire) unless
        ``revoke_previous`` gives a reason (keyCompromise, superseded ...) to revoke it at once."""
        if name not in SIGNERS:
            raise InvalidRequestError(
                f"no signer '{name}': signers are {', '.join(SIGNERS)}", rule="signer-name"
            )
        if revoke_previous is not None and self._revocation is None:  # refused before anything changes
            raise ConfigError("signer rotation cannot revoke without the revocation service")
        with self._lock:
            stored = self._store.get_signer(name)
            if stored is None:  # nothing to rotate yet: the first key is the new one
                self._create(name)
                previous = None
            else:
                previous = x509.load_der_x509_certificate(stored[1])
                self._replace(name, previous, revoke_previous, actor)
                self._loaded.pop(name, None)
                # What the retired key signed verifies with its certificate alone: the key goes.
                self._keys.destroy_key(stored[0])
        if previous is not None and revoke_previous is not None and self._revocation is not None:
            self._revocation.revoke(previous.serial_number, revoke_previous, actor)
        info = self.current(name)
        assert info is not None  # noqa: S101 - just stored
        return info

    def _replace(
        self,
        name: str,
        previous: x509.Certificate,
        revoke_previous: x509.ReasonFlags | None,
        actor: Actor,
    ) -> None:
        key_ref, record = self._new_certificate(name)
        details = {
            "signer": name,
            "ca": record.ca,
            "previous_serial": format_serial(previous.serial_number),
            "previous_revoked": revoke_previous.value if revoke_previous else "no",
        }
        event = self._audit.event(actor, EventType.SIGNER_ROTATED, record.serial, details=details)
        try:
            self._store.replace_signer(
                name,
                key_ref,
                record,
                [event],
                previous_serial=format_serial(previous.serial_number),
            )
        except BaseException:
            self._keys.destroy_key(key_ref)  # never stored: no certificate names it
            raise

    def rotate_if_due(self, name: str, actor: Actor = SYSTEM_ACTOR) -> bool:
        """Rotate a signer that exists and is revoked or past two thirds of its certificate's lifetime
        (the housekeeping of the service calls this); True when rotated."""
        info = self.current(name)
        if info is None:
            return False
        start, end = info.certificate.not_valid_before_utc, info.certificate.not_valid_after_utc
        record = self._certificates.get_certificate(info.certificate.serial_number)
        # After a rollover of its CA the signer moves to the new generation.
        moved = record is not None and record.ca != self._authorities.current_name(SIGNER_CA)
        if not info.revoked and not moved and self._clock() < start + (end - start) * 2 / 3:
            return False
        self.rotate(name, actor=actor)
        return True

    def edge_signers(self, current: x509.Certificate) -> EdgeSignerSet:
        """The edge signers a policy bundle signed by ``current`` names besides it: earlier edge signer
        certificates still within their validity, split into those whose credentials assets keep
        accepting and those revoked (assets refuse anything they signed)."""
        now = self._clock()
        current_serial = format_serial(current.serial_number)
        records: list[CertificateRecord] = []
        for ca in self._authorities.generations(SIGNER_CA):  # signers of older generations still count
            query = CertificateFilter(ca=ca, profile=f"{EDGE_SIGNER}-signer", expires_after=now)
            page, _ = self._certificates.list_certificates(query, limit=_PREVIOUS_SIGNERS, offset=0)
            records.extend(page)
        previous: list[x509.Certificate] = []
        revoked: list[x509.Certificate] = []
        for record in records:
            if record.serial == current_serial:
                continue
            certificate = x509.load_der_x509_certificate(record.der)
            (revoked if record.revoked_at is not None else previous).append(certificate)
        return EdgeSignerSet(previous=tuple(previous), revoked=tuple(revoked))

    def _create(self, name: str) -> None:
        key_ref, record = self._new_certificate(name)
        details = {"signer": name, "ca": record.ca}
        event = self._audit.event(SYSTEM_ACTOR, EventType.SIGNER_CREATED, record.serial, details=details)
        self._store.add_signer(name, key_ref, record, [event])

    def _new_certificate(self, name: str) -> tuple[str, CertificateRecord]:
        """A new key in the key backend and its signer certificate from the issuing CA (not stored)."""
        issuer = self._authorities.signing_authority(SIGNER_CA)  # after a rollover, the newest generation
        key_type = classify_public_key(issuer.certificate.public_key())
        now = self._clock()
        serial_number = self._new_serial()  # names the key too: labels by time collide in one second
        key_ref = self._keys.create_key(key_type, f"signer-{name}-{now:%Y%m%d}-{serial_number:x}")
        public_key = self._keys.load_key(key_ref).public_key()
        builder = build_signer_certificate(
            subject=service_subject(issuer.info, f"otward {name} signer"),
            public_key=public_key,
            issuer=issuer.info,
            serial_number=serial_number,
            not_valid_before=now - BACKDATE,
            not_valid_after=min(now + SIGNER_VALIDITY, issuer.certificate.not_valid_after_utc),
            extended_key_usage=_EXTENDED_KEY_USAGE.get(name, ()),
        )
        certificate = sign(builder, issuer.key)
        record = certificate_record(
            certificate, ca=issuer.name, profile=f"{name}-signer", kind=CertificateKind.END_ENTITY, now=now
        )
        return key_ref, record

    def certificate(self, serial_number: int) -> x509.Certificate | None:
        """The certificate stored under ``serial_number``, as the database has it: whoever relies on
        it checks its usage and its chain to a trust anchor kept outside the database (the audit
        verifier does), since whoever can write the database can write this row too."""
        record = self._certificates.get_certificate(serial_number)
        return x509.load_der_x509_certificate(record.der) if record is not None else None


def _has_usage(name: str, certificate: x509.Certificate) -> bool:
    """Whether ``certificate`` carries every EKU the signer ``name`` needs."""
    required = _EXTENDED_KEY_USAGE.get(name, ())
    if not required:
        return True
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return all(oid in usages for oid in required)
