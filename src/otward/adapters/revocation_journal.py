"""The revocation journal as an append-only file (JSON Lines, mode 0600), shared by every process.

Appends take an exclusive ``flock`` and are fsynced before :meth:`append` returns, so a CRL is never
served before what it lists is in the journal. Readers keep what they read and read only what was
appended since (the journal of a plant that revoked 100,000 certificates is about 70 MB; it is read
whole once per process).
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from otward.core.revocation_journal import JournalContents, JournalEntry, encode_entry, parse_journal
from otward.errors import ConfigError

__all__ = ["JOURNAL_FILE", "FileRevocationJournal", "read_journal"]

JOURNAL_FILE = "revocations.jsonl"


def read_journal(path: Path) -> JournalContents:
    """Everything a journal file holds (a ConfigError when it cannot be read, a ParseError when a
    line is not an entry)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the revocation journal {path}: {exc.strerror}", rule="journal"
        ) from None
    entries, _ = parse_journal(data, str(path))
    contents = JournalContents()
    contents.add(entries)
    return contents


_TAIL = 1 << 16  # far more than one line (a certificate is a few KB)


def _drop_torn_tail(fd: int) -> None:
    """Cut a last line a crashed writer left incomplete (the caller holds the lock, so no writer is in
    the middle of one): readers never consumed it, and leaving it would make the next line unreadable."""
    size = os.fstat(fd).st_size
    if not size or os.pread(fd, 1, size - 1) == b"\n":
        return
    start = max(0, size - _TAIL)
    tail = os.pread(fd, size - start, start)
    newline = tail.rfind(b"\n")
    if newline < 0 and start > 0:
        raise ConfigError("the revocation journal ends in a line longer than 64 KiB", rule="journal")
    os.ftruncate(fd, start + newline + 1)


class FileRevocationJournal:
    """Implements :class:`otward.core.revocation_journal.RevocationJournal`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._offset = 0
        self._contents = JournalContents()

    def _catch_up(self) -> None:
        """Read what other processes appended since the last read (the caller holds ``_lock``)."""
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ConfigError(
                f"cannot read the revocation journal {self.path}: {exc.strerror}", rule="journal"
            ) from None
        entries, used = parse_journal(data, str(self.path))
        self._contents.add(entries)
        self._offset += used

    def contents(self) -> JournalContents:
        with self._lock:
            self._catch_up()
            copy = JournalContents()
            copy.merge(self._contents)
            return copy

    def known_serials(self) -> frozenset[str]:
        with self._lock:
            self._catch_up()
            return frozenset(self._contents.revocations)

    def append(self, entries: Sequence[JournalEntry]) -> None:
        if not entries:
            return
        data = b"".join(encode_entry(e) for e in entries)
        with self._lock:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            except OSError as exc:
                raise ConfigError(
                    f"cannot open the revocation journal {self.path}: {exc.strerror}", rule="journal"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                _drop_torn_tail(fd)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError as exc:
                raise ConfigError(
                    f"cannot write the revocation journal {self.path}: {exc.strerror}", rule="journal"
                ) from None
            finally:
                os.close(fd)  # releases the flock
