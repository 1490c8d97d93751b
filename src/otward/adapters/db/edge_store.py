"""Storage of the edge gatekeeper's central side: bundle versions, bundles, credentials, pushed trails.

It writes through the main store's transactions (the same SQLite writer lock and
error mapping) and chains its audit events with :func:`ledger.append` in the
same transaction as the change they record.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError as DbIntegrityError

from otward.adapters.db import ledger
from otward.adapters.db.database import Database, revoke_once
from otward.adapters.db.edge_schema import (
    edge_assets,
    edge_bundles,
    edge_credentials,
    edge_tokens,
    edge_trail,
)
from otward.core.audit import GENESIS_HASH, AuditEvent, AuditRecord, chain_hash, event_bytes
from otward.core.edge.records import (
    AssetBundleSettings,
    AssetSyncStatus,
    BundleRecord,
    CredentialRecord,
    EdgeTokenRecord,
    TrailPush,
)

__all__ = ["POLL_RECORD_INTERVAL", "EdgeStore"]

POLL_RECORD_INTERVAL = timedelta(minutes=1)


def _credential(row: Row[Any]) -> CredentialRecord:
    return CredentialRecord(
        credential_id=row.credential_id,
        person=row.person,
        key_thumbprint=row.key_thumbprint,
        issued_at=row.issued_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


def _bundle(row: Row[Any]) -> BundleRecord:
    return BundleRecord(
        asset=row.asset,
        version=int(row.version),
        issued_at=row.issued_at,
        expires_at=row.expires_at,
        content_hash=bytes(row.content_hash),
        token=row.token,
    )


def _token(row: Row[Any]) -> EdgeTokenRecord:
    return EdgeTokenRecord(
        token_id=row.token_id,
        asset=row.asset,
        secret_hash=bytes(row.secret_hash),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def _settings(row: Row[Any]) -> AssetBundleSettings:
    return AssetBundleSettings(
        asset=row.asset,
        last_version=int(row.last_version),
        ttl_seconds=int(row.ttl_seconds),
        fail_open=tuple(json.loads(row.fail_open)),
    )


class EdgeStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    # --- assets and bundles ---------------------------------------------------------------------

    @staticmethod
    def _ensure_asset(
        conn: Connection, asset: str, ttl_seconds: int, fail_open: Sequence[str], now: datetime
    ) -> None:
        """Create the asset's row once; a concurrent creator wins harmlessly (savepoint)."""
        if conn.execute(select(edge_assets.c.asset).where(edge_assets.c.asset == asset)).first():
            return
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(edge_assets).values(
                        asset=asset,
                        last_version=0,
                        ttl_seconds=ttl_seconds,
                        fail_open=json.dumps(sorted(fail_open)),
                        trail_sequence=0,
                        trail_hash=GENESIS_HASH,
                        updated_at=now,
                    )
                )
        except DbIntegrityError:
            pass  # created by another transaction meanwhile

    def asset_settings(self, asset: str) -> AssetBundleSettings | None:
        with self._database.reading() as conn:
            row = conn.execute(select(edge_assets).where(edge_assets.c.asset == asset)).first()
        return _settings(row) if row is not None else None

    def latest_bundle(self, asset: str) -> BundleRecord | None:
        with self._database.reading() as conn:
            row = conn.execute(
                select(edge_bundles)
                .where(edge_bundles.c.asset == asset)
                .order_by(edge_bundles.c.version.desc())
                .limit(1)
            ).first()
        return _bundle(row) if row is not None else None

    def issue_bundle(
        self,
        asset: str,
        *,
        ttl_seconds: int,
        fail_open: Sequence[str],
        now: datetime,
        sign: Callable[[int], BundleRecord],
        events: Callable[[BundleRecord], Iterable[AuditEvent]],
    ) -> BundleRecord:
        """Take the asset's next version and store the bundle ``sign(version)`` made, in one transaction.

        The version is incremented in place (``UPDATE ... RETURNING``), which takes the row lock on
        PostgreSQL and the write lock on SQLite before anything is read: two issuers never get the same
        version, and a version taken by a transaction that fails is simply never used."""
        with self._database.transaction() as conn:
            self._ensure_asset(conn, asset, ttl_seconds, fail_open, now)
            version = conn.execute(
                update(edge_assets)
                .where(edge_assets.c.asset == asset)
                .values(
                    last_version=edge_assets.c.last_version + 1,
                    ttl_seconds=ttl_seconds,
                    fail_open=json.dumps(sorted(fail_open)),
                    updated_at=now,
                )
                .returning(edge_assets.c.last_version)
            ).scalar_one()
            record = sign(int(version))
            conn.execute(
                insert(edge_bundles).values(
                    asset=record.asset,
                    version=record.version,
                    issued_at=record.issued_at,
                    expires_at=record.expires_at,
                    content_hash=record.content_hash,
                    token=record.token,
                )
            )
            ledger.append(conn, list(events(record)))
        return record

    # --- credentials ----------------------------------------------------------------------------

    def add_credential(self, record: CredentialRecord, events: Sequence[AuditEvent]) -> None:
        with self._database.transaction() as conn:
            conn.execute(
                insert(edge_credentials).values(
                    credential_id=record.credential_id,
                    person=record.person,
                    key_thumbprint=record.key_thumbprint,
                    issued_at=record.issued_at,
                    expires_at=record.expires_at,
                    revoked_at=None,
                )
            )
            ledger.append(conn, events)

    def get_credential(self, credential_id: str) -> CredentialRecord | None:
        with self._database.reading() as conn:
            row = conn.execute(
                select(edge_credentials).where(edge_credentials.c.credential_id == credential_id)
            ).first()
        return _credential(row) if row is not None else None

    def list_credentials(self, person: str | None = None) -> list[CredentialRecord]:
        query = select(edge_credentials).order_by(
            edge_credentials.c.issued_at, edge_credentials.c.credential_id
        )
        if person is not None:
            query = query.where(edge_credentials.c.person == person)
        with self._database.reading() as conn:
            return [_credential(row) for row in conn.execute(query)]

    def revoke_credential(
        self, credential_id: str, when: datetime, events: Sequence[AuditEvent]
    ) -> CredentialRecord:
        """Revoke once, for good; a second revocation is a ConflictError."""
        with self._database.transaction() as conn:
            row = revoke_once(
                conn,
                edge_credentials.c.credential_id,
                credential_id,
                f"credential {credential_id}",
                "credential",
                revoked_at=when,
            )
            ledger.append(conn, events)
        return _credential(row)

    def revoked_credentials(self, people: Iterable[str], now: datetime) -> list[str]:
        """Ids of revoked credentials of ``people`` that have not expired by ``now`` (expired ones are
        refused by their own ``exp``)."""
        wanted = sorted(set(people))
        if not wanted:
            return []
        with self._database.reading() as conn:
            rows = conn.execute(
                select(edge_credentials.c.credential_id)
                .where(
                    edge_credentials.c.revoked_at.is_not(None),
                    edge_credentials.c.expires_at > now,
                    edge_credentials.c.person.in_(wanted),
                )
                .order_by(edge_credentials.c.credential_id)
            )
            return [str(row.credential_id) for row in rows]

    # --- sync tokens -----------------------------------------------------------------------------

    def add_token(self, record: EdgeTokenRecord, events: Sequence[AuditEvent]) -> None:
        with self._database.transaction() as conn:
            conn.execute(
                insert(edge_tokens).values(
                    token_id=record.token_id,
                    asset=record.asset,
                    secret_hash=record.secret_hash,
                    created_at=record.created_at,
                    revoked_at=None,
                )
            )
            ledger.append(conn, events)

    def get_token(self, token_id: str) -> EdgeTokenRecord | None:
        with self._database.reading() as conn:
            row = conn.execute(select(edge_tokens).where(edge_tokens.c.token_id == token_id)).first()
        return _token(row) if row is not None else None

    def list_tokens(self) -> list[EdgeTokenRecord]:
        with self._database.reading() as conn:
            rows = conn.execute(select(edge_tokens).order_by(edge_tokens.c.created_at)).all()
        return [_token(row) for row in rows]

    def revoke_token(self, token_id: str, when: datetime, events: Sequence[AuditEvent]) -> EdgeTokenRecord:
        with self._database.transaction() as conn:
            row = revoke_once(
                conn,
                edge_tokens.c.token_id,
                token_id,
                f"edge token {token_id}",
                "edge-token",
                revoked_at=when,
            )
            ledger.append(conn, events)
        return _token(row)

    # --- trails pushed by assets ----------------------------------------------------------------

    def append_trail(self, asset: str, records: Sequence[AuditRecord], now: datetime) -> TrailPush:
        """Store the records that continue the asset's chain, idempotently by (asset, sequence).

        A record already stored is skipped if it is identical and stops the push if it differs (a
        forked trail); a record that does not follow the stored head (a gap, a broken link, a hash that
        does not match its event) stops the push. The head row is updated first, so concurrent pushes of
        one asset run one after the other."""
        with self._database.transaction() as conn:
            self._ensure_asset(conn, asset, 0, (), now)
            head = conn.execute(
                update(edge_assets)
                .where(edge_assets.c.asset == asset)
                .values(trail_sequence=edge_assets.c.trail_sequence)
                .returning(edge_assets.c.trail_sequence, edge_assets.c.trail_hash)
            ).one()
            sequence, head_hash = int(head.trail_sequence), bytes(head.trail_hash)
            stored = 0
            problem: str | None = None
            for record in sorted(records, key=lambda r: r.sequence):
                if record.sequence <= sequence:
                    known = conn.execute(
                        select(edge_trail.c.hash, edge_trail.c.event).where(
                            edge_trail.c.asset == asset, edge_trail.c.sequence == record.sequence
                        )
                    ).first()
                    same = (
                        known is not None
                        and bytes(known.hash) == record.hash
                        and known.event == event_bytes(record.event).decode()
                    )
                    if not same:
                        problem = f"record {record.sequence} differs from the one already stored"
                        break
                    continue
                if record.sequence != sequence + 1:
                    problem = f"gap: expected record {sequence + 1}, got {record.sequence}"
                    break
                if (
                    record.previous_hash != head_hash
                    or chain_hash(record.previous_hash, record.event) != record.hash
                ):
                    problem = f"record {record.sequence} does not continue the chain"
                    break
                conn.execute(
                    insert(edge_trail).values(
                        asset=asset,
                        sequence=record.sequence,
                        previous_hash=record.previous_hash,
                        hash=record.hash,
                        event=event_bytes(record.event).decode(),
                        received_at=now,
                    )
                )
                sequence, head_hash = record.sequence, record.hash
                stored += 1
            conn.execute(
                update(edge_assets)
                .where(edge_assets.c.asset == asset)
                .values(trail_sequence=sequence, trail_hash=head_hash)
            )
        return TrailPush(acknowledged=sequence, stored=stored, problem=problem)

    def trail(self, asset: str, *, after: int = 0, limit: int = 1000) -> list[AuditRecord]:
        with self._database.reading() as conn:
            rows = conn.execute(
                select(edge_trail)
                .where(edge_trail.c.asset == asset, edge_trail.c.sequence > after)
                .order_by(edge_trail.c.sequence)
                .limit(limit)
            ).all()
        return [
            AuditRecord(
                sequence=int(row.sequence),
                event=AuditEvent.from_dict(json.loads(row.event)),
                previous_hash=bytes(row.previous_hash),
                hash=bytes(row.hash),
            )
            for row in rows
        ]

    def record_poll(self, asset: str, held_version: int, when: datetime) -> None:
        """Note that the asset's gatekeeper polled at ``when`` holding ``held_version``; written at
        most once a minute while the version stays the same (a poll is not a database write)."""
        quiet = when - POLL_RECORD_INTERVAL
        with self._database.transaction() as conn:
            conn.execute(
                update(edge_assets)
                .where(
                    edge_assets.c.asset == asset,
                    or_(
                        edge_assets.c.polled_at.is_(None),
                        edge_assets.c.polled_at < quiet,
                        edge_assets.c.held_version.is_(None),
                        edge_assets.c.held_version != held_version,
                    ),
                )
                .values(polled_at=when, held_version=held_version)
            )

    def sync_status(self, *, limit: int = 100, offset: int = 0) -> tuple[list[AssetSyncStatus], int]:
        """Per asset (by id), the newest bundle and the last trail push; with the number of assets."""
        newest = (
            select(edge_bundles.c.asset, func.max(edge_bundles.c.version).label("version"))
            .group_by(edge_bundles.c.asset)
            .subquery()
        )
        bundle = (
            select(edge_bundles.c.asset, edge_bundles.c.issued_at, edge_bundles.c.expires_at)
            .join(
                newest,
                (newest.c.asset == edge_bundles.c.asset) & (newest.c.version == edge_bundles.c.version),
            )
            .subquery()
        )
        trail = (
            select(edge_trail.c.asset, func.max(edge_trail.c.received_at).label("received_at"))
            .group_by(edge_trail.c.asset)
            .subquery()
        )
        query = (
            select(
                edge_assets.c.asset,
                edge_assets.c.last_version,
                edge_assets.c.trail_sequence,
                edge_assets.c.polled_at,
                edge_assets.c.held_version,
                bundle.c.issued_at,
                bundle.c.expires_at,
                trail.c.received_at,
            )
            .outerjoin(bundle, bundle.c.asset == edge_assets.c.asset)
            .outerjoin(trail, trail.c.asset == edge_assets.c.asset)
            .order_by(edge_assets.c.asset)
            .limit(limit)
            .offset(offset)
        )
        with self._database.reading() as conn:
            total = int(conn.execute(select(func.count()).select_from(edge_assets)).scalar_one())
            rows = conn.execute(query).all()
        return [
            AssetSyncStatus(
                asset=row.asset,
                bundle_version=int(row.last_version),
                bundle_issued_at=row.issued_at,
                bundle_expires_at=row.expires_at,
                trail_sequence=int(row.trail_sequence),
                last_trail_at=row.received_at,
                last_poll_at=row.polled_at,
                held_version=int(row.held_version) if row.held_version is not None else None,
            )
            for row in rows
        ], total

    def trail_head(self, asset: str) -> int:
        with self._database.reading() as conn:
            row = conn.execute(
                select(edge_assets.c.trail_sequence).where(edge_assets.c.asset == asset)
            ).first()
        return int(row.trail_sequence) if row is not None else 0
