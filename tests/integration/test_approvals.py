"""Four-eyes approval end to end (issue 17 item 3): a gated command stores a request instead of
acting, its requester cannot approve it, a second account with the operation's permission approves
and it is carried out once, through the CLI and the API, on SQLite and PostgreSQL; rejection,
withdrawal, expiry on a fixed clock, ``mode = "auto"`` switching on with a second admin, and the
audit events with their actors."""

from __future__ import annotations

import getpass
import itertools
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from otward.cli.app import app as cli
from otward.config import load_settings
from otward.core.approvals import Decision, Operation, State
from otward.core.audit import EventType
from otward.core.authz import is_granted, parse_grant
from otward.core.keys import KeyType
from otward.errors import ConfigError, ConflictError, OtwardError, PermissionDeniedError
from otward.http.app import create_app
from otward.services.audit import Actor
from otward.services.bootstrap import initialize
from otward.services.pki import Pki
from tests.conftest import Clock

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"
ALICE = Actor(component="cli", identity="admin:alice", source="local")
BOB = Actor(component="cli", identity="admin:bob", source="local")
_SOURCES = (f"10.17.{a}.{b}" for a, b in itertools.product(range(1, 250), range(1, 250)))
runner = CliRunner()


def _everything(_permission: object) -> bool:
    return True


def add(pki: Pki, name: str, *roles: str) -> None:
    pki.accounts.add(name, frozenset(parse_grant(r) for r in roles), password=PASSWORD)


def events(pki: Pki, type_: EventType) -> list:  # type: ignore[type-arg]
    return [r.event for r in pki.stores.audit.iter_audit() if r.event.type == type_]


def set_mode(data: Path, text: str) -> None:
    with (data / "config.toml").open("a", encoding="utf-8") as handle:
        handle.write(f"\n[approvals]\n{text}\n")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def officers(installation: Path, database_url: str | None, clock: Clock) -> Iterator[Pki]:
    """alice and bob, both admins and PKI officers (with the first ``admin``: approvals on)."""
    pki = Pki.open(load_settings(installation, database_url=database_url), clock=clock)
    add(pki, "alice", "admin", "pki-officer")
    add(pki, "bob", "admin", "pki-officer")
    yield pki
    pki.close()


def test_approval_by_a_second_officer_runs_the_operation_once(officers):
    pki = officers
    assert pki.approvals.applies()
    request = pki.approvals.request(
        Operation.SIGNER_ROTATE_REVOKE, {"name": "audit", "reason": "superseded"}, ALICE
    )
    before = pki.signers.rotate("audit", actor=BOB).certificate  # the service call is not gated
    with pytest.raises(PermissionDeniedError, match="another account must approve"):
        pki.approvals.decide(request.id, Decision.APPROVE, ALICE, _everything)
    done = pki.approvals.decide(request.id, Decision.APPROVE, BOB, _everything, reason="planned")
    assert done.state is State.EXECUTED
    stored = pki.approvals.get(request.id)
    assert (stored.state, stored.decided_by, stored.requester) == (State.EXECUTED, "admin:bob", "admin:alice")
    with pytest.raises(ConflictError, match="executed, not pending"):
        pki.approvals.decide(request.id, Decision.APPROVE, BOB, _everything)
    after = pki.signers.current("audit")
    assert after is not None
    assert after.certificate != before
    revoked = events(pki, EventType.CERT_REVOKED)[-1]
    assert revoked.details["actor"] == "admin:bob"
    requested = events(pki, EventType.APPROVAL_REQUESTED)[-1]
    approved = events(pki, EventType.APPROVAL_APPROVED)[-1]
    assert requested.details["actor"] == "admin:alice"
    assert requested.details["operation"] == "signer.rotate_revoke"
    assert '"reason": "superseded"' in requested.details["parameters"]
    assert (approved.details["actor"], approved.details["requester"]) == ("admin:bob", "admin:alice")
    assert approved.subject == f"approval:{request.id}"


