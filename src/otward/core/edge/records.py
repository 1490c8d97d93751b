"""What the central side stores about edge bundles, credentials and asset trails."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "AssetBundleSettings",
    "AssetSyncStatus",
    "BundleRecord",
    "CredentialRecord",
    "EdgeTokenRecord",
    "TrailPush",
]


@dataclass(frozen=True)
class CredentialRecord:
    """An access credential issued to a person; only its id, holder key thumbprint and status are kept."""

    credential_id: str
    person: str
    key_thumbprint: str
    issued_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None

    def status(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if now >= self.expires_at else "valid"


@dataclass(frozen=True)
class AssetBundleSettings:
    """How an asset's bundles are made: lifetime and fail-open functions (set by the last CLI issue)."""

    asset: str
    last_version: int
    ttl_seconds: int
    fail_open: tuple[str, ...]


@dataclass(frozen=True)
class BundleRecord:
    """A signed bundle as handed out; versions per asset are never reused."""

    asset: str
    version: int
    issued_at: datetime
    expires_at: datetime
    content_hash: bytes
    token: str


@dataclass(frozen=True)
class TrailPush:
    """The outcome of a trail push: the highest sequence stored for the asset, how many records were new,
    and why the push stopped early, if it did (a gap or a record that contradicts the stored one)."""

    acknowledged: int
    stored: int
    problem: str | None = None


@dataclass(frozen=True)
class EdgeTokenRecord:
    """A gatekeeper's sync token: good for one asset's bundle and trail endpoints only."""

    token_id: str
    asset: str
    secret_hash: bytes
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class AssetSyncStatus:
    """Where an asset's gatekeeper stands: the newest bundle issued for it, its last poll with the
    version it held then, and the last trail it pushed.

    ``last_trail_at`` is when the newest pushed trail record arrived, ``last_poll_at`` when it last
    asked for a bundle (None: never); ``held_version`` is the version it said it held on that poll
    (0: none yet), so a gatekeeper behind the newest version shows.
    """

    asset: str
    bundle_version: int
    bundle_issued_at: datetime | None
    bundle_expires_at: datetime | None
    trail_sequence: int
    last_trail_at: datetime | None
    last_poll_at: datetime | None = None
    held_version: int | None = None

    @property
    def is_behind(self) -> bool:
        """True when its last poll said it held an older version than the newest issued."""
        return self.held_version is not None and self.held_version < self.bundle_version
