"""Owners and enrollment tokens (issue #4, items 1-2), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from otward.cli.app import app as cli
from otward.config import load_settings
from otward.core.audit import EventType
from otward.errors import (
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PolicyViolationError,
)
from otward.services.audit import Actor
from otward.services.pki import Pki
from tests.conftest import Clock

pytestmark = pytest.mark.integration

DEVICE = Actor(component="est", identity="anonymous", source="192.0.2.50")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tpki(installation, database_url, clock):
    instance = Pki.open(load_settings(installation, database_url=database_url), clock=clock)
    instance.owners.create("acme")
    yield instance
    instance.close()


def refusals(pki) -> list[str]:
    return [
        r.event.reason or ""
        for r in pki.stores.audit.iter_audit()
        if r.event.type is EventType.ENROLL_REFUSED
    ]


def test_owner_rules(tpki):
    assert tpki.owners.get("acme").ca == "issuing"
    with pytest.raises(ConflictError):
        tpki.owners.create("acme")
    with pytest.raises(PolicyViolationError, match="owner name"):
        tpki.owners.create("ACME Corp")
    with pytest.raises(PolicyViolationError, match="root"):
        tpki.owners.create("rooted", ca="root")
    with pytest.raises(NotFoundError):
        tpki.owners.create("nowhere", ca="missing-ca")


def test_token_is_stored_hashed_and_verifies_for_matching_devices(tpki):
    record, text = tpki.enrollment_tokens.create("acme", uses=2, device_id_pattern="plc-*")
    assert text.startswith(f"otwe_{record.token_id}_")
    assert (
        text.split("_", 2)[2].encode()
        not in repr(tpki.stores.enrollment_tokens.get_enrollment_token(record.token_id)).encode()
    )
    verified = tpki.enrollment_tokens.verify(text, device_id="plc-0042", profile="device", actor=DEVICE)
    assert verified.owner == "acme"
    with pytest.raises(PolicyViolationError, match="does not match the token's pattern") as info:
        tpki.enrollment_tokens.verify(text, device_id="hmi-1", profile="device", actor=DEVICE)
    assert info.value.rule == "enroll-token-pattern"
    with pytest.raises(PolicyViolationError) as info:
        tpki.enrollment_tokens.verify(text, device_id="plc-1", profile="tls-server", actor=DEVICE)
    assert info.value.rule == "enroll-token-profile"


@pytest.mark.parametrize("state", ["expired", "used", "revoked", "wrong-secret", "unknown", "malformed"])
def test_unusable_tokens_are_refused_alike_and_audited(tpki, clock, state):
    record, text = tpki.enrollment_tokens.create("acme", ttl=timedelta(hours=1))
    if state == "expired":
        clock.now += timedelta(hours=2)
    elif state == "used":
        assert tpki.stores.enrollment_tokens.use_enrollment_token(record.token_id, clock.now)
    elif state == "revoked":
        tpki.enrollment_tokens.revoke(record.token_id)
    elif state == "wrong-secret":
        text = text[:-5] + ("AAAAA" if not text.endswith("AAAAA") else "BBBBB")
    elif state == "unknown":
        text = "otwe_0123456789abcdef_" + "A" * 43
    else:
        text = "let-me-in"
    with pytest.raises(AuthenticationError) as info:
        tpki.enrollment_tokens.verify(text, device_id="plc-1", profile="device", actor=DEVICE)
    assert info.value.message == "invalid, expired, used-up or revoked enrollment token"
    assert len(refusals(tpki)) == 1
    event = next(r.event for r in tpki.stores.audit.iter_audit() if r.event.type is EventType.ENROLL_REFUSED)
    assert event.source == "192.0.2.50"
    assert event.outcome.value == "failure"


def test_uses_are_spent_atomically(tpki):
    record, _ = tpki.enrollment_tokens.create("acme", uses=5)
    results: list[bool] = []
    lock = threading.Lock()

    def spend() -> None:
        ok = tpki.stores.enrollment_tokens.use_enrollment_token(record.token_id, tpki.clock())
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=spend) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 5
    assert (
        tpki.stores.enrollment_tokens.get_enrollment_token(record.token_id).state_at(tpki.clock()) == "used"
    )


@pytest.mark.parametrize(
    ("kwargs", "rule"),
    [
        ({"uses": 0}, "token-uses"),
        ({"ttl": timedelta(days=31)}, "token-ttl"),
        ({"device_id_pattern": "plc 1"}, "token-pattern"),
    ],
)
def test_bad_token_parameters(tpki, kwargs, rule):
    with pytest.raises(InvalidRequestError) as info:
        tpki.enrollment_tokens.create("acme", **kwargs)
    assert info.value.rule == rule


def test_unknown_owner_or_profile(tpki):
    with pytest.raises(NotFoundError):
        tpki.enrollment_tokens.create("nobody")
    with pytest.raises(InvalidRequestError, match="unknown profile"):
        tpki.enrollment_tokens.create("acme", profile="smime")


def test_cli(installation, database_url):
    runner = CliRunner()
    args = ["--data", str(installation)] + (["--db", database_url] if database_url else [])

    def run(*argv: str, code: int = 0) -> str:
        result = runner.invoke(cli, [*argv, *args])
        assert result.exit_code == code, result.output
        return result.output

    assert json.loads(run("owner", "create", "line-2", "--json"))["ca"] == "issuing"
    assert [o["name"] for o in json.loads(run("owner", "list", "--json"))] == ["line-2"]
    created = json.loads(
        run(
            "token",
            "create",
            "--owner",
            "line-2",
            "--uses",
            "3",
            "--ttl",
            "7d",
            "--device-id-pattern",
            "plc-*",
            "--json",
        )
    )
    assert created["token"].startswith("otwe_")
    listed = json.loads(run("token", "list", "--json"))
    assert listed[0]["state"] == "active"
    assert "token" not in listed[0]
    run("token", "revoke", created["token_id"])
    assert json.loads(run("token", "list", "--owner", "line-2", "--json"))[0]["state"] == "revoked"
    assert "already revoked" in run("token", "revoke", created["token_id"], code=1)
    assert "not a duration" in run("token", "create", "--owner", "line-2", "--ttl", "forever", code=1)
    # owner options: server key generation and renewal after expiry
    made = json.loads(
        run("owner", "create", "meters", "--allow-server-keygen", "--renewal-grace", "90d", "--json")
    )
    assert (made["allow_server_keygen"], made["renewal_grace_days"]) == (True, 90)
    changed = json.loads(
        run("owner", "set", "meters", "--no-server-keygen", "--renewal-grace", "0d", "--json")
    )
    assert (changed["allow_server_keygen"], changed["renewal_grace_days"]) == (False, 0)
    assert "whole days" in run("owner", "set", "meters", "--renewal-grace", "36h", code=1)
    assert "0 to 1095 days" in run("owner", "set", "meters", "--renewal-grace", "4000d", code=1)
    assert "not found" in run("owner", "set", "nobody", "--renewal-grace", "1d", code=1)
