"""Table definitions. Changes go through an Alembic migration in ``migrations/versions``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)

__all__ = [
    "UnreadableTime",
    "UtcDateTime",
    "accounts",
    "api_tokens",
    "approval_requests",
    "audit_events",
    "audit_heads",
    "authorities",
    "certificates",
    "console_sessions",
    "crls",
    "device_challenges",
    "devices",
    "enrollment_tokens",
    "forward_cursors",
    "ledger_state",
    "log_entries",
    "log_heads",
    "metadata",
    "notify_conditions",
    "notify_outbox",
    "owners",
    "pending_authorities",
    "shared_files",
    "signers",
    "subject_names",
]


class UnreadableTime(str):
    """What a time column holds that is not a time (SQLite stores text): handed to the reader as it
    is, so that the reader can name the row (an audit record becomes an IntegrityError naming its
    sequence) instead of the whole query failing."""


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        convert = super().result_processor(dialect, coltype)
        if convert is None:
            return None

        def tolerant(value: Any) -> Any:
            try:
                return convert(value)
            except ValueError:
                return UnreadableTime(value)

        return tolerant

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; otward stores UTC-aware times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)  # noqa: S101 - the column type guarantees it
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

authorities = Table(
    "authorities",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("parent", String(64), ForeignKey("authorities.name"), nullable=True),
    Column("certificate_der", LargeBinary, nullable=False),
    Column("key_ref", String(512), nullable=False),
    Column("ocsp_certificate_der", LargeBinary, nullable=False),
    Column("ocsp_key_ref", String(512), nullable=False),
    Column("crl_number", BigInteger, nullable=False, default=0),
    Column("created_at", UtcDateTime, nullable=False),
    # The issuers above a CA signed outside otward (an offline or company root), PEM, nearest first.
    Column("external_chain_pem", Text, nullable=True),
    # Set by a rollover: the CA of the next generation, which issues from then on.
    Column("superseded_by", String(64), nullable=True),
)

# A CA whose key exists but whose certificate is being signed outside (``ca create --external-parent``).
pending_authorities = Table(
    "pending_authorities",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("key_ref", String(512), nullable=False),
    Column("csr_der", LargeBinary, nullable=False),
    Column("path_length", Integer, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
)

certificates = Table(
    "certificates",
    metadata,
    Column("serial", String(42), primary_key=True),  # lower-case hex, see records.format_serial
    Column("ca", String(64), ForeignKey("authorities.name"), nullable=False),
    Column("profile", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("subject", String(1024), nullable=False),
    Column("not_valid_before", UtcDateTime, nullable=False),
    Column("not_valid_after", UtcDateTime, nullable=False),
    Column("der", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("revocation_reason", String(32), nullable=True),
    Column("device_id", String(64), nullable=True),  # set for certificates of registered devices
    Index("ix_certificates_ca_revoked_at", "ca", "revoked_at"),
    # Only the revoked rows: the once-a-second CRL check counts them per CA (crls.stale_crls) in an
    # index-only scan instead of reading the whole table (70 ms -> 4 ms at 100k certificates).
    Index(
        "ix_certificates_revoked",
        "ca",
        postgresql_where=text("revoked_at IS NOT NULL"),
        sqlite_where=text("revoked_at IS NOT NULL"),
    ),
    Index("ix_certificates_device_id", "device_id"),
    Index("ix_certificates_not_valid_after", "not_valid_after"),
    Index("ix_certificates_created_at", "created_at"),
)

# The CN of every client certificate belongs to one namespace (device or client) for good: see
# otward.core.identity. The name is stored case-folded, the first certificate that claimed it kept.
subject_names = Table(
    "subject_names",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("namespace", String(16), nullable=False),
    Column("first_serial", String(42), nullable=False),
    Column("claimed_at", UtcDateTime, nullable=False),
)

crls = Table(
    "crls",
    metadata,
    Column("ca", String(64), ForeignKey("authorities.name"), primary_key=True),
    Column("crl_number", BigInteger, nullable=False),
    Column("this_update", UtcDateTime, nullable=False),
    Column("next_update", UtcDateTime, nullable=False),
    Column("der", LargeBinary, nullable=False),
    # revoked certificates of the CA this CRL lists: fewer than are stored means it is behind
    Column("revoked_count", BigInteger, nullable=True),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("secret_hash", LargeBinary(32), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("scope", String(32), nullable=False, server_default="admin"),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("account", String(64), nullable=False, server_default="admin"),
)

accounts = Table(
    "accounts",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("grants", String(1024), nullable=False),  # "pki-officer,enrollment-officer:line-2"
    Column("created_at", UtcDateTime, nullable=False),
    Column("password_hash", String(256), nullable=True),  # Argon2id PHC string; None: a service
    Column("totp_secret", LargeBinary(64), nullable=True),
    Column("totp_last_step", BigInteger, nullable=True),
    Column("disabled_at", UtcDateTime, nullable=True),
    Column("failed_signins", Integer, nullable=False, server_default="0"),
    Column("locked_until", UtcDateTime, nullable=True),
)

approval_requests = Table(
    "approval_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("operation", String(64), nullable=False),
    Column("parameters", Text, nullable=False),  # JSON, never a secret
    Column("requester", String(128), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("state", String(16), nullable=False),
    Column("decided_by", String(128), nullable=True),
    Column("decided_at", UtcDateTime, nullable=True),
    Column("reason", String(1024), nullable=True),
)

console_sessions = Table(
    "console_sessions",
    metadata,
    Column("session_id", String(32), primary_key=True),
    Column("account", String(64), nullable=False, index=True),
    Column("secret_hash", LargeBinary(32), nullable=False),  # SHA-256 of the cookie's secret
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("credentials_stamp", LargeBinary(32), nullable=False),  # the password and TOTP at sign-in
    Column("ended_at", UtcDateTime, nullable=True),
    Column("source", String(64), nullable=True),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("sequence", BigInteger, primary_key=True, autoincrement=False),
    Column("time", UtcDateTime, nullable=False),
    Column("host", String(255), nullable=False),
    Column("component", String(32), nullable=False),
    Column("type", String(64), nullable=False),
    Column("subject", String(512), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("reason", String(1024), nullable=True),
    Column("source", String(255), nullable=True),
    Column("request_id", String(64), nullable=True),
    Column("details", Text, nullable=False),
    Column("previous_hash", LargeBinary(32), nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    Index("ix_audit_events_time", "time"),
    Index("ix_audit_events_type", "type"),
    Index("ix_audit_events_subject", "subject"),
)

ledger_state = Table(
    "ledger_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("audit_sequence", BigInteger, nullable=False),
    Column("audit_hash", LargeBinary(32), nullable=False),
    Column("log_size", BigInteger, nullable=False),
)

forward_cursors = Table(
    "forward_cursors",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("sequence", BigInteger, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

audit_heads = Table(
    "audit_heads",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sequence", BigInteger, nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    Column("signed_at", UtcDateTime, nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("signer_serial", String(42), nullable=False),
)

signers = Table(
    "signers",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("key_ref", String(512), nullable=False),
    Column("serial", String(42), ForeignKey("certificates.serial"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

# Encrypted key files and the service's TLS identity, shared by every node on this database
# (otward.adapters.db.shared_files); ``data`` is cleared when the key is destroyed.
shared_files = Table(
    "shared_files",
    metadata,
    Column("name", String(512), primary_key=True),
    Column("data", LargeBinary, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("destroyed_at", UtcDateTime, nullable=True),
)

log_entries = Table(
    "log_entries",
    metadata,
    Column("leaf_index", BigInteger, primary_key=True, autoincrement=False),
    Column("serial", String(42), ForeignKey("certificates.serial"), nullable=False, unique=True),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("logged_at", UtcDateTime, nullable=False),
)

log_heads = Table(
    "log_heads",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("timestamp", UtcDateTime, nullable=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("signer_serial", String(42), nullable=False),
)

owners = Table(
    "owners",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("ca", String(64), ForeignKey("authorities.name"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("allow_server_keygen", Boolean, nullable=False, server_default=false()),
    Column("renewal_grace_days", Integer, nullable=False, server_default="0"),
)

enrollment_tokens = Table(
    "enrollment_tokens",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("owner", String(64), ForeignKey("owners.name"), nullable=False),
    Column("secret_hash", LargeBinary(32), nullable=False),
    Column("profile", String(64), nullable=False),
    Column("device_id_pattern", String(128), nullable=False),
    Column("uses_allowed", Integer, nullable=False),
    Column("uses", Integer, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("kind", String(16), nullable=False, server_default="enrollment"),
    Index("ix_enrollment_tokens_owner", "owner"),
)

devices = Table(
    "devices",
    metadata,
    Column("device_id", String(64), primary_key=True),
    Column("owner", String(64), ForeignKey("owners.name"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("profile", String(64), nullable=False),
    Column("current_serial", String(42), nullable=True),
    Column("enrollment_token_id", String(32), nullable=True),
    Column("first_seen", UtcDateTime, nullable=False),
    Column("last_seen", UtcDateTime, nullable=False),
    Column("last_attested_at", UtcDateTime, nullable=True),
    Column("superseded_serial", String(42), nullable=True),  # see DeviceRecord
    Column("superseded_at", UtcDateTime, nullable=True),
    # spki_pin of the key the request that enrolled the current certificate by token was signed with
    Column("enrollment_key_pin", String(64), nullable=True),
    Index("ix_devices_owner", "owner"),
)

device_challenges = Table(
    "device_challenges",
    metadata,
    Column("challenge_id", String(32), primary_key=True),
    Column("device_id", String(64), nullable=False),
    Column("purpose", String(16), nullable=False),
    Column("nonce", LargeBinary(32), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
    Index("ix_device_challenges_expires_at", "expires_at"),
)

# One row per notification and channel: written with the decision, so a crash before sending still
# sends (docs/notifications.md). ``next_attempt_at`` is also the claim: a sender moves it past its
# lease before sending, so a crashed sender's row becomes due again.
notify_outbox = Table(
    "notify_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("notification_id", String(32), nullable=False),  # the idempotency key
    Column("channel", String(255), nullable=False),
    Column("event", String(32), nullable=False),
    Column("subject", String(255), nullable=False),  # the condition's key
    Column("payload", Text, nullable=False),  # the webhook body, sent unchanged on every attempt
    Column("status", String(16), nullable=False),  # pending, sent, failed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("last_error", String(1024), nullable=True),
    UniqueConstraint("notification_id", "channel"),
    Index("ix_notify_outbox_status_next_attempt_at", "status", "next_attempt_at"),
)

# What each condition has announced (its marks, a JSON list): see otward.core.notifications.decide.
notify_conditions = Table(
    "notify_conditions",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("event", String(32), nullable=False),
    Column("marks", Text, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)
