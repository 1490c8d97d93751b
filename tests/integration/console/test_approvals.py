"""The approvals page with four-eyes approval on: a request alice made is listed for a second
admin, who approves it in the console and it is carried out once; alice cannot approve her own
(no button, and the form refused), an auditor sees it but cannot decide, an enrollment officer
is refused the page, a rejection does nothing and records its reason."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from otward.config import load_settings
from otward.console.pages.approvals import pending_count
from otward.console.viewer import SESSION_COOKIE, Viewer
from otward.core.approvals import Operation, State
from otward.core.audit import AuditFilter, EventType
from otward.core.authz import Grant, Role
from otward.core.keys import KeyType
from otward.errors import NotFoundError
from otward.services.audit import Actor
from otward.services.bootstrap import initialize
from otward.services.pki import Pki
from tests.conftest import Clock
from tests.integration.console.conftest import ACCOUNTS, PASSWORD, SETUP, Console, csrf_of

pytestmark = pytest.mark.integration

ALICE = Actor(component="cli", identity="admin:alice", source="local", credential="password")
APPROVE = ">Approve and carry out</button>"
REJECT = ">Reject request</button>"
WITHDRAW = ">Withdraw request</button>"


@pytest.fixture
def console(data_dir: Path) -> Iterator[Console]:
    """The console's installation with ``[approvals] mode = "on"`` and a second admin, bob."""
    initialize(data_dir, key_type=KeyType.EC_P256, organization="ACME Chemicals")
    with (data_dir / "config.toml").open("a", encoding="utf-8") as handle:
        handle.write('\n[approvals]\nmode = "on"\n')
    clock = Clock()
    pki = Pki.open(load_settings(data_dir), clock=clock)
    accounts = {**ACCOUNTS, "bob": frozenset({Grant(Role.ADMIN), Grant(Role.PKI_OFFICER)})}
    for name, grants in accounts.items():
        pki.accounts.add(name, grants, SETUP, password=PASSWORD)
    assert pki.approvals.applies()
    yield Console(pki, clock)
    pki.close()


def request_carol(console: Console) -> int:
    """alice asks (as ``otward --as alice admin add carol --role auditor`` does) for a new account."""
    made = console.pki.approvals.request(
        Operation.ACCOUNT_ADD, {"name": "carol", "roles": ["auditor"]}, ALICE
    )
    return made.id