def test_the_state_changes_by_compare_and_set(officers):
    pki = officers
    request = pki.approvals.request(Operation.CA_REVOKE, {"name": "x", "reason": "superseded"}, ALICE)
    now = pki.clock()
    store = pki.stores.approvals
    first = store.transition(
        request.id, State.PENDING, State.APPROVED, decided_by="a", decided_at=now, reason=None
    )
    second = store.transition(
        request.id, State.PENDING, State.APPROVED, decided_by="b", decided_at=now, reason=None
    )
    assert (first, second) == (True, False)
    assert pki.stores.approvals.get(request.id).decided_by == "a"  # type: ignore[union-attr]


def test_rejection_and_withdrawal_do_nothing(officers):
    pki = officers
    pki.authorities.create_subordinate(
        "plant-a", parent="root", key_type=KeyType.EC_P256, organization="ACME", actor=BOB
    )
    revoke = {"name": "plant-a", "reason": "cessationOfOperation"}
    first = pki.approvals.request(Operation.CA_REVOKE, revoke, ALICE)
    rejected = pki.approvals.decide(first.id, Decision.REJECT, BOB, _everything, reason="wrong CA")
    assert rejected.state is State.REJECTED
    second = pki.approvals.request(Operation.CA_REVOKE, revoke, ALICE)
    assert pki.approvals.decide(second.id, Decision.REJECT, ALICE, _everything).state is State.WITHDRAWN
    assert not events(pki, EventType.CA_REVOKED)
    kinds = [e.details["decision"] for e in events(pki, EventType.APPROVAL_REJECTED)]
    assert kinds == ["rejected", "withdrawn"]
    assert events(pki, EventType.APPROVAL_REJECTED)[0].details["reason"] == "wrong CA"


def test_an_operation_that_fails_once_approved_is_recorded_failed(officers):
    pki = officers
    request = pki.approvals.request(Operation.CA_REVOKE, {"name": "nowhere", "reason": "superseded"}, ALICE)
    with pytest.raises(OtwardError):
        pki.approvals.decide(request.id, Decision.APPROVE, BOB, _everything)
    failed = pki.approvals.get(request.id)
    assert failed.state is State.FAILED
    assert "nowhere" in (failed.reason or "")
    with pytest.raises(ConflictError, match="failed, not pending"):
        pki.approvals.decide(request.id, Decision.APPROVE, BOB, _everything)
    outcome = events(pki, EventType.APPROVAL_APPROVED)[-1]
    assert (outcome.outcome.value, outcome.details["decision"]) == ("failure", "failed")


def test_a_request_expires(officers, clock):
    pki = officers
    request = pki.approvals.request(Operation.ACCOUNT_ROLES, {"name": "bob", "roles": ["auditor"]}, ALICE)
    clock.advance(timedelta(hours=24))
    with pytest.raises(ConflictError, match="expired"):
        pki.approvals.decide(request.id, Decision.APPROVE, BOB, _everything)
    assert pki.approvals.get(request.id).state is State.EXPIRED
    assert pki.accounts.get("bob").grants == frozenset({parse_grant("admin"), parse_grant("pki-officer")})
    expired = events(pki, EventType.APPROVAL_EXPIRED)
    assert [e.subject for e in expired] == [f"approval:{request.id}"]


def test_an_approver_without_the_permission_is_refused(officers):
    pki = officers
    add(pki, "dave", "admin")  # accounts, not the PKI
    request = pki.approvals.request(Operation.CA_REVOKE, {"name": "x", "reason": "superseded"}, ALICE)
    dave = pki.accounts.get("dave")
    with pytest.raises(PermissionDeniedError, match="needs pki:write"):
        pki.approvals.decide(
            request.id, Decision.APPROVE, Actor("cli", "admin:dave"), lambda p: is_granted(dave.grants, p)
        )
    assert pki.approvals.get(request.id).state is State.PENDING
    denied = events(pki, EventType.AUTHZ_DENIED)[-1]
    assert (denied.details["actor"], denied.subject) == ("admin:dave", f"approval:{request.id}")


