"""Rows written straight into the store, for pages that must stay right with many of them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import insert

from otward.adapters.db.schema import certificates
from otward.services.pki import Pki


def add_certificates(
    pki: Pki, rows: Sequence[tuple[str, datetime, datetime | None]], *, first_serial: int = 1 << 80
) -> None:
    """One certificate row per (ca, not_valid_after, revoked_at), without issuing (the DER is a
    placeholder: only pages that count or list certificates may read these rows)."""
    values = [
        {
            "serial": f"{first_serial + i:x}",
            "ca": ca,
            "profile": "device",
            "kind": "client",
            "subject": f"CN=bulk-{i}",
            "not_valid_before": end - timedelta(days=365),
            "not_valid_after": end,
            "der": b"\x30\x00",
            "created_at": end - timedelta(days=365),
            "revoked_at": revoked,
            "revocation_reason": "keyCompromise" if revoked else None,
            "device_id": None,
        }
        for i, (ca, end, revoked) in enumerate(rows)
    ]
    with pki.stores.database.transaction() as conn:
        conn.execute(insert(certificates), values)
