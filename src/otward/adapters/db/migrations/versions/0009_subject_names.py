"""Client names (CNs) belong to one namespace: devices or administrator-certified clients.

The table is filled from the certificates already issued, oldest first: the first certificate
with a CN claims it for its kind. Certificates issued earlier that collide keep working until
they expire or are revoked; new ones of the other kind are refused, and the Mosquitto ACL leaves
colliding device ids out (docs/identity.md).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op
from cryptography import x509

from otward.core.identity import client_name

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    names = op.create_table(
        "subject_names",
        sa.Column("name", sa.String(256), primary_key=True),
        sa.Column("namespace", sa.String(16), nullable=False),
        sa.Column("first_serial", sa.String(42), nullable=False),
        sa.Column("claimed_at", _TS, nullable=False),
    )
    certificates = sa.table(
        "certificates",
        sa.column("serial", sa.String),
        sa.column("kind", sa.String),
        sa.column("der", sa.LargeBinary),
        sa.column("created_at", _TS),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(certificates.c.serial, certificates.c.der, certificates.c.created_at)
        .where(certificates.c.kind == "end-entity")
        .order_by(certificates.c.created_at, certificates.c.serial)
    )
    claimed: dict[str, dict[str, object]] = {}
    for serial, der, created_at in rows:
        name = client_name(x509.load_der_x509_certificate(bytes(der)))
        if name is not None and name.key not in claimed:
            claimed[name.key] = {
                "name": name.key,
                "namespace": name.namespace.value,
                "first_serial": serial,
                "claimed_at": created_at,
            }
    if claimed:
        op.bulk_insert(names, list(claimed.values()))


def downgrade() -> None:
    op.drop_table("subject_names")