def test_mode_auto_switches_on_with_a_second_admin(data_dir):
    initialize(data_dir, key_type=KeyType.EC_P256, organization="ACME Chemicals")
    with _Opened(data_dir) as pki:
        assert not pki.approvals.applies()  # one admin: nobody to approve
        add(pki, "alice", "pki-officer")
        assert not pki.approvals.applies()
        add(pki, "bob", "admin")
        assert pki.approvals.applies()
        pki.accounts.disable("bob")
        assert not pki.approvals.applies()
    set_mode(data_dir, 'mode = "on"')
    with _Opened(data_dir) as pki:
        assert pki.approvals.applies()


def test_mode_off_and_bad_settings(data_dir):
    initialize(data_dir, key_type=KeyType.EC_P256, organization="ACME Chemicals")
    config = (data_dir / "config.toml").read_text()
    set_mode(data_dir, 'mode = "off"')
    with _Opened(data_dir) as pki:
        add(pki, "bob", "admin")
        assert not pki.approvals.applies()
    for bad, message in (('expires = "1s"', "approvals.expires"), ('mode = "maybe"', "approvals.mode")):
        (data_dir / "config.toml").write_text(config)
        set_mode(data_dir, bad)
        with pytest.raises(ConfigError, match=message):
            load_settings(data_dir)


class _Opened:
    def __init__(self, data: Path) -> None:
        self.pki = Pki.open(load_settings(data))

    def __enter__(self) -> Pki:
        return self.pki

    def __exit__(self, *exc: object) -> None:
        self.pki.close()


# -- the command line --------------------------------------------------------------------------


def run(*args: str, code: int = 0, env: dict[str, str] | None = None) -> str:
    result = runner.invoke(cli, list(args), env=env)
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text(PASSWORD + "\n")
    return path


def test_cli_ca_create_waits_for_a_second_officer(data_dir, password_file):
    initialize(data_dir, key_type=KeyType.EC_P256, organization="ACME Chemicals")
    data = ["--data", str(data_dir)]
    for name in ("alice", "bob"):
        run(
            "admin",
            "add",
            name,
            "--role",
            "pki-officer",
            "--password-file",
            str(password_file),
            *data,
        )
    run("admin", "add", "erin", "--role", "auditor", "--password-file", str(password_file), *data)
    set_mode(data_dir, 'mode = "on"')  # one admin: "auto" would leave approvals off
    env = {"OTWARD_PASSWORD_FILE": str(password_file)}
    stored = run("--as", "alice", "ca", "create", "plant-a", "--parent", "root", *data, env=env)
    assert "approval request 1 stored; another pki-officer must run `otward approvals approve 1`" in stored
    assert "plant-a" not in run("ca", "list", *data)
    assert "another account must approve" in run(
        "--as", "alice", "approvals", "approve", "1", *data, env=env, code=1
    )
    assert "may not write pki" in run("--as", "erin", "approvals", "approve", "1", *data, env=env, code=1)
    listed = json.loads(
        run("--as", "erin", "approvals", "list", "--json", *data, env=env)
    )  # an auditor reads
    assert [(r["operation"], r["requester"], r["state"]) for r in listed] == [
        ("ca.create", "admin:alice", "pending")
    ]
    assert listed[0]["parameters"]["parent"] == "root"
    approved = run("--as", "bob", "approvals", "approve", "1", *data, env=env)
    assert "approval request 1 approved and executed: created CA plant-a under root" in approved
    assert "plant-a" in run("ca", "list", *data)
    assert "executed, not pending" in run("--as", "bob", "approvals", "approve", "1", *data, env=env, code=1)
    revoke = run("--as", "alice", "ca", "revoke", "plant-a", "--reason", "superseded", *data, env=env)
    assert "approval request 2 stored" in revoke
    assert "rejected" in run("--as", "bob", "approvals", "reject", "2", "--reason", "no", *data, env=env)
    run("ca", "revoke", "plant-b", "--reason", "superseded", *data, code=1)  # no such CA: no request
    rotate = run(
        "--as", "bob", "signer", "rotate", "audit", "--revoke-previous", "superseded", *data, env=env
    )
    assert "approval request 3 stored" in rotate
    pending = json.loads(run("approvals", "list", "--pending", "--json", *data))
    assert [(r["id"], r["operation"], r["requester"]) for r in pending] == [
        (3, "signer.rotate_revoke", "admin:bob")
    ]
    with _Opened(data_dir) as pki:
        assert not events(pki, EventType.CA_REVOKED)
        created = events(pki, EventType.CA_CREATED)[-1]
        assert created.details["actor"] == "admin:bob"
        requested = events(pki, EventType.APPROVAL_REQUESTED)
        assert [e.details["actor"] for e in requested] == ["admin:alice", "admin:alice", "admin:bob"]


