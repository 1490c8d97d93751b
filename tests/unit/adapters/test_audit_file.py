"""The local hash-chained trail: survives restarts, cuts a torn line, refuses a damaged chain."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from otward.adapters.audit_file import FileAuditTrail, check_file, record_from_line
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


# --- batch sync: answered after the write, fsynced by a background thread -------------------------


def _wait_for(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Wait on a condition (no timing assertion: the timeout only keeps a broken test from hanging)."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.002)


def test_batch_records_are_handed_out_only_after_the_background_sync(tmp_path: Path, monkeypatch) -> None:
    import threading

    from otward.adapters import audit_file

    gate = threading.Event()
    syncers: list[str] = []
    real_sync = os.fdatasync

    def gated_disk(fd: int) -> None:
        syncers.append(threading.current_thread().name)
        assert gate.wait(10)
        real_sync(fd)

    monkeypatch.setattr(audit_file.os, "fdatasync", gated_disk)
    path = tmp_path / "trail.jsonl"
    with FileAuditTrail(path, sync="batch", interval=0.001) as trail:
        record = trail.append(_event("alice"))  # returns although no fsync has completed
        assert record.sequence == 1
        assert trail.last_sequence == 1
        assert path.read_bytes().count(b"\n") == 1  # written and flushed to the OS
        assert list(trail.records()) == []  # not durable yet: never handed out for a push
        assert trail.synced_sequence == 0
        gate.set()
        _wait_for(lambda: [r.sequence for r in trail.records()] == [1])
        assert trail.synced_sequence == 1
        trail.append(_event("bob"))
        _wait_for(lambda: [r.sequence for r in trail.records()] == [1, 2])
        assert trail.check().ok
    assert syncers
    assert all(name.startswith("trail-sync") for name in syncers)


def test_batch_close_makes_everything_durable_and_a_reopened_file_continues(tmp_path: Path) -> None:
    path = tmp_path / "trail.jsonl"
    trail = FileAuditTrail(path, sync="batch", interval=3600)  # the background sync never comes first
    for name in ("alice", "bob", "carol"):
        trail.append(_event(name))
    assert list(trail.records()) == []
    syncer = trail._syncer
    assert syncer is not None
    assert syncer.is_alive()
    trail.close()
    assert not syncer.is_alive()
    assert trail.synced_sequence == 3
    trail.close()  # idempotent
    with FileAuditTrail(path, sync="batch", interval=0.001) as reopened:
        records = list(reopened.records())
        assert [r.event.subject for r in records] == ["alice", "bob", "carol"]
        fourth = reopened.append(_event("dave"))
        assert fourth.sequence == 4
        assert fourth.previous_hash == records[-1].hash
    with FileAuditTrail(path) as again:
        assert [r.sequence for r in again.records()] == [1, 2, 3, 4]
        assert again.check().ok


def test_batch_failed_background_sync_stops_appends_until_the_disk_syncs(tmp_path: Path, monkeypatch) -> None:
    from otward.adapters import audit_file

    real_sync = os.fdatasync
    broken = [True]

    def failing_disk(fd: int) -> None:
        if broken[0]:
            raise OSError(5, "Input/output error")
        real_sync(fd)

    monkeypatch.setattr(audit_file.os, "fdatasync", failing_disk)
    with FileAuditTrail(tmp_path / "trail.jsonl", sync="batch", interval=0.001) as trail:
        trail.append(_event("alice"))
        _wait_for(lambda: trail._sync_error is not None)
        with pytest.raises(OSError, match="Input/output error"):
            trail.append(_event("bob"))  # not answered while nothing becomes durable
        assert list(trail.records()) == []
        broken[0] = False
        trail.append(_event("carol"))  # syncs first, then goes on
        _wait_for(lambda: trail.synced_sequence == 2)
        assert [r.event.subject for r in trail.records()] == ["alice", "carol"]


def test_unknown_sync_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sync mode"):
        FileAuditTrail(tmp_path / "trail.jsonl", sync="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="interval"):
        FileAuditTrail(tmp_path / "trail.jsonl", sync="batch", interval=0)


def test_line_is_the_canonical_json_of_the_record() -> None:
    """The line embeds the event's canonical bytes; it must equal encoding the whole record at once."""
    from otward.adapters.audit_file import record_to_line
    from otward.core.audit import AuditRecord, chain_hash

    event = AuditEvent(
        time=datetime(2026, 12, 1, 8, 0, tzinfo=UTC),
        host="edge-ü",
        component="edge",
        type=EventType.ACCESS_DECIDED,
        subject='quote " and \\ backslash',
        outcome=Outcome.FAILURE,
        reason="no grant allows 'anna' to 'start' — ünïcode",
        details={"z": "1", "a": "2"},
    )
    record = AuditRecord(3, event, b"\x01" * 32, chain_hash(b"\x01" * 32, event))
    body = {
        "sequence": 3,
        "previous_hash": record.previous_hash.hex(),
        "hash": record.hash.hex(),
        "event": event.to_dict(),
    }
    expected = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
    assert record_to_line(record) == expected
    assert record_from_line(expected) == record


def _written(path: Path, count: int) -> bytes:
    with FileAuditTrail(path) as trail:
        for n in range(count):
            trail.append(_event(f"plc-{n}"))
    return path.read_bytes()


def test_check_file_walks_the_chain_and_changes_nothing(tmp_path):
    path = tmp_path / "trail.jsonl"
    before = _written(path, 4)
    found = check_file(path)
    assert (found.check.ok, found.check.records, found.torn_tail) == (True, 4, False)
    assert path.read_bytes() == before
    # a line cut off by a crash is no break (the writer drops it), and the check leaves it there
    path.write_bytes(before + b'{"event":')
    found = check_file(path)
    assert (found.check.ok, found.check.records, found.torn_tail) == (True, 4, True)
    assert path.read_bytes().endswith(b'{"event":')


def test_check_file_names_the_first_bad_record(tmp_path):
    path = tmp_path / "trail.jsonl"
    lines = _written(path, 4).splitlines(keepends=True)
    path.write_bytes(b"".join([lines[0], lines[1].replace(b"plc-1", b"plc-X"), *lines[2:]]))
    found = check_file(path)
    assert (found.check.ok, found.check.first_bad_sequence) == (False, 2)
    assert "altered" in (found.check.problem or "")
    path.write_bytes(b"".join([lines[0], *lines[2:]]))
    assert check_file(path).check.first_bad_sequence == 2  # a record removed
    path.write_bytes(b"".join([lines[0], b"not json\n", *lines[1:]]))
    found = check_file(path)
    assert (found.check.ok, found.check.first_bad_sequence) == (False, 2)
    assert "line 2 is not an audit record" in (found.check.problem or "")
