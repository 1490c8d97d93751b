"""The central side of the edge gatekeeper: signed policy bundles, access credentials, pushed trails.

A bundle is what one asset needs to decide alone (its access slice, the revoked
credentials of the people in it, fail modes), signed by the edge signer with a
version per asset that is taken from the database and never reused. Gatekeepers
poll :meth:`EdgeService.bundle_after`: when the slice or the revocations changed
(a person disabled, a grant added, a credential revoked), or the newest bundle is
past half its lifetime, a new version is issued on the spot, so a change made
in the admin reaches an online gatekeeper within one poll interval.
"""

from __future__ import annotations

import base64
import dataclasses
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)

from otward.core.access.decision import AccessSlice
from otward.core.audit import AuditEvent, AuditRecord, EventType, Outcome
from otward.core.edge.formats import (
    BundleClaims,
    CredentialClaims,
    certificate_thumbprint,
    jwk_thumbprint,
    validate_identifier,
)
from otward.core.edge.records import (
    AssetBundleSettings,
    AssetSyncStatus,
    BundleRecord,
    CredentialRecord,
    EdgeTokenRecord,
    TrailPush,
)
from otward.edge.tokens import bundle_signer_thumbprint, holder_jwk, sign_bundle, sign_credential
from otward.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    ParseError,
    PolicyViolationError,
)
from otward.services.audit import SYSTEM_ACTOR, Actor, AuditLog
from otward.services.authorities import AuthorityService
from otward.services.bearer import BearerFormat, secret_matches
from otward.services.signers import EDGE_SIGNER, SIGNER_CA, SignerService

if TYPE_CHECKING:
    from otward.adapters.db.edge_store import EdgeStore

__all__ = [
    "DEFAULT_BUNDLE_TTL",
    "MAX_CREDENTIAL_TTL",
    "EdgeService",
    "IssuedCredential",
    "load_holder_public_key",
]

# ``otwg``: gatekeeper. Not ``otwe``, which enrollment tokens carry: one prefix, one kind.
_TOKEN = BearerFormat("otwg")


DEFAULT_BUNDLE_TTL = timedelta(days=7)
MAX_BUNDLE_TTL = timedelta(days=90)
MAX_CREDENTIAL_TTL = timedelta(days=400)


@dataclass(frozen=True)
class IssuedCredential:
    record: CredentialRecord
    token: str


def load_holder_public_key(data: bytes) -> CertificatePublicKeyTypes:
    """A holder's public key from PEM (SubjectPublicKeyInfo) or DER; ParseError if it is neither."""
    loaders = (serialization.load_pem_public_key, serialization.load_der_public_key)
    for loader in loaders:
        try:
            key = loader(data)
        except (ValueError, TypeError):
            continue
        return key  # type: ignore[return-value]
    raise ParseError("the holder's public key is not a PEM or DER SubjectPublicKeyInfo", rule="public-key")


def _people(access_slice: AccessSlice) -> set[str]:
    """Every entity id in the slice: a superset of its people (whatever the entity type is called), so
    no revoked credential of someone the asset knows can be left out of its bundle."""
    ids = set()
    for entity in access_slice.entities:
        uid = entity.get("uid")
        if isinstance(uid, Mapping) and uid.get("id") is not None:
            ids.add(str(uid["id"]))
    return ids


