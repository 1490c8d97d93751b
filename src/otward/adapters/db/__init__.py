"""SQLAlchemy 2 storage: SQLite (WAL, durable commits) by default, PostgreSQL when configured.

One module per aggregate (``certificates``, ``devices``, ``audit``, ...), each implementing its port
in :mod:`otward.core.ports`; :class:`SqlStores` wires them onto one :class:`Database`.
"""

from otward.adapters.db.database import Database
from otward.adapters.db.engine import SchemaChange, check_schema, create_database_engine, upgrade_schema
from otward.adapters.db.stores import SqlStores

__all__ = [
    "Database",
    "SchemaChange",
    "SqlStores",
    "check_schema",
    "create_database_engine",
    "upgrade_schema",
]
