"""The issuance transparency log: leaves (appended with each certificate) and signed tree heads."""

from __future__ import annotations

from sqlalchemy import insert, select

from otward.adapters.db.database import Database
from otward.adapters.db.schema import ledger_state, log_entries, log_heads
from otward.core.records import format_serial
from otward.core.transparency import TreeHead
from otward.errors import IntegrityError

__all__ = ["SqlTransparencyStore"]


class SqlTransparencyStore:
    """Implements :class:`otward.core.ports.TransparencyStore`."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def log_leaves(self, start: int = 0) -> list[bytes]:
        """Leaf hashes from index ``start`` on, in order; refuses a log with gaps."""
        stmt = (
            select(log_entries.c.leaf_index, log_entries.c.leaf_hash)
            .where(log_entries.c.leaf_index >= start)
            .order_by(log_entries.c.leaf_index)
        )
        with self._database.reading() as conn:
            rows = conn.execute(stmt).all()
        for offset, (index, _) in enumerate(rows):
            if index != start + offset:
                raise IntegrityError(f"transparency log entry {start + offset} is missing", rule="log")
        return [bytes(h) for _, h in rows]

    def log_size(self) -> int:
        with self._database.reading() as conn:
            return int(conn.execute(select(ledger_state.c.log_size)).scalar_one())

    def log_index(self, serial_number: int) -> int | None:
        with self._database.reading() as conn:
            index = conn.execute(
                select(log_entries.c.leaf_index).where(log_entries.c.serial == format_serial(serial_number))
            ).scalar_one_or_none()
        return int(index) if index is not None else None

    def add_tree_head(self, head: TreeHead) -> None:
        with self._database.transaction() as conn:
            if conn.execute(
                select(log_heads.c.tree_size).where(log_heads.c.tree_size == head.tree_size)
            ).first():
                return
            conn.execute(
                insert(log_heads).values(
                    tree_size=head.tree_size,
                    timestamp=head.timestamp,
                    root_hash=head.root_hash,
                    signature=head.signature,
                    signer_serial=format_serial(head.signer_serial),
                )
            )

    def tree_head(self, tree_size: int | None = None) -> TreeHead | None:
        """The signed head of ``tree_size`` leaves, or the largest one when None."""
        stmt = select(log_heads)
        stmt = (
            stmt.where(log_heads.c.tree_size == tree_size)
            if tree_size is not None
            else stmt.order_by(log_heads.c.tree_size.desc())
        )
        with self._database.reading() as conn:
            row = conn.execute(stmt.limit(1)).first()
        if row is None:
            return None
        return TreeHead(
            int(row.tree_size),
            row.timestamp,
            bytes(row.root_hash),
            bytes(row.signature),
            int(row.signer_serial, 16),
        )
