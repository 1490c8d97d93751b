"""A hash-chained audit trail in a local file, for components that run without the database.

Gateways and edge gatekeepers must record every decision even when the central
server is out of reach. They write the same records as the central trail (the
chain of :mod:`otward.core.audit`) as JSON Lines, one record per line.

Two sync modes:

* ``always`` (the default): a record is flushed and fsynced before
  :meth:`FileAuditTrail.append` returns, so an acknowledged event survives a power
  cut. Concurrent appends share fsyncs (group commit): one caller syncs everything
  written so far while the others wait for it, so a busy gatekeeper pays one fsync
  per group, not per decision.
* ``batch``: :meth:`~FileAuditTrail.append` returns once the record is written and
  flushed to the operating system (it survives a crash of the process, not a power
  cut); a background thread fsyncs what was written at most every ``interval``
  seconds, and :meth:`~FileAuditTrail.close` fsyncs the rest. A power cut can lose
  the records of the last interval, never break the chain: the file ends at a
  record boundary (a torn line is cut off on reopen) and the next record continues
  from the last one on disk.

In both modes :meth:`~FileAuditTrail.records` hands out only fsynced records, so
nothing is pushed elsewhere that a power cut could still take back.

A torn last line (a crash in the middle of a write) is cut off when the file is
opened again; any other damage makes opening fail, because appending to a broken
chain would hide the break.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from otward.core.audit import (
    GENESIS_HASH,
    AuditEvent,
    AuditRecord,
    ChainCheck,
    chain_hash_of_bytes,
    check_chain,
    event_bytes,
)
from otward.errors import IntegrityError

__all__ = [
    "DEFAULT_SYNC_INTERVAL",
    "SYNC_MODES",
    "FileAuditTrail",
    "FileCheck",
    "SyncMode",
    "check_file",
    "record_from_line",
    "record_to_line",
]

SyncMode = Literal["always", "batch"]
SYNC_MODES: tuple[SyncMode, ...] = ("always", "batch")
DEFAULT_SYNC_INTERVAL = 0.005  # seconds between background fsyncs in batch mode


def record_to_line(record: AuditRecord, canonical_event: bytes | None = None) -> bytes:
    """One record as one line of canonical JSON (keys sorted, no spaces, UTF-8).

    ``canonical_event`` is the event's :func:`event_bytes` if the caller has it already: the line
    embeds those exact bytes (the same encoding settings make them identical to re-encoding).
    """
    event = canonical_event if canonical_event is not None else event_bytes(record.event)
    return (
        b'{"event":'
        + event
        + f',"hash":"{record.hash.hex()}","previous_hash":"{record.previous_hash.hex()}",'
        f'"sequence":{record.sequence}}}\n'.encode()
    )


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


@dataclass(frozen=True)
class FileCheck:
    """What :func:`check_file` found: the chain check, and whether the last line was cut off (a crash
    while it was written; its writer drops it on reopening, so it is no break)."""

    check: ChainCheck
    torn_tail: bool

    def summary(self) -> dict[str, object]:
        check = self.check
        return {
            "ok": check.ok,
            "records": check.records,
            "first_bad_sequence": check.first_bad_sequence,
            "problem": check.problem,
            "torn_tail": self.torn_tail,
            "signed_heads": False,
        }


def check_file(path: Path) -> FileCheck:
    """Walk the hash chain of a gateway's or gatekeeper's trail file without changing it (read only,
    one line at a time). It proves the file was not edited in part; with no signed heads it proves
    nothing against someone who rewrote all of it (push it to the central server for that)."""
    torn = False
    unreadable: str | None = None

    def records() -> Iterator[AuditRecord]:
        nonlocal torn, unreadable
        with path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.endswith(b"\n"):
                    torn = True
                    return
                try:
                    yield record_from_line(line)
                except ValueError as error:
                    unreadable = f"line {number} is not an audit record ({error})"
                    return

    check = check_chain(records())
    if unreadable is not None and check.ok:
        check = ChainCheck(False, check.records, 0, check.records + 1, unreadable)
    return FileCheck(check, torn)


class FileAuditTrail:
    """Append-only, hash-chained JSON Lines file; safe to share between threads of one process.

    ``sync="always"``: every :meth:`append` returns after its record is fsynced. ``sync="batch"``:
    :meth:`append` returns after the record is written and flushed, and a background thread fsyncs at
    most every ``interval`` seconds (and :meth:`close` at the end).
    """

    def __init__(
        self, path: Path, *, sync: SyncMode = "always", interval: float = DEFAULT_SYNC_INTERVAL
    ) -> None:
        if sync not in SYNC_MODES:
            raise ValueError(f"trail sync mode must be one of {', '.join(SYNC_MODES)}, not {sync!r}")
        if not interval > 0:
            raise ValueError("trail sync interval must be positive")
        self.path = path
        self.sync_mode: SyncMode = sync
        self._interval = interval
        self._lock = threading.Lock()  # order of records in the file
        self._durable = threading.Condition()  # who syncs, and up to which record
        self._syncing = False
        self._closed = False
        self._sync_error: OSError | None = None
        self._pending = threading.Event()  # batch: records written since the last background sync
        self._closing = threading.Event()
        self._syncer: threading.Thread | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self._file = os.fdopen(fd, "a+b")
        try:
            self._last_sequence, self._last_hash = self._recover()
            self._synced = self._last_sequence
        except BaseException:
            self._file.close()
            raise
        if sync == "batch":
            self._syncer = threading.Thread(
                target=self._background_sync, name=f"trail-sync:{path.name}", daemon=True
            )
            self._syncer.start()

    def _recover(self) -> tuple[int, bytes]:
        self._file.seek(0)
        data = self._file.read()
        complete, _, torn = data.rpartition(b"\n")
        if torn:  # a write cut off by a crash: it was never acknowledged
            self._file.truncate(len(complete) + 1 if complete else 0)
            os.fsync(self._file.fileno())
        records = [record_from_line(line) for line in complete.split(b"\n") if line] if complete else []
        check = check_chain(records)
        if not check.ok:
            raise IntegrityError(f"audit trail {self.path} is damaged: {check.problem}")
        if not records:
            return 0, GENESIS_HASH
        return records[-1].sequence, records[-1].hash

    @property
    def last_sequence(self) -> int:
        return self._last_sequence

    @property
    def synced_sequence(self) -> int:
        """The last record known to be fsynced (what :meth:`records` hands out)."""
        with self._durable:
            return self._synced

    def append(self, event: AuditEvent) -> AuditRecord:
        """Chain ``event`` after the last record; return once it is durable (``always``) or written and
        flushed to the operating system (``batch``, fsynced by the background thread)."""
        if self._sync_error is not None:  # batch: the last background fsync failed; no answer unsynced
            self._sync_through(self._last_sequence)
            self._sync_error = None
        canonical = event_bytes(event)  # encoded once, for the chain hash and the line
        with self._lock:
            record = AuditRecord(
                sequence=self._last_sequence + 1,
                event=event,
                previous_hash=self._last_hash,
                hash=chain_hash_of_bytes(self._last_hash, canonical),
            )
            self._file.write(record_to_line(record, canonical))
            self._file.flush()
            self._last_sequence, self._last_hash = record.sequence, record.hash
        if self._syncer is None:
            self._sync_through(record.sequence)
        else:
            self._pending.set()
        return record

    def sync(self) -> None:
        """Make every record written so far durable now (both modes)."""
        self._sync_through(self._last_sequence)

    def _background_sync(self) -> None:
        """Batch mode: once records are pending, wait out the interval, then fsync all written so far."""
        while not self._closing.is_set():
            self._pending.wait()
            if self._closing.wait(self._interval):
                return  # close() syncs the rest
            self._pending.clear()  # a record written from here on sets it again: synced next round
            try:
                self._sync_through(self._last_sequence)
                self._sync_error = None
            except OSError as exc:  # retried next round; append() refuses to go on unsynced meanwhile
                self._sync_error = exc
                self._pending.set()

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
        return check_chain(self.records())

    def close(self) -> None:
        """Stop the background sync (batch), fsync what is left, close the file; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._syncer is not None:
            self._closing.set()
            self._pending.set()
            self._syncer.join()
        try:
            if not self._file.closed:
                self._sync_through(self._last_sequence)
        finally:
            with self._lock:
                self._file.close()

    def __enter__(self) -> FileAuditTrail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