def test_a_second_admin_approves_in_the_console_and_it_runs_once(console: Console) -> None:
    request_id = request_carol(console)
    bob = console.sign_in("bob")
    listing = bob.get("/ui/approvals")
    assert listing.status_code == 200
    assert "<title>Approvals (1 pending) · otward</title>" in listing.text
    pending = listing.text[
        listing.text.index('id="approvals-pending"') : listing.text.index('id="approvals-decided"')
    ]
    assert "Add the account carol with the roles auditor" in pending
    assert "admin:alice" in pending
    assert f'href="/ui/approvals/{request_id}">Review request {request_id}</a>' in pending

    detail = bob.get(f"/ui/approvals/{request_id}")
    assert APPROVE in detail.text
    assert REJECT in detail.text
    answer = bob.post(
        f"/ui/approvals/{request_id}/approve", data={"csrf": csrf_of(detail.text), "reason": "planned"}
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/ui/approvals/{request_id}?done=approved"
    after = bob.get(answer.headers["location"])
    assert "Approved: the operation was carried out." in after.text
    assert "approved, carried out" in after.text
    assert APPROVE not in after.text
    stored = console.pki.approvals.get(request_id)
    assert (stored.state, stored.decided_by) == (State.EXECUTED, "admin:bob")
    assert console.pki.accounts.get("carol").grants == frozenset({Grant(Role.AUDITOR)})

    again = bob.post(f"/ui/approvals/{request_id}/approve", data={"csrf": csrf_of(detail.text)})
    assert again.status_code == 409
    assert "executed, not pending" in again.text
    created, _ = console.pki.stores.audit.list_audit(
        AuditFilter(type=EventType.ACCOUNT_CREATED.value, subject="account:carol"), limit=10, offset=0
    )
    assert [r.event.details["actor"] for r in created] == ["admin:bob"]
    assert [r.event.component for r in created] == ["console"]
    decided = bob.get("/ui/approvals")
    assert "<title>Approvals · otward</title>" in decided.text
    assert "Nothing is waiting for approval." in decided.text


def test_the_requester_cannot_approve_her_own(console: Console) -> None:
    request_id = request_carol(console)
    alice = console.sign_in("alice")
    detail = alice.get(f"/ui/approvals/{request_id}")
    assert detail.status_code == 200
    assert APPROVE not in detail.text
    assert WITHDRAW in detail.text
    assert "another account must approve it" in detail.text
    refused = alice.post(f"/ui/approvals/{request_id}/approve", data={"csrf": csrf_of(detail.text)})
    assert refused.status_code == 403
    assert "was made by admin:alice: another account must approve it" in refused.text
    assert console.pki.approvals.get(request_id).state is State.PENDING
    with pytest.raises(NotFoundError):
        console.pki.accounts.get("carol")


def test_the_requester_may_withdraw_her_own(console: Console) -> None:
    request_id = request_carol(console)
    alice = console.sign_in("alice")
    detail = alice.get(f"/ui/approvals/{request_id}")
    answer = alice.post(f"/ui/approvals/{request_id}/reject", data={"csrf": csrf_of(detail.text)})
    assert answer.status_code == 303
    assert answer.headers["location"].endswith("?done=withdrawn")
    assert console.pki.approvals.get(request_id).state is State.WITHDRAWN


def test_an_auditor_sees_requests_but_cannot_decide(console: Console) -> None:
    request_id = request_carol(console)
    audrey = console.sign_in("audrey")
    listing = audrey.get("/ui/approvals")
    assert listing.status_code == 200
    assert "Add the account carol" in listing.text
    detail = audrey.get(f"/ui/approvals/{request_id}")
    assert "You cannot decide this request: it needs the permission admin:write" in detail.text
    assert APPROVE not in detail.text
    assert REJECT not in detail.text
    for action in ("approve", "reject"):
        refused = audrey.post(f"/ui/approvals/{request_id}/{action}", data={"csrf": csrf_of(detail.text)})
        assert refused.status_code == 403
    assert console.pki.approvals.get(request_id).state is State.PENDING


def test_an_account_reading_neither_pki_nor_accounts_is_refused(console: Console) -> None:
    request_carol(console)
    olga = console.sign_in("olga")
    assert olga.get("/ui/approvals").status_code == 403
    assert olga.get("/ui/approvals/1").status_code == 403
    home = olga.get("/ui/")
    assert olga.post("/ui/approvals/1/approve", data={"csrf": csrf_of(home.text)}).status_code == 403
    assert console.pki.approvals.get(1).state is State.PENDING


def test_a_rejection_does_nothing_and_keeps_its_reason(console: Console) -> None:
    made = console.pki.approvals.request(Operation.CA_REVOKE, {"name": "root", "reason": "superseded"}, ALICE)
    bob = console.sign_in("bob")
    detail = bob.get(f"/ui/approvals/{made.id}")
    assert "Revoke the CA root (reason superseded)" in detail.text
    answer = bob.post(
        f"/ui/approvals/{made.id}/reject", data={"csrf": csrf_of(detail.text), "reason": "wrong CA"}
    )
    assert answer.status_code == 303
    assert answer.headers["location"].endswith("?done=rejected")
    stored = console.pki.approvals.get(made.id)
    assert (stored.state, stored.reason) == (State.REJECTED, "wrong CA")
    listing = bob.get("/ui/approvals")
    decided = listing.text[listing.text.index('id="approvals-decided"') :]
    assert '<span class="badge bad">rejected</span>' in decided
    assert "Showing 1–1 of 1, newest first" in decided  # noqa: RUF001 - the page's en dash


def test_a_decision_needs_the_csrf_token(console: Console) -> None:
    request_id = request_carol(console)
    bob = console.sign_in("bob")
    assert bob.post(f"/ui/approvals/{request_id}/approve", data={"csrf": "forged"}).status_code == 403
    assert bob.post(f"/ui/approvals/{request_id}/approve").status_code == 403
    assert console.pki.approvals.get(request_id).state is State.PENDING


def test_unknown_requests_and_pages_are_answered_with_pages(console: Console) -> None:
    bob = console.sign_in("bob")
    assert bob.get("/ui/approvals/77").status_code == 404
    assert bob.get("/ui/approvals/0").status_code == 400
    bad_page = bob.get("/ui/approvals", params={"page": "zero"})
    assert bad_page.status_code == 400
    assert "page:" in bad_page.text
    empty = bob.get("/ui/approvals")
    assert "Nothing is waiting for approval." in empty.text
    assert "No request has been decided yet." in empty.text


def test_pending_count_is_what_the_viewer_may_see(console: Console) -> None:
    request_carol(console)
    console.pki.approvals.request(Operation.CA_REVOKE, {"name": "root", "reason": "superseded"}, ALICE)

    def count(name: str) -> int:
        browser = console.sign_in(name)
        resumed = console.pki.console_sessions.resume(browser.cookies.get(SESSION_COOKIE))
        return pending_count(console.pki, Viewer(resumed.account, resumed, ALICE))

    assert (count("bob"), count("audrey"), count("olga")) == (2, 2, 0)
    assert (
        "<title>Approvals (2 pending) · otward</title>" in console.sign_in("audrey").get("/ui/approvals").text
    )
