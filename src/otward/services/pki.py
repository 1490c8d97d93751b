"""The PKI of one installation, wired together: store, keys, authorities, issuance, status."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from otward.adapters.crl_fetch import fetch_crl
from otward.adapters.db import SchemaChange, SqlStores, check_schema, create_database_engine, upgrade_schema
from otward.adapters.head_witness import WITNESS_FILE, FileHeadWitness
from otward.adapters.keys import FileKeyBackend, RoutingKeyBackend
from otward.adapters.keys.pkcs11 import Pkcs11KeyBackend, resolve_pin
from otward.adapters.revocation_journal import FileRevocationJournal
from otward.config import Settings, read_passphrase
from otward.core.audit import EventType, HeadSchedule
from otward.core.console_sessions import SessionTimeouts
from otward.core.ports import KeyBackend
from otward.errors import ConfigError, IntegrityError, PolicyViolationError
from otward.services.access import AccessAdmin
from otward.services.accounts import AccountService
from otward.services.approvals import ApprovalService, approval_executors
from otward.services.audit import SYSTEM_ACTOR, Actor, AuditLog
from otward.services.authorities import AuthorityService
from otward.services.console_sessions import ConsoleSessions
from otward.services.devices import Devices
from otward.services.edge import EdgeService
from otward.services.enrollment import EnrollmentTokens, Owners
from otward.services.est import EstService
from otward.services.expiry import ExpiryWatch
from otward.services.issuance import IssuanceService, IssuedCertificate
from otward.services.ocsp import OcspResponder
from otward.services.provisioning import Provisioning
from otward.services.revocation import RevocationService
from otward.services.signers import AUDIT_SIGNER, SIGNER_CA, SignerService
from otward.services.tokens import TokenService
from otward.services.transparency import TransparencyLog
from otward.services.zerotouch import ZeroTouch

__all__ = [
    "ROOT_CERTIFICATE_FILE",
    "IssuedCertificate",
    "Pki",
    "load_trust_anchors",
    "open_key_backend",
    "random_serial_number",
    "upgrade_database",
    "utc_now",
]

ROOT_CERTIFICATE_FILE = "root.pem"  # written by init; the audit trail's trust anchor

log = logging.getLogger("otward")


def utc_now() -> datetime:
    return datetime.now(UTC)


def load_trust_anchors(path: Path) -> list[x509.Certificate]:
    """Root certificates from a PEM file outside the database: what audit head signers must chain
    to (someone who can write the database can also write CA rows there)."""
    try:
        anchors = x509.load_pem_x509_certificates(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(
            f"no trust anchor for the audit trail: {path} is missing (give one with --trust ROOT.pem)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(f"{path} holds no PEM certificate") from exc
    return anchors


def _readable_certificates(ders: Iterable[bytes]) -> list[x509.Certificate]:
    """The CA certificates that parse: for the audit verifier, which trusts none of them by itself."""
    certificates = []
    for der in ders:
        try:
            certificates.append(x509.load_der_x509_certificate(der))
        except ValueError:
            continue
    return certificates


def open_key_backend(settings: Settings) -> RoutingKeyBackend:
    """The configured key backend for new keys; existing keys are loaded where their reference points
    (``file:`` keys need the CA passphrase, ``pkcs11:`` keys the token). Nothing is opened yet: a
    token is logged in on first use, or by :meth:`Pki.check_keys`."""
    files = FileKeyBackend(settings.data_dir, lambda: read_passphrase(settings.data_dir))
    backends: dict[str, KeyBackend] = {"file": files}
    keys = settings.keys
    if keys.backend == "pkcs11":
        if keys.pkcs11_module is None or keys.pkcs11_token is None:
            raise ConfigError("keys.pkcs11_module and keys.pkcs11_token are required", rule="pkcs11")
        pin_file = keys.pkcs11_pin_file
        backends["pkcs11"] = Pkcs11KeyBackend(
            keys.pkcs11_module, keys.pkcs11_token, lambda: resolve_pin(pin_file)
        )
    return RoutingKeyBackend(keys.backend, backends)


def upgrade_database(settings: Settings) -> SchemaChange:
    """``otward db upgrade``: create or upgrade the configured database's schema to this version's."""
    engine = create_database_engine(settings.database_url)
    try:
        return upgrade_schema(engine)
    finally:
        engine.dispose()


def random_serial_number() -> int:
    """159 random bits (positive, at most 20 octets), redrawn in the rare case of fewer than 64."""
    while True:
        serial = x509.random_serial_number()
        if serial.bit_length() >= 64:
            return serial


class Pki:
    """Entry point for the CLI and the HTTP API; one per process."""

    def __init__(
        self,
        settings: Settings,
        stores: SqlStores,
        keys: KeyBackend,
        *,
        clock: Callable[[], datetime] = utc_now,
        new_serial: Callable[[], int] = random_serial_number,
    ) -> None:
        self.settings = settings
        self.stores = stores
        self.keys = keys
        self._files = keys.backend("file") if isinstance(keys, RoutingKeyBackend) else None
        if isinstance(self._files, FileKeyBackend):
            # Key files one node creates reach every node on this database (docs/deploy.md).
            self._files.share_through(stores.shared_files)
        self.clock = clock
        audit = settings.audit
        self.audit = AuditLog(
            stores.audit,
            host=socket.gethostname(),
            clock=clock,
            signer=lambda: self.signers.get(AUDIT_SIGNER),
            signer_certificate=lambda serial: self.signers.certificate(serial),
            ca_certificates=lambda: [
                *_readable_certificates(
                    der for a in self.authorities.list() for der in (a.certificate_der, *a.external_chain)
                ),
                *self.authorities.link_certificates(),  # a root rollover's: old anchors reach new chains
            ],
            trust_anchors=lambda: load_trust_anchors(settings.data_dir / ROOT_CERTIFICATE_FILE),
            witness=FileHeadWitness(settings.data_dir / WITNESS_FILE),
            schedule=HeadSchedule(
                events=audit.sign_events, seconds=audit.sign_seconds, heartbeat=audit.heartbeat_seconds
            ),
            max_unsigned=timedelta(seconds=audit.max_unsigned_seconds),
        )
        self.authorities = AuthorityService(
            stores.authorities,
            keys,
            public_url=settings.public_url,
            clock=clock,
            new_serial=new_serial,
            audit=self.audit,
            certificates=stores.certificates,
        )
        self.issuance = IssuanceService(
            stores.certificates,
            self.authorities,
            settings.resolved_profiles(),
            clock=clock,
            new_serial=new_serial,
            audit=self.audit,
            owners=stores.owners,
        )
        self.revocation = RevocationService(
            stores.certificates,
            stores.crls,
            self.authorities,
            settings.crl,
            clock=clock,
            audit=self.audit,
            journal=FileRevocationJournal(settings.revocation_journal_path),
        )
        self.signers = SignerService(
            stores.signers,
            stores.certificates,
            keys,
            self.authorities,
            clock=clock,
            new_serial=new_serial,
            audit=self.audit,
            revocation=self.revocation,
        )
        self.ocsp = OcspResponder(stores.certificates, self.authorities, settings.ocsp, clock=clock)
        self.tokens = TokenService(stores.tokens, clock=clock, audit=self.audit, accounts=stores.accounts)
        self.accounts = AccountService(stores.accounts, clock=clock, audit=self.audit)
        self.console_sessions = ConsoleSessions(
            stores.console_sessions,
            stores.accounts,
            clock=clock,
            audit=self.audit,
            timeouts=SessionTimeouts(idle=settings.console.idle, absolute=settings.console.absolute),
        )
        self.approvals = ApprovalService(
            stores.approvals,
            settings=settings.approvals,
            clock=clock,
            audit=self.audit,
            admin_count=self.accounts.admin_capable,
            executors=approval_executors(self),
        )
        self.transparency = TransparencyLog(stores.transparency, self.signers, clock=clock)
        self.expiry = ExpiryWatch(
            stores.certificates, stores.audit, self.audit, clock=clock, authorities=stores.authorities
        )
        self.owners = Owners(stores.owners, self.authorities, clock=clock, audit=self.audit)
        self.enrollment_tokens = EnrollmentTokens(
            stores.enrollment_tokens, self.owners, self.issuance.profile, clock=clock, audit=self.audit
        )
        self.devices = Devices(
            stores.devices,
            self.owners,
            self.enrollment_tokens,
            self.revocation,
            clock=clock,
            audit=self.audit,
            superseded_overlap=settings.devices.superseded_overlap,
        )
        self.est = EstService(
            stores.certificates,
            stores.devices,
            self.authorities,
            self.issuance,
            self.owners,
            self.enrollment_tokens,
            clock=clock,
            audit=self.audit,
        )
        self.provisioning = Provisioning(
            stores.devices, self.issuance, self.owners, clock=clock, audit=self.audit
        )
        self.zerotouch = ZeroTouch(
            stores.manufacturers,
            self.authorities,
            self.owners,
            self.issuance,
            self.est,
            clock=clock,
            audit=self.audit,
            fetch=fetch_crl,
        )
        self.access = AccessAdmin(stores.access, clock=clock, audit=self.audit)
        self.edge = EdgeService(
            stores.edge,
            self.signers,
            self.authorities,
            self.access.asset_slice,
            clock=clock,
            audit=self.audit,
            person_exists=lambda person: self.access.model().person(person) is not None,
        )
        self._audit_sequence_at_open = stores.audit.audit_head()[0]

    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        migrate: bool = False,
        clock: Callable[[], datetime] = utc_now,
        new_serial: Callable[[], int] = random_serial_number,
    ) -> Pki:
        """Connect to the configured database. Its schema must be current unless ``migrate`` (init
        and serve only): any other command leaves an empty or older database untouched and says to
        run ``otward db upgrade``."""
        engine = create_database_engine(settings.database_url)
        try:
            if migrate:
                change = upgrade_schema(engine)
                if change.before != change.after:
                    log.info("database schema upgraded from %s to %s", change.before or "empty", change.after)
            else:
                check_schema(engine)
        except BaseException:
            engine.dispose()
            raise
        keys = open_key_backend(settings)
        return cls(settings, SqlStores.open(engine), keys, clock=clock, new_serial=new_serial)

    def check_keys(self) -> None:
        """Load every CA's, responder's and signer's key now, so that a missing token, a wrong PIN or a
        key that is not there stops ``otward serve`` at start instead of failing its first signature."""
        self.check_ready()
        for record in self.authorities.list():
            self.authorities.get(record.name)
        self.signers.check_keys()

    def forget_destroyed_keys(self) -> list[str]:
        """Delete this node's copies of key files that another node destroyed (a rotated signer's)."""
        if isinstance(self._files, FileKeyBackend):
            return self._files.forget_destroyed()
        return []

    def check_ready(self) -> None:
        """Refuse to serve while the issuing CA waits for its certificate (``init --external-root``):
        the error says which command completes the installation."""
        if self.authorities.is_pending(SIGNER_CA):
            self.authorities.record(SIGNER_CA)  # raises PolicyViolationError naming ca import-cert

    def record_aggregates(self, actor: Actor = SYSTEM_ACTOR) -> None:
        """Write the aggregated events since the last call: ``ocsp.signed`` per CA (as ``actor``) and
        repeated ``auth.failed`` per source."""
        self.audit.flush_failures()
        counts = self.ocsp.drain_signature_counts()
        if counts:
            self.audit.record(
                *(
                    self.audit.event(actor, EventType.OCSP_SIGNED, ca, details={"responses": str(n)})
                    for ca, n in sorted(counts.items())
                )
            )

    def close(self) -> None:
        """Sign the audit chain head if this process added to it, then release the database."""
        try:
            self.record_aggregates()
            if self.stores.audit.audit_head()[0] != self._audit_sequence_at_open:
                if self.authorities.is_pending(SIGNER_CA):
                    # no signer before the issuing CA has its certificate: its import signs the head
                    log.info("audit head not signed yet: CA '%s' waits for its certificate", SIGNER_CA)
                    return
                self.audit.sign_head()
        except PolicyViolationError as exc:
            if exc.rule != "signer-revoked":
                raise
            # what the command did is stored; only its head stays unsigned until the signer is rotated
            log.warning("audit head not signed: %s", exc.message)
        except IntegrityError as exc:
            # What the command did is stored. The trail no longer extends what was signed before:
            # signing would bless that, so the tail stays unsigned and 'audit verify' fails on it.
            log.error("%s", exc.message)
        finally:
            try:
                self.stores.close()
            finally:
                close = getattr(self.keys, "close", None)
                if close is not None:
                    close()
