"""Every aggregate's store on one database: what the services are wired with."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from otward.adapters.db.access_store import SqlAccessStore
from otward.adapters.db.accounts import SqlAccountStore
from otward.adapters.db.api_tokens import SqlTokenStore
from otward.adapters.db.approvals import SqlApprovalStore
from otward.adapters.db.audit import SqlAuditStore
from otward.adapters.db.authorities import SqlAuthorityStore
from otward.adapters.db.certificates import SqlCertificateStore
from otward.adapters.db.console_sessions import SqlConsoleSessionStore
from otward.adapters.db.crls import SqlCrlStore
from otward.adapters.db.database import Database
from otward.adapters.db.devices import SqlDeviceStore
from otward.adapters.db.edge_store import EdgeStore
from otward.adapters.db.enrollment_tokens import SqlEnrollmentTokenStore
from otward.adapters.db.key_refs import SqlKeyRefStore
from otward.adapters.db.manufacturers import SqlManufacturerStore
from otward.adapters.db.notifications import SqlNotificationStore
from otward.adapters.db.owners import SqlOwnerStore
from otward.adapters.db.shared_files import SqlSharedFiles
from otward.adapters.db.signers import SqlSignerStore
from otward.adapters.db.statistics import SqlStatisticsStore
from otward.adapters.db.transparency import SqlTransparencyStore

__all__ = ["SqlStores"]


@dataclass(frozen=True)
class SqlStores:
    """One store per aggregate, all writing through the same :class:`Database` (one unit of work:
    an action and the audit events that record it always share a transaction)."""

    database: Database
    authorities: SqlAuthorityStore
    certificates: SqlCertificateStore
    crls: SqlCrlStore
    tokens: SqlTokenStore
    owners: SqlOwnerStore
    enrollment_tokens: SqlEnrollmentTokenStore
    devices: SqlDeviceStore
    audit: SqlAuditStore
    signers: SqlSignerStore
    transparency: SqlTransparencyStore
    statistics: SqlStatisticsStore
    access: SqlAccessStore
    edge: EdgeStore
    key_refs: SqlKeyRefStore
    manufacturers: SqlManufacturerStore
    notifications: SqlNotificationStore
    shared_files: SqlSharedFiles
    accounts: SqlAccountStore
    approvals: SqlApprovalStore
    console_sessions: SqlConsoleSessionStore

    @classmethod
    def open(cls, engine: Engine) -> SqlStores:
        database = Database(engine)
        certificates = SqlCertificateStore(database)
        return cls(
            database=database,
            authorities=SqlAuthorityStore(database),
            certificates=certificates,
            crls=SqlCrlStore(database),
            tokens=SqlTokenStore(database),
            owners=SqlOwnerStore(database),
            enrollment_tokens=SqlEnrollmentTokenStore(database),
            devices=SqlDeviceStore(database, certificates),
            audit=SqlAuditStore(database),
            signers=SqlSignerStore(database),
            transparency=SqlTransparencyStore(database),
            statistics=SqlStatisticsStore(database),
            access=SqlAccessStore(database),
            edge=EdgeStore(database),
            key_refs=SqlKeyRefStore(database),
            manufacturers=SqlManufacturerStore(database),
            notifications=SqlNotificationStore(database),
            shared_files=SqlSharedFiles(database),
            accounts=SqlAccountStore(database),
            approvals=SqlApprovalStore(database),
            console_sessions=SqlConsoleSessionStore(database),
        )

    def close(self) -> None:
        """Release the database connections and the writer lock's file."""
        self.database.close()
