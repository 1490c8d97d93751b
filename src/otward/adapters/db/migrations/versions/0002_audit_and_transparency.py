"""Audit trail (hash chain, signed heads) and the issuance transparency log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("sequence", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("time", _TS, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("component", sa.String(32), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(512), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(1024), nullable=True),
        sa.Column("source", sa.String(255), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("previous_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )
    op.create_index("ix_audit_events_time", "audit_events", ["time"])
    op.create_index("ix_audit_events_type", "audit_events", ["type"])
    op.create_index("ix_audit_events_subject", "audit_events", ["subject"])
    # One row: the audit chain head and the transparency log size. Appenders update it first,
    # which locks it (row lock in PostgreSQL, write lock in SQLite) and serialises both.
    op.create_table(
        "ledger_state",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("audit_sequence", sa.BigInteger, nullable=False),
        sa.Column("audit_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("log_size", sa.BigInteger, nullable=False),
    )
    op.execute(
        sa.text(
            "INSERT INTO ledger_state (id, audit_sequence, audit_hash, log_size) VALUES (1, 0, :h, 0)"
        ).bindparams(h=bytes(32))
    )
    # How far each forwarder (syslog over TLS) got: the audit table itself is the queue.
    op.create_table(
        "forward_cursors",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_table(
        "audit_heads",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.Column("signed_at", _TS, nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
        sa.Column("signer_serial", sa.String(42), nullable=False),
    )
    # Service signing keys that are not CAs: the audit and transparency-log signer.
    op.create_table(
        "signers",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("key_ref", sa.String(512), nullable=False),
        sa.Column("serial", sa.String(42), sa.ForeignKey("certificates.serial"), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_table(
        "log_entries",
        sa.Column("leaf_index", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("serial", sa.String(42), sa.ForeignKey("certificates.serial"), nullable=False, unique=True),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("logged_at", _TS, nullable=False),
    )
    op.create_table(
        "log_heads",
        sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("timestamp", _TS, nullable=False),
        sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
        sa.Column("signer_serial", sa.String(42), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("log_heads")
    op.drop_table("log_entries")
    op.drop_table("signers")
    op.drop_table("audit_heads")
    op.drop_table("forward_cursors")
    op.drop_table("ledger_state")
    op.drop_index("ix_audit_events_subject", "audit_events")
    op.drop_index("ix_audit_events_type", "audit_events")
    op.drop_index("ix_audit_events_time", "audit_events")
    op.drop_table("audit_events")
