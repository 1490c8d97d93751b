"""Pushing a local hash-chained trail file to the central server, for the components that write one
(an edge gatekeeper's ``STATE/trail.jsonl``, a gateway's ``--audit-file``).

``POST /api/v1/edge/assets/<asset>/trail`` with the records after the last acknowledged sequence, in
batches. The central server stores records by (asset, sequence) idempotently and answers the highest
sequence it holds; the cursor is persisted only after that answer arrived. A push whose answer is lost
is simply sent again and the duplicates are skipped, so across disconnects and restarts no record is
lost and none is stored twice. Only fsynced records are sent (:meth:`FileAuditTrail.records`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Protocol

import httpx

from otward.adapters.audit_file import FileAuditTrail, record_to_line
from otward.adapters.files import read_limited, write_atomic
from otward.errors import OtwardError

__all__ = ["PUSH_BATCH", "FileCursor", "TrailCursor", "push_trail"]

log = logging.getLogger("otward.trail_push")

PUSH_BATCH = 1000  # records per request (the server takes up to 5,000)


class TrailCursor(Protocol):
    """Where the pushing component keeps the last sequence the central server acknowledged."""

    @property
    def acked_sequence(self) -> int: ...

    def acknowledge(self, sequence: int) -> None: ...


class FileCursor:
    """The acknowledged sequence in a small file beside the trail (``TRAIL.pushed``), written
    atomically; a missing or unreadable file starts from 0 (the server skips what it has)."""

    def __init__(self, path: Path, trail: FileAuditTrail) -> None:
        self.path = path
        self._trail = trail
        try:
            self._acked = max(0, int(read_limited(path, 32, "trail push cursor").decode().strip()))
        except (OSError, ValueError, OtwardError):
            self._acked = 0

    @property
    def acked_sequence(self) -> int:
        return self._acked

    def acknowledge(self, sequence: int) -> None:
        sequence = max(0, min(sequence, self._trail.last_sequence))
        if sequence != self._acked:
            write_atomic(self.path, f"{sequence}\n".encode(), mode=0o600)
            self._acked = sequence


def push_trail(client: httpx.Client, url: str, trail: FileAuditTrail, cursor: TrailCursor) -> int:
    """Send the records after ``cursor`` to ``url`` until the server has them all; returns the
    acknowledged sequence. httpx errors and bad answers (ValueError, KeyError) are the caller's."""
    if trail.synced_sequence < trail.last_sequence:
        trail.sync()  # batch sync: make the newest records durable (and pushable) now
    while True:
        acked = cursor.acked_sequence
        batch = []
        for record in trail.records(after_sequence=acked):
            batch.append(json.loads(record_to_line(record)))
            if len(batch) >= PUSH_BATCH:
                break
        if not batch:
            return acked
        response = client.post(url, json={"records": batch})
        response.raise_for_status()
        answer = response.json()
        cursor.acknowledge(int(answer["acknowledged"]))
        if answer.get("problem"):
            log.warning("central server stopped the trail push: %s", answer["problem"])
            return cursor.acked_sequence
        if int(answer["acknowledged"]) <= acked:  # no progress: do not spin
            return cursor.acked_sequence
