"""Service signing keys that are not CAs: the audit and transparency-log signer, the edge signer.

The signer's certificate is issued by the ``issuing`` CA (keyUsage
digitalSignature + nonRepudiation) so that anyone holding the root can check
signed audit heads and signed tree heads offline. The edge signer (policy
bundles and access credentials) also carries id-kp-otwardEdgeSigning, which
gatekeepers require: no other certificate of the CA can sign what they obey.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from otward.core.audit import EventType
from otward.core.edge.formats import EDGE_SIGNING_OID
from otward.core.issuance import BACKDATE, build_signer_certificate, service_subject
from otward.core.keys import classify_public_key
from otward.core.ports import KeyBackend, PkiStore
from otward.core.records import CertificateKind, certificate_record
from otward.services.audit import SYSTEM_ACTOR, AuditLog
from otward.services.authorities import AuthorityService, sign

__all__ = ["AUDIT_SIGNER", "EDGE_SIGNER", "SignerService"]

AUDIT_SIGNER = "audit"
EDGE_SIGNER = "edge"
_EXTENDED_KEY_USAGE = {EDGE_SIGNER: (EDGE_SIGNING_OID,)}
SIGNER_CA = "issuing"
SIGNER_VALIDITY = timedelta(days=5 * 365)


class SignerService:
    def __init__(
        self,
        store: PkiStore,
        keys: KeyBackend,
        authorities: AuthorityService,
        *,
        clock: Callable[[], datetime],
        new_serial: Callable[[], int],
        audit: AuditLog,
    ) -> None:
        self._store = store
        self._audit = audit
        self._keys = keys
        self._authorities = authorities
        self._clock = clock
        self._new_serial = new_serial
        self._loaded: dict[str, tuple[CertificateIssuerPrivateKeyTypes, x509.Certificate]] = {}
        self._lock = threading.Lock()

    def get(self, name: str = AUDIT_SIGNER) -> tuple[CertificateIssuerPrivateKeyTypes, x509.Certificate]:
        """The signer's key and certificate, created on first use."""
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
            stored = self._store.get_signer(name)
            if stored is None:
                self._create(name)
                stored = self._store.get_signer(name)
                assert stored is not None  # noqa: S101 - just stored
            key_ref, der = stored
            loaded = (self._keys.load_key(key_ref), x509.load_der_x509_certificate(der))
            self._loaded[name] = loaded
            return loaded

    def _create(self, name: str) -> None:
        issuer = self._authorities.get(SIGNER_CA)
        key_type = classify_public_key(issuer.certificate.public_key())
        now = self._clock()
        key_ref = self._keys.create_key(key_type, f"signer-{name}-{now:%Y%m%d%H%M%S}")
        public_key = self._keys.load_key(key_ref).public_key()
        builder = build_signer_certificate(
            subject=service_subject(issuer.info, f"otward {name} signer"),
            public_key=public_key,
            issuer=issuer.info,
            serial_number=self._new_serial(),
            not_valid_before=now - BACKDATE,
            not_valid_after=min(now + SIGNER_VALIDITY, issuer.certificate.not_valid_after_utc),
            extended_key_usage=_EXTENDED_KEY_USAGE.get(name, ()),
        )
        certificate = sign(builder, issuer.key)
        record = certificate_record(
            certificate, ca=SIGNER_CA, profile=f"{name}-signer", kind=CertificateKind.END_ENTITY, now=now
        )
        details = {"signer": name, "ca": SIGNER_CA}
        event = self._audit.event(SYSTEM_ACTOR, EventType.SIGNER_CREATED, record.serial, details=details)
        self._store.add_signer(name, key_ref, record, [event])

    def certificate(self, serial_number: int) -> x509.Certificate | None:
        """A signer certificate by serial, only if it was issued by the issuing CA for a signer."""
        record = self._store.get_certificate(serial_number)
        if record is None or not record.profile.endswith("-signer"):
            return None
        certificate = x509.load_der_x509_certificate(record.der)
        issuer = self._authorities.certificate_chain(record.ca)[0]
        try:
            certificate.verify_directly_issued_by(issuer)
        except (InvalidSignature, ValueError, TypeError):
            return None  # not a signer this installation certified
        return certificate