class EdgeService:
    def __init__(
        self,
        store: EdgeStore,
        signers: SignerService,
        authorities: AuthorityService,
        access_slice: Callable[[str], AccessSlice],
        *,
        clock: Callable[[], datetime],
        audit: AuditLog,
        person_exists: Callable[[str], bool] | None = None,
    ) -> None:
        self.store = store
        self._signers = signers
        self._authorities = authorities
        self._access_slice = access_slice
        self._person_exists = person_exists
        self._clock = clock
        self._audit = audit

    def signer(self) -> tuple[CertificateIssuerPrivateKeyTypes, list[x509.Certificate]]:
        """The edge signer's key and its chain (signer first, root last), created on first use."""
        key, certificate = self._signers.get(EDGE_SIGNER)
        return key, [certificate, *self._authorities.chain_of(certificate, SIGNER_CA)]

    # --- bundles --------------------------------------------------------------------------------

    def _claims(
        self,
        asset: str,
        version: int,
        now: datetime,
        ttl: timedelta,
        fail_open: Sequence[str],
        signer: x509.Certificate,
    ) -> BundleClaims:
        """What a bundle of ``asset`` signed by ``signer`` says now."""
        access_slice = self._access_slice(asset)
        unknown = sorted(set(fail_open) - set(access_slice.functions))
        if unknown:
            raise InvalidRequestError(
                f"asset '{asset}' has no function {', '.join(repr(f) for f in unknown)} to fail open",
                rule="fail-open",
            )
        now = now.replace(microsecond=0)
        earlier = self._signers.edge_signers(signer)
        return BundleClaims(
            asset=asset,
            version=version,
            issued_at=now,
            expires_at=now + ttl,
            slice=access_slice.to_dict(),
            revoked=frozenset(self.store.revoked_credentials(_people(access_slice), now)),
            fail_open=frozenset(fail_open),
            signers=tuple(
                base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
                for c in earlier.previous
            ),
            revoked_signers=frozenset(certificate_thumbprint(c) for c in earlier.revoked),
        )

    def issue_bundle(
        self,
        asset: str,
        *,
        ttl: timedelta = DEFAULT_BUNDLE_TTL,
        fail_open: Sequence[str] = (),
        actor: Actor = SYSTEM_ACTOR,
    ) -> BundleRecord:
        """Sign a new bundle for ``asset`` with the next version; its ttl and fail modes become the
        asset's settings for the bundles issued on later polls."""
        validate_identifier(asset, "asset")
        if not timedelta(minutes=1) <= ttl <= MAX_BUNDLE_TTL:
            raise InvalidRequestError("bundle ttl must be between 1m and 90d", rule="bundle-ttl")
        key, chain = self.signer()
        # an unknown asset or function is refused here
        base = self._claims(asset, 1, self._clock(), ttl, fail_open, chain[0])

        def sign(version: int) -> BundleRecord:
            claims = dataclasses.replace(base, version=version)
            return BundleRecord(
                asset=asset,
                version=version,
                issued_at=claims.issued_at,
                expires_at=claims.expires_at,
                content_hash=claims.content_hash(),
                token=sign_bundle(claims, key, chain),
            )

        def events(record: BundleRecord) -> list[AuditEvent]:
            details = {
                "version": str(record.version),
                "expires_at": f"{record.expires_at:%Y-%m-%dT%H:%M:%SZ}",
                "fail_open": ",".join(sorted(fail_open)),
                "revoked": str(len(base.revoked)),
            }
            return [self._audit.event(actor, EventType.ACCESS_BUNDLE_ISSUED, asset, details=details)]

        return self.store.issue_bundle(
            asset,
            ttl_seconds=int(ttl.total_seconds()),
            fail_open=fail_open,
            now=base.issued_at,
            sign=sign,
            events=events,
        )

    def bundle_after(self, asset: str, version: int, actor: Actor = SYSTEM_ACTOR) -> BundleRecord | None:
        """The newest bundle if it is newer than ``version``, else None. A new one is issued first when
        the asset's slice or revocations changed, or the newest is past half its lifetime."""
        validate_identifier(asset, "asset")
        settings = self.store.asset_settings(asset)
        latest = self.store.latest_bundle(asset)
        if settings is None or latest is None:
            raise NotFoundError(
                f"no bundle was ever issued for asset '{asset}' (run 'otward access bundle' first)",
                rule="edge-asset",
            )
        self.store.record_poll(asset, version, self._clock())
        if self._stale(settings, latest):
            latest = self.issue_bundle(
                asset,
                ttl=timedelta(seconds=settings.ttl_seconds),
                fail_open=settings.fail_open,
                actor=actor,
            )
        return latest if latest.version > version else None

    def _stale(self, settings: AssetBundleSettings, latest: BundleRecord) -> bool:
        now = self._clock()
        ttl = timedelta(seconds=settings.ttl_seconds or int(DEFAULT_BUNDLE_TTL.total_seconds()))
        if latest.expires_at - now < ttl / 2:
            return True
        _, chain = self.signer()
        if bundle_signer_thumbprint(latest.token) != certificate_thumbprint(chain[0]):
            return True  # the edge signer was rotated since
        current = self._claims(settings.asset, latest.version, now, ttl, settings.fail_open, chain[0])
        return current.content_hash() != latest.content_hash

    # --- credentials ----------------------------------------------------------------------------

    def issue_credential(
        self,
        person: str,
        public_key: CertificatePublicKeyTypes,
        *,
        ttl: timedelta,
        actor: Actor = SYSTEM_ACTOR,
    ) -> IssuedCredential:
        """A credential binding ``public_key`` (the holder's; weak keys refused) to ``person`` for ``ttl``."""
        validate_identifier(person, "person")
        if not timedelta(minutes=1) <= ttl <= MAX_CREDENTIAL_TTL:
            raise InvalidRequestError("credential ttl must be between 1m and 400d", rule="credential-ttl")
        if self._person_exists is not None and not self._person_exists(person):
            raise NotFoundError(f"person '{person}' not found", rule="access-person")
        jwk = holder_jwk(public_key)
        now = self._clock().replace(microsecond=0)
        claims = CredentialClaims(
            credential_id=secrets.token_hex(16),
            person=person,
            issued_at=now,
            not_before=now,
            expires_at=now + ttl,
            holder_jwk=jwk,
        )
        key, chain = self.signer()
        token = sign_credential(claims, key, chain)
        record = CredentialRecord(
            credential_id=claims.credential_id,
            person=person,
            key_thumbprint=jwk_thumbprint(jwk),
            issued_at=claims.issued_at,
            expires_at=claims.expires_at,
        )
        details = {
            "person": person,
            "expires_at": f"{record.expires_at:%Y-%m-%dT%H:%M:%SZ}",
            "key_thumbprint": record.key_thumbprint,
        }
        event = self._audit.event(
            actor, EventType.ACCESS_CREDENTIAL_ISSUED, f"credential:{record.credential_id}", details=details
        )
        self.store.add_credential(record, [event])
        return IssuedCredential(record, token)

    def revoke_credential(self, credential_id: str, actor: Actor = SYSTEM_ACTOR) -> CredentialRecord:
        """Revoke for good; the id goes into the next bundle of every asset the person may use."""
        existing = self.store.get_credential(credential_id)
        if existing is None:
            raise NotFoundError(f"credential {credential_id} not found", rule="credential")
        event = self._audit.event(
            actor,
            EventType.ACCESS_CREDENTIAL_REVOKED,
            f"credential:{credential_id}",
            details={"person": existing.person},
        )
        return self.store.revoke_credential(credential_id, self._clock(), [event])

    def credentials(self, person: str | None = None) -> list[CredentialRecord]:
        return self.store.list_credentials(person)

    # --- sync tokens ---------------------------------------------------------------------------

    def create_token(self, asset: str, actor: Actor = SYSTEM_ACTOR) -> tuple[EdgeTokenRecord, str]:
        """A token for one gatekeeper: it may fetch ``asset``'s bundles and push its trail, nothing else.
        Returned with its text, which is shown once; only its SHA-256 is stored."""
        validate_identifier(asset, "asset")
        token = _TOKEN.new()
        record = EdgeTokenRecord(
            token_id=token.token_id, asset=asset, secret_hash=token.secret_hash, created_at=self._clock()
        )
        event = self._audit.event(
            actor, EventType.TOKEN_CREATED, f"edge-token:{token.token_id}", details={"asset": asset}
        )
        self.store.add_token(record, [event])
        return record, token.text

    def tokens(self) -> list[EdgeTokenRecord]:
        return self.store.list_tokens()

    def revoke_token(self, token_id: str, actor: Actor = SYSTEM_ACTOR) -> EdgeTokenRecord:
        event = self._audit.event(actor, EventType.TOKEN_REVOKED, f"edge-token:{token_id}")
        return self.store.revoke_token(token_id, self._clock(), [event])

    @staticmethod
    def is_edge_token(text: str) -> bool:
        return _TOKEN.looks_like(text)

    def authenticate(self, text: str, asset: str, actor: Actor) -> EdgeTokenRecord:
        """The edge token for ``text`` if it is valid and bound to ``asset``; AuthenticationError
        (recorded as ``auth.failed``) otherwise. Compared in constant time."""
        parsed = _TOKEN.parse(text)
        record = self.store.get_token(parsed[0]) if parsed else None
        valid = secret_matches(record.secret_hash if record else None, parsed[1] if parsed else None)
        if (
            parsed is None
            or record is None
            or not valid
            or record.revoked_at is not None
            or record.asset != asset
        ):
            subject = f"edge-token:{parsed[0]}" if parsed else "(malformed token)"
            reason = (
                "malformed edge token"
                if parsed is None
                else "edge token not valid for this asset"
                if record is not None and valid and record.revoked_at is None
                else "invalid or revoked edge token"
            )
            failure = self._audit.event(
                actor,
                EventType.AUTH_FAILED,
                subject,
                outcome=Outcome.FAILURE,
                reason=reason,
                details={"asset": asset},
            )
            self._audit.record_failure(failure)  # aggregated per source (docs/audit.md)
            raise AuthenticationError(reason, rule="edge-token")
        return record

    # --- trails ---------------------------------------------------------------------------------

    def push_trail(
        self, asset: str, records: Sequence[AuditRecord], actor: Actor = SYSTEM_ACTOR
    ) -> TrailPush:
        """Store an asset's trail records, exactly once each, in chain order (see EdgeStore.append_trail)."""
        validate_identifier(asset, "asset")
        if len(records) > 5000:
            raise PolicyViolationError("at most 5000 records per push", rule="trail-batch")
        push = self.store.append_trail(asset, records, self._clock())
        if push.problem is not None and push.problem.startswith("record"):
            # A record that contradicts what the asset sent before: its trail was edited or forked.
            self._audit.record(
                self._audit.event(
                    actor,
                    EventType.INTEGRITY_FAILED,
                    f"edge-trail:{asset}",
                    outcome=Outcome.FAILURE,
                    reason=push.problem,
                )
            )
        return push

    def sync_status(self, *, limit: int = 100, offset: int = 0) -> tuple[list[AssetSyncStatus], int]:
        """Each asset's newest bundle version and its gatekeeper's last trail push, paged by asset id."""
        return self.store.sync_status(limit=limit, offset=offset)

    def trail(self, asset: str, *, after: int = 0, limit: int = 1000) -> list[AuditRecord]:
        return self.store.trail(asset, after=after, limit=limit)
