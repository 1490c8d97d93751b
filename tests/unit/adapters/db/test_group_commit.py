"""Group commit: concurrent writes share commits, each caller sees its own outcome."""

from __future__ import annotations

import threading
import time

import pytest

from otward.adapters.db.group_commit import GroupCommit, Pending
from otward.errors import ConflictError, StorageError


def pending(n: int) -> Pending:
    return Pending(record=n, events=(), issuer_serials=())  # type: ignore[arg-type]  # record is opaque here


def test_a_lone_writer_commits_at_once():
    groups: list[list[int]] = []
    commit = GroupCommit(lambda group: groups.append([p.record for p in group]))
    commit.submit(pending(1))
    commit.submit(pending(2))
    assert groups == [[1], [2]]


def test_concurrent_writers_share_commits_and_each_gets_its_own_error():
    groups: list[list[int]] = []

    def slow_commit(group: list[Pending]) -> None:
        time.sleep(0.02)  # a durable commit takes a while; others queue meanwhile
        groups.append([p.record for p in group])
        for p in group:
            if p.record % 5 == 0:
                p.error = ConflictError(f"record {p.record} refused")

    commit = GroupCommit(slow_commit)
    outcomes: dict[int, str] = {}

    def writer(n: int) -> None:
        try:
            commit.submit(pending(n))
            outcomes[n] = "ok"
        except ConflictError as exc:
            outcomes[n] = str(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(1, 21)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r for g in groups for r in g) == list(range(1, 21))
    assert len(groups) < 20  # some commits were shared
    assert all(outcomes[n] == (f"record {n} refused" if n % 5 == 0 else "ok") for n in range(1, 21))


def test_an_unexpected_failure_fails_every_writer_of_the_group():
    def broken(group: list[Pending]) -> None:
        raise RuntimeError("disk on fire")

    commit = GroupCommit(broken)
    with pytest.raises(RuntimeError):
        commit.submit(pending(1))
    # the next writer leads again and fails closed too
    with pytest.raises(RuntimeError):
        commit.submit(pending(2))


def test_followers_of_a_broken_group_see_a_storage_error():
    release = threading.Event()
    calls = 0

    def broken_after_wait(group: list[Pending]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            release.wait(2)
            return
        raise RuntimeError("boom")

    commit = GroupCommit(broken_after_wait)
    leader = threading.Thread(target=commit.submit, args=(pending(0),))
    leader.start()
    time.sleep(0.05)
    errors: list[BaseException] = []

    def follower(n: int) -> None:
        try:
            commit.submit(pending(n))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    followers = [threading.Thread(target=follower, args=(n,)) for n in (1, 2, 3)]
    for f in followers:
        f.start()
    time.sleep(0.05)
    release.set()
    leader.join()
    for f in followers:
        f.join()
    assert len(errors) == 3
    assert sum(isinstance(e, RuntimeError) for e in errors) == 1  # the next leader
    assert sum(isinstance(e, StorageError) for e in errors) == 2  # its followers
