"""SQLAlchemy 2 storage: SQLite (WAL, durable commits) by default, PostgreSQL when configured."""

from otward.adapters.db.engine import create_database_engine, upgrade_schema
from otward.adapters.db.store import SqlPkiStore

__all__ = ["SqlPkiStore", "create_database_engine", "upgrade_schema"]