def test_cli_role_change_and_local_root_mode(data_dir, password_file):
    initialize(data_dir, key_type=KeyType.EC_P256, organization="ACME Chemicals")
    data = ["--data", str(data_dir)]
    run("admin", "add", "bob", "--role", "admin", "--password-file", str(password_file), *data)
    stored = run("admin", "roles", "bob", "--role", "auditor", *data)  # local root mode requests
    assert "approval request 1 stored; another admin must run" in stored
    refused = run("approvals", "approve", "1", *data, code=1)  # the same unix user
    assert f"made by local:{getpass.getuser()}" in refused
    env = {"OTWARD_PASSWORD_FILE": str(password_file)}
    # bob approves his own demotion: he is not the requester, and holds admin
    assert "roles of bob: auditor" in run("--as", "bob", "approvals", "approve", "1", *data, env=env)
    assert "account.add" not in run("approvals", "list", *data)
    with _Opened(data_dir) as pki:
        assert pki.accounts.get("bob").grants == frozenset({parse_grant("auditor")})
        changed = events(pki, EventType.ACCOUNT_CHANGED)[-1]
        assert changed.details["actor"] == "admin:bob"
    stored = run("admin", "add", "carol", "--role", "admin", "--password-file", str(password_file), *data)
    assert "approvals" not in stored  # bob is no admin any more: one admin, approvals off


# -- the API -----------------------------------------------------------------------------------


def test_api_signer_rotation_waits_for_approval(officers):
    pki = officers
    add(pki, "erin", "enrollment-officer")
    tokens = {name: pki.tokens.create(name, account=name)[1] for name in ("alice", "bob", "erin")}
    app = create_app(pki)

    def call(who: str, method: str, url: str, **kwargs: object):  # type: ignore[no-untyped-def]
        client = TestClient(app, base_url="https://testserver", client=(next(_SOURCES), 1))
        return client.request(method, url, headers={"Authorization": f"Bearer {tokens[who]}"}, **kwargs)  # type: ignore[arg-type]

    answer = call("alice", "POST", "/api/v1/signers/edge/rotate", json={"revoke_previous": "superseded"})
    assert answer.status_code == 202, answer.text
    request_id = answer.json()["id"]
    assert answer.json()["state"] == "pending"
    assert answer.json()["requester"] == "admin:alice"
    assert call("erin", "GET", "/api/v1/approvals").status_code == 403
    assert [r["id"] for r in call("bob", "GET", "/api/v1/approvals").json()] == [request_id]
    own = call("alice", "POST", f"/api/v1/approvals/{request_id}/approve")
    assert own.status_code == 403
    assert "another account must approve" in own.text
    done = call("bob", "POST", f"/api/v1/approvals/{request_id}/approve", json={"reason": "ok"})
    assert done.status_code == 200, done.text
    assert (done.json()["state"], done.json()["decided_by"]) == ("executed", "admin:bob")
    assert call("bob", "POST", f"/api/v1/approvals/{request_id}/approve").status_code == 409
    assert call("bob", "POST", "/api/v1/approvals/999/reject").status_code == 404
    plain = call("alice", "POST", "/api/v1/signers/edge/rotate")  # no revocation: not gated
    assert plain.status_code == 200
