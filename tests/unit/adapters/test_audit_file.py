"""The local hash-chained trail: survives restarts, cuts a torn line, refuses a damaged chain."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from otward.adapters.audit_file import FileAuditTrail, record_from_line
from otward.core.audit import AuditEvent, EventType, Outcome
from otward.errors import IntegrityError


def _event(subject: str) -> AuditEvent:
    return AuditEvent(
        time=datetime(2026, 12, 1, 8, 0, tzinfo=UTC),
        host="edge-1",
        component="edge",
        type=EventType.ACCESS_DECIDED,
        subject=subject,
        outcome=Outcome.SUCCESS,
        details={"asset": "reactor-1", "function": "start"},
    )


def test_records_chain_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "trail.jsonl"
    with FileAuditTrail(path) as trail:
        first = trail.append(_event("alice"))
        trail.append(_event("bob"))
    assert os.stat(path).st_mode & 0o777 == 0o600
    with FileAuditTrail(path) as trail:
        third = trail.append(_event("carol"))
        records = list(trail.records())
        assert [r.event.subject for r in records] == ["alice", "bob", "carol"]
        assert third.sequence == 3
        assert third.previous_hash == records[1].hash
        assert first.event == records[0].event
        assert trail.check().ok
        assert [r.sequence for r in trail.records(after_sequence=2)] == [3]


def test_torn_last_line_is_cut_and_sequence_continues(tmp_path: Path) -> None:
    path = tmp_path / "trail.jsonl"
    with FileAuditTrail(path) as trail:
        trail.append(_event("alice"))
    with path.open("ab") as handle:
        handle.write(b'{"sequence":2,"previous_ha')
    with FileAuditTrail(path) as trail:
        assert trail.last_sequence == 1
        assert trail.append(_event("bob")).sequence == 2
        assert trail.check().ok


def test_edited_record_refuses_to_open(tmp_path: Path) -> None:
    path = tmp_path / "trail.jsonl"
    with FileAuditTrail(path) as trail:
        trail.append(_event("alice"))
        trail.append(_event("bob"))
    lines = path.read_bytes().splitlines(keepends=True)
    body = json.loads(lines[0])
    body["event"]["outcome"] = "failure"
    lines[0] = json.dumps(body).encode() + b"\n"
    path.write_bytes(b"".join(lines))
    with pytest.raises(IntegrityError, match="record 1 was altered"):
        FileAuditTrail(path)


def test_garbage_line_is_not_a_record() -> None:
    with pytest.raises(ValueError, match="not an audit record"):
        record_from_line(b'{"sequence": 1}')


def test_concurrent_appends_share_fsyncs_and_keep_one_chain(tmp_path: Path, monkeypatch) -> None:
    """Group commit: writers that arrive while a sync runs are made durable by the next one."""
    import threading
    import time

    from otward.adapters import audit_file

    syncs: list[int] = []
    real_sync = os.fdatasync

    def slow_disk(fd: int) -> None:
        syncs.append(fd)
        time.sleep(0.005)  # a slow disk, so that writers pile up behind a sync
        real_sync(fd)

    monkeypatch.setattr(audit_file.os, "fdatasync", slow_disk)
    with FileAuditTrail(tmp_path / "trail.jsonl") as trail:

        def writer(name: str) -> None:
            for i in range(10):
                trail.append(_event(f"{name}-{i}"))

        threads = [threading.Thread(target=writer, args=(f"t{n}",)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        records = list(trail.records())
        assert [r.sequence for r in records] == list(range(1, 81))
        assert len({r.event.subject for r in records}) == 80
        assert trail.check().ok
    assert 0 < len(syncs) < 80
