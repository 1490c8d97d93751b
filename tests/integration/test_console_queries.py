"""The store queries the console pages use, on SQLite and PostgreSQL: the audit trail newest first,
by component and by a subject substring (any case, LIKE wildcards taken literally), and approval
requests pending (oldest first) or decided (newest first), limited to some operations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from otward.core.approvals import Decision, Operation, State
from otward.core.audit import AuditEvent, AuditFilter, EventType, Outcome
from otward.services.audit import Actor
from otward.services.pki import Pki

pytestmark = pytest.mark.integration

ALICE = Actor(component="cli", identity="admin:alice")
BOB = Actor(component="cli", identity="admin:bob")
START = datetime(2026, 12, 1, tzinfo=UTC)


def _event(n: int, component: str, subject: str) -> AuditEvent:
    return AuditEvent(
        time=START + timedelta(seconds=n),
        host="h",
        component=component,
        type=EventType.CERT_ISSUED,
        subject=subject,
        outcome=Outcome.SUCCESS,
    )


def test_audit_newest_first_by_component_and_subject_substring(pki: Pki) -> None:
    store = pki.stores.audit
    before = store.audit_head()[0]
    subjects = ["Plant-A_1", "plant-a_2", "plantXa%3", "other"]
    store.append_events([_event(n, "est" if n % 2 else "console", s) for n, s in enumerate(subjects)])
    mine = AuditFilter(after_sequence=before)

    newest, total = store.list_audit(mine, limit=2, offset=1, newest_first=True)
    assert total == 4
    assert [r.event.subject for r in newest] == ["plantXa%3", "plant-a_2"]

    by_component, total = store.list_audit(
        AuditFilter(after_sequence=before, component="est"), limit=10, offset=0
    )
    assert (total, [r.event.subject for r in by_component]) == (2, ["plant-a_2", "other"])

    def containing(text: str) -> list[str]:
        found, count = store.list_audit(
            AuditFilter(after_sequence=before, subject_contains=text), limit=10, offset=0
        )
        assert count == len(found)
        return [r.event.subject for r in found]

    assert containing("PLANT-A") == ["Plant-A_1", "plant-a_2"]
    assert containing("a_") == ["Plant-A_1", "plant-a_2"]  # "_" is no wildcard
    assert containing("a%") == ["plantXa%3"]
    assert containing("%") == ["plantXa%3"]
    assert containing("nothing") == []


def test_approval_pages_pending_and_decided(pki: Pki) -> None:
    store = pki.stores.approvals
    made = [
        pki.approvals.request(operation, {"name": f"n{i}", "reason": "superseded", "roles": []}, ALICE)
        for i, operation in enumerate(
            [Operation.CA_REVOKE, Operation.ACCOUNT_ROLES, Operation.CA_REVOKE, Operation.ACCOUNT_ROLES]
        )
    ]
    for request in made[:2]:
        pki.approvals.decide(request.id, Decision.REJECT, BOB, lambda _p: True)
    every = list(Operation)
    pending, total = store.page(pending=True, operations=every, limit=10, offset=0)
    assert (total, [r.id for r in pending]) == (2, [made[2].id, made[3].id])
    decided, total = store.page(pending=False, operations=every, limit=1, offset=0)
    assert (total, [r.id for r in decided]) == (2, [made[1].id])
    assert decided[0].state is State.REJECTED
    accounts_only, total = store.page(pending=True, operations=[Operation.ACCOUNT_ROLES], limit=10, offset=0)
    assert (total, [r.id for r in accounts_only]) == (1, [made[3].id])
    nothing, total = store.page(pending=True, operations=[], limit=10, offset=0)
    assert (total, list(nothing)) == (0, [])
