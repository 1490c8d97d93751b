"""The gateway's audit events: written by a thread to a hash-chained file, or logged."""

from __future__ import annotations

import json
import logging
import queue
import socket
import threading
from datetime import UTC, datetime

from otward.adapters.audit_file import FileAuditTrail
from otward.core.audit import AuditEvent, EventType, Outcome

__all__ = ["AuditWriter"]

log = logging.getLogger("otward.gateway")
audit_log = logging.getLogger("otward.gateway.audit")


class AuditWriter:
    """Appends audit events from a thread so fsync never blocks the data path.

    Without a trail file each event is logged as one JSON line on the ``otward.gateway.audit``
    logger instead, so a gateway run without ``--audit-file`` is still audited.

    The queue is bounded. When it is full an event is not written but counted,
    and as soon as there is room again one ``integrity.failed`` event records how
    many were lost: events may be dropped under a flood, never silently.
    """

    def __init__(self, trail: FileAuditTrail | None, *, capacity: int = 10_000) -> None:
        self.trail = trail
        self.host = socket.gethostname()
        self.dropped = 0
        self.written = 0
        self._queue: queue.Queue[AuditEvent | None] = queue.Queue(maxsize=capacity)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if trail is not None:
            self._thread = threading.Thread(target=self._run, name="otward-gateway-audit", daemon=True)
            self._thread.start()

    def emit(
        self,
        type_: EventType,
        subject: str,
        outcome: Outcome,
        *,
        reason: str | None = None,
        source: str | None = None,
        details: dict[str, str] | None = None,
    ) -> None:
        event = AuditEvent(
            time=datetime.now(UTC),
            host=self.host,
            component="gateway",
            type=type_,
            subject=subject,
            outcome=outcome,
            reason=reason,
            source=source,
            details=details or {},
        )
        if self.trail is None:  # no trail file: the events still reach the log (journald, syslog)
            audit_log.info("%s", json.dumps(event.to_dict(), sort_keys=True))
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            with self._lock:
                self.dropped += 1

    def _run(self) -> None:
        assert self.trail is not None  # noqa: S101 - only started with a trail
        while True:
            event = self._queue.get()
            if event is None:
                return
            with self._lock:
                lost, self.dropped = self.dropped, 0
            try:
                if lost:
                    self.trail.append(
                        AuditEvent(
                            time=datetime.now(UTC),
                            host=self.host,
                            component="gateway",
                            type=EventType.INTEGRITY_FAILED,
                            subject="gateway-audit",
                            outcome=Outcome.FAILURE,
                            reason=f"{lost} audit events not recorded: audit queue full",
                        )
                    )
                self.trail.append(event)
                self.written += 1
            except Exception:  # the writer thread must survive a full disk
                log.exception("cannot append to the gateway audit trail")

    def close(self) -> None:
        """Write what is queued, then stop."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None
