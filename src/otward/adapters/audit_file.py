"""A hash-chained audit trail in a local file, for components that run without the database.

Gateways and edge gatekeepers must record every decision even when the central
server is out of reach. They write the same records as the central trail (the
chain of :mod:`otward.core.audit`) as JSON Lines, one record per line, flushed
and fsynced before :meth:`FileAuditTrail.append` returns, so an acknowledged
event survives a power cut. Concurrent appends share fsyncs (group commit): one
caller syncs everything written so far while the others wait for it, so a busy
gatekeeper pays one fsync per group, not per decision. A torn last line (a crash in the middle of a write)
is cut off when the file is opened again; any other damage makes opening fail,
because appending to a broken chain would hide the break.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from otward.core.audit import (
    GENESIS_HASH,
    AuditEvent,
    AuditRecord,
    ChainCheck,
    chain_hash,
    check_chain,
)
from otward.errors import IntegrityError

__all__ = ["FileAuditTrail", "record_from_line", "record_to_line"]


def record_to_line(record: AuditRecord) -> bytes:
    """One record as one line of canonical JSON."""
    body = {
        "sequence": record.sequence,
        "previous_hash": record.previous_hash.hex(),
        "hash": record.hash.hex(),
        "event": record.event.to_dict(),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def record_from_line(line: bytes | str) -> AuditRecord:
    """Parse a line written by :func:`record_to_line`; ValueError if it is not one."""
    try:
        body = json.loads(line)
        return AuditRecord(
            sequence=int(body["sequence"]),
            event=AuditEvent.from_dict(body["event"]),
            previous_hash=bytes.fromhex(body["previous_hash"]),
            hash=bytes.fromhex(body["hash"]),
        )
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise ValueError(f"not an audit record: {error}") from None


class FileAuditTrail:
    """Append-only, fsynced, hash-chained JSON Lines file; safe to share between threads of one process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()  # order of records in the file
        self._durable = threading.Condition()  # who syncs, and up to which record
        self._syncing = False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self._file = os.fdopen(fd, "a+b")
        try:
            self._last_sequence, self._last_hash = self._recover()
            self._synced = self._last_sequence
        except BaseException:
            self._file.close()
            raise

    def _recover(self) -> tuple[int, bytes]:
        self._file.seek(0)
        data = self._file.read()
        complete, _, torn = data.rpartition(b"\n")
        if torn:  # a write cut off by a crash: it was never acknowledged
            self._file.truncate(len(complete) + 1 if complete else 0)
            os.fsync(self._file.fileno())
        records = [record_from_line(line) for line in complete.split(b"\n") if line] if complete else []
        check = check_chain(records, [])
        if not check.ok:
            raise IntegrityError(f"audit trail {self.path} is damaged: {check.problem}")
        if not records:
            return 0, GENESIS_HASH
        return records[-1].sequence, records[-1].hash

    @property
    def last_sequence(self) -> int:
        return self._last_sequence

    def append(self, event: AuditEvent) -> AuditRecord:
        """Chain ``event`` after the last record and make it durable before returning."""
        with self._lock:
            record = AuditRecord(
                sequence=self._last_sequence + 1,
                event=event,
                previous_hash=self._last_hash,
                hash=chain_hash(self._last_hash, event),
            )
            self._file.write(record_to_line(record))
            self._file.flush()
            self._last_sequence, self._last_hash = record.sequence, record.hash
        self._sync_through(record.sequence)
        return record

    def _sync_through(self, sequence: int) -> None:
        """Return once records up to ``sequence`` are on disk, syncing them if nobody else is."""
        with self._durable:
            while self._synced < sequence:
                if self._syncing:
                    self._durable.wait()
                    continue
                self._syncing = True
                target = self._last_sequence  # everything flushed so far, ours included
                synced = False
                self._durable.release()
                try:
                    os.fdatasync(self._file.fileno())
                    synced = True
                finally:
                    self._durable.acquire()
                    self._syncing = False
                    if synced:
                        self._synced = max(self._synced, target)
                    self._durable.notify_all()

    def records(self, after_sequence: int = 0) -> Iterator[AuditRecord]:
        """Durable records with a sequence above ``after_sequence``, in order (reads a fresh handle).

        A record still waiting for its fsync is left out: pushed elsewhere and then lost in a power
        cut, it would be replaced here by a different record with the same sequence.
        """
        with self._durable:
            last = self._synced
        with self.path.open("rb") as handle:
            for line in handle:
                if not line.endswith(b"\n"):
                    break
                record = record_from_line(line)
                if record.sequence > last:
                    break
                if record.sequence > after_sequence:
                    yield record

    def check(self) -> ChainCheck:
        return check_chain(self.records(), [])

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __enter__(self) -> FileAuditTrail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
