"""The journal file: shared by several writers, appended durably, a torn line survived."""

from __future__ import annotations

import multiprocessing
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.x509 import ReasonFlags

from otward.adapters.revocation_journal import FileRevocationJournal, read_journal
from otward.core.revocation_journal import JournalCrl, JournalRevocation
from otward.errors import ConfigError

WHEN = datetime(2026, 12, 7, tzinfo=UTC)


def _append_many(path: str, start: int) -> None:
    journal = FileRevocationJournal(Path(path))
    for i in range(start, start + 200):
        journal.append([JournalRevocation("issuing", format(i, "x"), WHEN, ReasonFlags.unspecified)])


def test_writers_in_several_processes_lose_and_tear_nothing(tmp_path):
    path = tmp_path / "revocations.jsonl"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(str(path), start)) for start in (1, 1001, 2001)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    contents = read_journal(path)
    assert len(contents.revocations) == 600
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_reader_sees_what_another_appended(tmp_path):
    path = tmp_path / "j.jsonl"
    writer, reader = FileRevocationJournal(path), FileRevocationJournal(path)
    assert reader.known_serials() == frozenset()
    writer.append(
        [JournalRevocation("issuing", "a", WHEN, ReasonFlags.superseded), JournalCrl("issuing", 3, WHEN)]
    )
    assert reader.known_serials() == {"a"}
    writer.append([JournalRevocation("issuing", "b", WHEN, ReasonFlags.superseded)])
    assert reader.known_serials() == {"a", "b"}
    assert reader.contents().crl_numbers == {"issuing": 3}


def test_a_torn_last_line_is_skipped_then_cut_by_the_next_append(tmp_path):
    path = tmp_path / "j.jsonl"
    journal = FileRevocationJournal(path)
    journal.append([JournalRevocation("issuing", "a", WHEN, ReasonFlags.unspecified)])
    with path.open("ab") as handle:
        handle.write(b'{"v":1,"type":"revo')  # a crash in the middle of a write
    reader = FileRevocationJournal(path)
    assert reader.known_serials() == {"a"}
    journal.append([JournalRevocation("issuing", "b", WHEN, ReasonFlags.unspecified)])
    assert reader.known_serials() == {"a", "b"}
    assert set(read_journal(path).revocations) == {"a", "b"}
    assert b"revo\n" not in path.read_bytes()


def test_an_unwritable_journal_is_an_error_naming_it(tmp_path):
    directory = tmp_path / "journal-is-a-directory"
    directory.mkdir()
    with pytest.raises(ConfigError, match="journal-is-a-directory"):
        FileRevocationJournal(directory).append([JournalCrl("issuing", 1, WHEN)])
