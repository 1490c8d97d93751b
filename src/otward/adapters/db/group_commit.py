"""Group commit: concurrent writers share one transaction and so one durable commit.

The first caller to find no commit under way becomes the leader: it takes every
write queued so far, commits them together and wakes the others. A lone caller
commits alone at once, so nothing waits for a batch to fill; under load, the
writers that arrived during one fsync share the next. Each caller still returns
only after its own write is committed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection

from otward.core.audit import AuditEvent
from otward.core.records import CertificateRecord
from otward.errors import OtwardError, StorageError

__all__ = ["GroupCommit", "Pending"]


@dataclass(eq=False)
class Pending:
    """One queued certificate write and, once the leader is done with it, its outcome."""

    record: CertificateRecord
    events: tuple[AuditEvent, ...]
    issuer_serials: tuple[int, ...]
    # Runs inside the group's transaction after the group's certificates are inserted (an enrollment's
    # registry update and token use) and returns further events to record; raising an OtwardError
    # refuses this write alone.
    prepare: Callable[[Connection], Sequence[AuditEvent]] | None = None
    done: bool = field(default=False)
    error: OtwardError | None = field(default=None)


class GroupCommit:
    def __init__(self, commit: Callable[[list[Pending]], None]) -> None:
        """``commit`` writes a group and sets ``error`` on the writes that failed; it must not raise
        an OtwardError for the group as a whole."""
        self._commit = commit
        self._condition = threading.Condition()
        self._queue: list[Pending] = []
        self._leading = False

    def submit(self, pending: Pending) -> None:
        """Return once ``pending`` is committed; raise its error if it was refused."""
        with self._condition:
            self._queue.append(pending)
            while not pending.done and self._leading:
                self._condition.wait()
            if pending.done:
                if pending.error is not None:
                    raise pending.error
                return
            self._leading = True
            group, self._queue = self._queue, []
        try:
            self._commit(group)
        except BaseException as exc:  # nothing of the group is known to be stored: fail them all
            failure = (
                exc if isinstance(exc, OtwardError) else StorageError("the certificate could not be stored")
            )
            for member in group:
                if member.error is None:
                    member.error = failure
            raise
        finally:
            with self._condition:
                for member in group:
                    member.done = True
                self._leading = False
                self._condition.notify_all()
        if pending.error is not None:
            raise pending.error
