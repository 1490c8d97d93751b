"""Tables of the edge gatekeeper's central side (migration 0006), on the shared ``metadata``."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, String, Table, Text

from otward.adapters.db.schema import UtcDateTime, metadata

__all__ = ["edge_assets", "edge_bundles", "edge_credentials", "edge_tokens", "edge_trail"]

edge_assets = Table(
    "edge_assets",
    metadata,
    Column("asset", String(128), primary_key=True),
    # The last bundle version handed out; only ever incremented in place (UPDATE ... RETURNING).
    Column("last_version", BigInteger, nullable=False),
    Column("ttl_seconds", Integer, nullable=False),
    Column("fail_open", Text, nullable=False),  # JSON list of functions
    # The head of the asset's trail as received: pushes must continue it.
    Column("trail_sequence", BigInteger, nullable=False),
    Column("trail_hash", LargeBinary(32), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # The gatekeeper's last poll for a bundle and the version it said it held (written at most once
    # a minute unless that version changes): where it stands, for the console's Gatekeepers page.
    Column("polled_at", UtcDateTime, nullable=True),
    Column("held_version", BigInteger, nullable=True),
)

edge_bundles = Table(
    "edge_bundles",
    metadata,
    Column("asset", String(128), primary_key=True),
    Column("version", BigInteger, primary_key=True),
    Column("issued_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("content_hash", LargeBinary(32), nullable=False),
    Column("token", Text, nullable=False),
)

edge_credentials = Table(
    "edge_credentials",
    metadata,
    Column("credential_id", String(32), primary_key=True),
    Column("person", String(128), nullable=False),
    Column("key_thumbprint", String(64), nullable=False),  # RFC 7638 SHA-256 thumbprint of the holder key
    Column("issued_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
)
Index("ix_edge_credentials_person", edge_credentials.c.person)
Index("ix_edge_credentials_revoked_at", edge_credentials.c.revoked_at)

edge_trail = Table(
    "edge_trail",
    metadata,
    Column("asset", String(128), primary_key=True),
    Column("sequence", BigInteger, primary_key=True),
    Column("previous_hash", LargeBinary(32), nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    Column("event", Text, nullable=False),  # the event's canonical JSON, as chained
    Column("received_at", UtcDateTime, nullable=False),
)

edge_tokens = Table(
    "edge_tokens",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("asset", String(128), nullable=False),  # the one asset whose bundles and trail it may sync
    Column("secret_hash", LargeBinary(32), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
)
