"""Tables of zero-touch onboarding (issue 19), on the shared ``metadata``; created by migration 0018.

A manufacturer is trusted for one thing only: authenticating a device's factory identity (IEEE
802.1AR IDevID) to EST ``simpleenroll``. A claim is keyed by (manufacturer, serial), so two
manufacturers' serial numbers never collide, and records the IDevID that enrolled it.
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, LargeBinary, String, Table, Text

from otward.adapters.db.schema import UtcDateTime, metadata

__all__ = ["device_claims", "manufacturers"]

manufacturers = Table(
    "manufacturers",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("ca_pem", Text, nullable=False),  # the IDevID CA, or its chain: each is a trust anchor
    Column("crl_url", String(2048), nullable=True),
    Column("crl_der", LargeBinary, nullable=True),  # the newest CRL that verified
    Column("created_at", UtcDateTime, nullable=False),
)

device_claims = Table(
    "device_claims",
    metadata,
    Column("manufacturer", String(64), ForeignKey("manufacturers.name"), primary_key=True),
    Column("serial", String(128), primary_key=True),
    Column("owner", String(64), ForeignKey("owners.name"), nullable=False),
    Column("model", String(128), nullable=True),
    Column("public_key_sha256", String(64), nullable=True),  # hex SHA-256 of the IDevID's SPKI
    Column("profile", String(64), nullable=True),
    Column("device_id", String(64), nullable=True),
    Column("claimed_at", UtcDateTime, nullable=False),
    # the IDevID that enrolled (issuer, serial number, SHA-256 fingerprint) and the LDevID it got
    Column("idevid_issuer", String(1024), nullable=True),
    Column("idevid_serial", String(42), nullable=True),
    Column("idevid_fingerprint", String(64), nullable=True),
    Column("enrolled_device_id", String(64), nullable=True),
    Column("ldevid_serial", String(42), nullable=True),
    Column("enrolled_at", UtcDateTime, nullable=True),
    Index("ix_device_claims_owner", "owner"),
)
