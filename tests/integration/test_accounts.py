"""Named accounts end to end (issue 17): sign-in with lock-out and TOTP on a fixed clock, the
session endpoint, tokens that never exceed their account, owner-limited officers, the audit actor
of every change, and ``--as`` on the command line."""

from __future__ import annotations

import base64
import contextlib
import getpass
import itertools
import json
import urllib.parse
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.twofactor.totp import TOTP
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from otward.cli.app import app as cli
from otward.config import load_settings
from otward.core.audit import EventType
from otward.core.authz import Grant, Role, Scope, parse_grant
from otward.core.keys import KeyType
from otward.errors import AuthenticationError, ConflictError
from otward.http.app import create_app
from otward.services.accounts import SIGNIN_FAILED
from otward.services.audit import Actor
from otward.services.bootstrap import initialize
from otward.services.pki import Pki
from tests.conftest import Clock, build_csr, make_key

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"
ANON = Actor(component="test", identity="anonymous", source="192.0.2.9")
_SOURCES = (f"10.9.{a}.{b}" for a, b in itertools.product(range(1, 250), range(1, 250)))


@pytest.fixture
def installed(data_dir: Path) -> Path:
    initialize(data_dir, key_type=KeyType.EC_P256, organization="ACME Chemicals")
    return data_dir


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def plant(installed: Path, clock: Clock):  # type: ignore[no-untyped-def]
    pki = Pki.open(load_settings(installed), clock=clock)
    yield pki
    pki.close()


def grants(*texts: str) -> frozenset[Grant]:
    return frozenset(parse_grant(t) for t in texts)


def client(pki: Pki) -> TestClient:
    return TestClient(create_app(pki), base_url="https://testserver", client=(next(_SOURCES), 1))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def events(pki: Pki, type_: EventType) -> list:  # type: ignore[type-arg]
    return [r.event for r in pki.stores.audit.iter_audit() if r.event.type == type_]


@contextlib.contextmanager
def opened(data: Path) -> Iterator[Pki]:
    pki = Pki.open(load_settings(data))
    try:
        yield pki
    finally:
        pki.close()


def enrol(pki: Pki, owner: str, device_id: str) -> None:
    """A device of ``owner`` registered the way devices are (EST with a token)."""
    if pki.stores.owners.get_owner(owner) is None:
        pki.owners.create(owner)
    _, token = pki.enrollment_tokens.create(owner, uses=1, ttl=timedelta(hours=1))
    csr = x509.load_pem_x509_csr(build_csr(make_key(), cn=device_id)).public_bytes(serialization.Encoding.DER)
    pki.est.enroll(csr, token, label=None, actor=Actor(component="est", identity="est"))


def test_the_first_admin_account_holds_the_init_token(plant, installed):
    admin = plant.accounts.get("admin")
    assert Grant(Role.ADMIN) in admin.grants
    assert Grant(Role.PKI_OFFICER) in admin.grants
    assert [t.account for t in plant.tokens.list()] == ["admin"]
    token = (installed / "admin.token").read_text().strip()
    answer = client(plant).get("/api/v1/accounts", headers=bearer(token))
    assert answer.status_code == 200
    assert {a["name"] for a in answer.json()} == {"admin"}
    assert "password" not in answer.text
    assert "secret" not in answer.text


def test_sign_in_fails_alike_for_unknown_accounts_wrong_passwords_and_disabled_accounts(plant):
    plant.accounts.add("alice", grants("pki-officer"), password=PASSWORD)
    plant.accounts.add("carol", grants("pki-officer"), password=PASSWORD)
    plant.accounts.disable("carol")
    messages = []
    for n, (name, password) in enumerate(
        (("nobody", PASSWORD), ("alice", "wrong password!"), ("carol", PASSWORD))
    ):
        with pytest.raises(AuthenticationError) as caught:  # each from its own source (not aggregated)
            plant.accounts.sign_in(
                name, password, None, Actor(component="test", identity="anonymous", source=f"192.0.2.{n}")
            )
        messages.append(caught.value.message)
    assert messages == [SIGNIN_FAILED] * 3
    assert plant.accounts.sign_in("alice", PASSWORD, None, ANON).name == "alice"
    reasons = [e.reason for e in events(plant, EventType.AUTH_FAILED)]
    assert {"unknown account", "wrong password", "account disabled"} <= set(reasons)
    signed_in = events(plant, EventType.SIGNIN_SUCCEEDED)[-1]
    assert signed_in.details["actor"] == "admin:alice"


def test_lock_out_backs_off_and_holds_even_for_the_right_password(plant, clock):
    plant.accounts.add("alice", grants("pki-officer"), password=PASSWORD)
    for _ in range(5):
        with pytest.raises(AuthenticationError):
            plant.accounts.sign_in("alice", "wrong password!", None, ANON)
    locked = plant.accounts.get("alice")
    assert locked.failed_signins == 5
    assert locked.locked_until == clock.now + timedelta(seconds=30)
    with pytest.raises(AuthenticationError):
        plant.accounts.sign_in("alice", PASSWORD, None, ANON)  # locked: the right password too
    clock.advance(timedelta(seconds=31))
    with pytest.raises(AuthenticationError):
        plant.accounts.sign_in("alice", "wrong password!", None, ANON)  # the sixth: twice as long
    assert plant.accounts.get("alice").locked_until == clock.now + timedelta(seconds=60)
    clock.advance(timedelta(seconds=61))
    assert plant.accounts.sign_in("alice", PASSWORD, None, ANON).failed_signins == 0
    assert len(events(plant, EventType.ACCOUNT_LOCKED)) == 2


def test_an_administrator_lifts_a_lock_out_by_setting_the_password(plant):
    plant.accounts.add("alice", grants("pki-officer"), password=PASSWORD)
    for _ in range(6):
        with pytest.raises(AuthenticationError):
            plant.accounts.sign_in("alice", "wrong password!", None, ANON)
    plant.accounts.set_password("alice", "a new long password")
    assert plant.accounts.sign_in("alice", "a new long password", None, ANON).locked_until is None


def _code(uri: str, now) -> str:  # type: ignore[no-untyped-def]
    """The code an authenticator app shows for ``uri`` at ``now`` (RFC 6238, read from the URI)."""
    query = urllib.parse.parse_qs(urllib.parse.urlparse(uri).query)
    secret = base64.b32decode(query["secret"][0] + "=" * (-len(query["secret"][0]) % 8))
    totp = TOTP(
        secret, int(query.get("digits", ["6"])[0]), hashes.SHA1(), int(query.get("period", ["30"])[0])
    )
    return totp.generate(int(now.timestamp())).decode()


def test_totp_on_a_fixed_clock_is_required_and_good_once(plant, clock):
    plant.accounts.add("alice", grants("pki-officer"), password=PASSWORD)
    uri = plant.accounts.new_totp("alice")
    assert uri.startswith("otpauth://totp/otward:alice?")
    with pytest.raises(AuthenticationError):
        plant.accounts.sign_in("alice", PASSWORD, None, ANON)  # the code is missing
    code = _code(uri, clock.now)
    assert plant.accounts.sign_in("alice", PASSWORD, code, ANON).name == "alice"
    with pytest.raises(AuthenticationError):
        plant.accounts.sign_in("alice", PASSWORD, code, ANON)  # the same code again: a replay
    clock.advance(timedelta(seconds=30))
    assert plant.accounts.sign_in("alice", PASSWORD, _code(uri, clock.now), ANON).name == "alice"
    with pytest.raises(AuthenticationError):
        plant.accounts.sign_in(
            "alice", "wrong password!", _code(uri, clock.now + timedelta(seconds=30)), ANON
        )
    assert plant.accounts.get("alice").failed_signins == 1
    # the secret is stored, never in the trail
    trail = json.dumps([e.details for e in events(plant, EventType.ACCOUNT_CHANGED)])
    assert "secret" not in trail


def test_the_session_endpoint_gives_a_short_lived_token_of_the_account(plant, clock):
    plant.accounts.add("alice", grants("pki-officer"), password=PASSWORD)
    api = client(plant)
    answer = api.post("/api/v1/session", json={"account": "alice", "password": PASSWORD})
    assert answer.status_code == 201, answer.text
    session = answer.json()
    assert session["account"] == "alice"
    token = session["token"]
    assert api.get("/api/v1/cas", headers=bearer(token)).status_code == 200
    assert api.get("/api/v1/access/people", headers=bearer(token)).status_code == 403
    assert api.get("/api/v1/accounts", headers=bearer(token)).status_code == 403
    clock.advance(timedelta(minutes=16))
    assert api.get("/api/v1/cas", headers=bearer(token)).status_code == 401


def test_the_session_endpoint_names_no_account_and_bounds_its_body(plant):
    plant.accounts.add("alice", grants("pki-officer"), password=PASSWORD)
    unknown = client(plant).post("/api/v1/session", json={"account": "nobody", "password": PASSWORD})
    wrong = client(plant).post("/api/v1/session", json={"account": "alice", "password": "wrong password!"})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json()["detail"] == wrong.json()["detail"]
    huge = client(plant).post("/api/v1/session", json={"account": "alice", "password": "x" * 10_000})
    assert huge.status_code == 413
    extra = client(plant).post("/api/v1/session", json={"account": "alice", "password": PASSWORD, "x": 1})
    assert extra.status_code in (400, 422)


def test_a_token_never_exceeds_its_account(plant):
    plant.accounts.add("prometheus", grants("metrics"))
    _, token = plant.tokens.create("scrape", scope=Scope.ADMIN, account="prometheus")
    api = client(plant)
    assert api.get("/metrics", headers=bearer(token)).status_code == 200
    assert api.get("/api/v1/cas", headers=bearer(token)).status_code == 403
    denied = events(plant, EventType.AUTHZ_DENIED)[-1]
    assert denied.details["actor"] == "admin:prometheus"
    assert denied.details["roles"] == "metrics"


def test_disabling_an_account_stops_its_tokens_and_removing_it_revokes_them(plant):
    plant.accounts.add("alice", grants("pki-officer"), password=PASSWORD)
    record, token = plant.tokens.create("alice-ci", account="alice")
    api = client(plant)
    assert api.get("/api/v1/cas", headers=bearer(token)).status_code == 200
    plant.accounts.disable("alice")
    assert api.get("/api/v1/cas", headers=bearer(token)).status_code == 401
    plant.accounts.enable("alice")
    assert api.get("/api/v1/cas", headers=bearer(token)).status_code == 200
    plant.accounts.remove("alice")
    assert plant.stores.tokens.get_token(record.token_id).revoked_at is not None
    assert api.get("/api/v1/cas", headers=bearer(token)).status_code == 401


def test_the_last_admin_can_be_neither_removed_nor_disabled_nor_demoted(plant):
    for change in (
        lambda: plant.accounts.remove("admin"),
        lambda: plant.accounts.disable("admin"),
        lambda: plant.accounts.set_grants("admin", grants("auditor")),
    ):
        with pytest.raises(ConflictError, match="last enabled admin"):
            change()
    plant.accounts.add("root2", grants("admin"), password=PASSWORD)
    plant.accounts.set_grants("admin", grants("auditor"))
    assert plant.accounts.admin_capable() == 1


def test_an_owner_limited_officer_touches_only_its_owners_devices(plant):
    enrol(plant, "line-2", "plc-21")
    enrol(plant, "line-3", "plc-31")
    plant.accounts.add("bob", grants("enrollment-officer:line-2"), password=PASSWORD)
    _, token = plant.tokens.create("bob", account="bob")
    api = client(plant)
    assert api.post("/api/v1/devices/plc-31/disable", headers=bearer(token)).status_code == 403
    assert api.get("/api/v1/devices/plc-31", headers=bearer(token)).status_code == 403
    assert api.get("/api/v1/devices", headers=bearer(token)).status_code == 403  # every owner's
    assert api.get("/api/v1/devices?owner=line-3", headers=bearer(token)).status_code == 403
    mine = api.get("/api/v1/devices?owner=line-2", headers=bearer(token))
    assert [d["device_id"] for d in mine.json()["items"]] == ["plc-21"]
    assert api.post("/api/v1/devices/plc-21/disable", headers=bearer(token)).status_code == 200
    assert plant.devices.get("plc-31").status.value == "active"
    disabled = events(plant, EventType.DEVICE_DISABLED)[-1]
    assert disabled.subject.endswith("plc-21")
    assert disabled.details["actor"] == "admin:bob"
    assert disabled.details["credential"].startswith("token:")


# -- the command line ----------------------------------------------------------------------------

runner = CliRunner()


def run(*args: str, code: int = 0, env: dict[str, str] | None = None, input: str | None = None) -> str:
    result = runner.invoke(cli, list(args), env=env, input=input)
    assert result.exit_code == code, result.output
    return result.output


def test_every_command_has_an_entry_in_the_permission_table():
    from typer.main import get_command

    from otward.cli.permissions import COMMANDS

    def leaves(command, path):  # type: ignore[no-untyped-def]
        subs = getattr(command, "commands", None)
        if subs:
            for name, sub in subs.items():
                yield from leaves(sub, [*path, name])
        else:
            yield " ".join(path)

    found = set(leaves(get_command(cli), []))
    assert not found - COMMANDS.keys(), f"commands without an entry: {sorted(found - COMMANDS.keys())}"
    assert not COMMANDS.keys() - found, (
        f"entries for commands that do not exist: {sorted(COMMANDS.keys() - found)}"
    )


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text(PASSWORD + "\n")
    return path


def test_cli_accounts_and_their_roles(installed, password_file):
    data = ["--data", str(installed)]
    run("admin", "add", "alice", "--role", "pki-officer", "--password-file", str(password_file), *data)
    run("admin", "add", "prometheus", "--role", "metrics", "--service", *data)
    accounts = {a["name"]: a for a in json.loads(run("admin", "list", "--json", *data))}
    assert accounts["prometheus"]["kind"] == "service"
    assert accounts["alice"]["roles"] == ["pki-officer"]
    env = {"OTWARD_PASSWORD_FILE": str(password_file)}
    assert "issuing" in run("--as", "alice", "ca", "list", *data, env=env)
    refused = run("--as", "alice", "device", "list", *data, env=env, code=1)
    assert "may not read enrollment" in refused
    refused = run(
        "--as", "alice", "admin", "add", "mallory", "--role", "admin", "--service", *data, env=env, code=1
    )
    assert "may not write admin" in refused
    for local in (["db", "upgrade"], ["init"]):
        assert "runs only in local root mode" in run("--as", "alice", *local, *data, env=env, code=1)
    # commands that read the data directory themselves refuse an account instead of ignoring it
    archive = str(installed.parent / "backup.tar.gz")
    for local in (["backup", "--out", archive], ["doctor"], ["assess", "self"]):
        assert "runs only in local root mode" in run("--as", "alice", *local, *data, env=env, code=1)
    assert not Path(archive).exists()
    token = run("admin", "token", "prometheus", "--json", *data)
    with opened(installed) as pki:
        answer = client(pki).get("/metrics", headers=bearer(json.loads(token)["token"]))
        assert answer.status_code == 200


def test_cli_changes_name_the_account_or_the_local_user(installed, password_file):
    data = ["--data", str(installed)]
    run("admin", "add", "carol", "--role", "enrollment-officer", "--password-file", str(password_file), *data)
    run("--as", "carol", "owner", "create", "line-2", *data, input=PASSWORD + "\n")
    run("owner", "create", "line-3", *data)
    with opened(installed) as pki:
        created = {e.subject: e.details["actor"] for e in events(pki, EventType.OWNER_CREATED)}
        added = events(pki, EventType.ACCOUNT_CREATED)[-1]
    assert created["line-2"] == "admin:carol"
    assert created["line-3"] == f"local:{getpass.getuser()}"
    assert added.details["actor"] == f"local:{getpass.getuser()}"


def test_cli_totp_is_asked_for(installed, password_file):
    data = ["--data", str(installed)]
    run("admin", "add", "alice", "--role", "auditor", "--password-file", str(password_file), *data)
    uri = run("admin", "totp", "alice", *data).split()[-1]
    with opened(installed) as pki:
        now = pki.clock()
    env = {"OTWARD_PASSWORD_FILE": str(password_file)}
    run("--as", "alice", "audit", "verify", *data, env=env, input="000000\n", code=1)
    run("--as", "alice", "audit", "verify", *data, env=env, input=_code(uri, now) + "\n")


def test_recovery_of_a_locked_out_last_admin_needs_the_ca_passphrase(installed, password_file, tmp_path):
    """The last admin locked out: local root mode lifts it, but only with the CA passphrase usable;
    the change is audited as the local user with the key as the proof."""
    data = ["--data", str(installed)]
    run("admin", "add", "alice", "--role", "admin", "--password-file", str(password_file), *data)
    run("admin", "roles", "admin", "--role", "auditor", *data)  # alice is the last admin now
    with opened(installed) as pki:
        for _ in range(5):
            with pytest.raises(AuthenticationError):
                pki.accounts.sign_in("alice", "wrong password!", None, ANON)
        assert pki.accounts.get("alice").locked_until is not None
    kept = tmp_path / "ca.pass"  # the passphrase kept apart from the data directory
    (installed / "ca.pass").rename(kept)
    assert "passphrase" in run("admin", "enable", "alice", *data, code=1).lower()
    run("admin", "enable", "alice", *data, env={"OTWARD_CA_PASSPHRASE_FILE": str(kept)})
    env = {"OTWARD_PASSWORD_FILE": str(password_file), "OTWARD_CA_PASSPHRASE_FILE": str(kept)}
    run("--as", "alice", "admin", "list", *data, env=env)  # signs in again
    with opened(installed) as pki:
        enabled = [e for e in events(pki, EventType.ACCOUNT_CHANGED) if e.details.get("change") == "enabled"]
    assert [(e.details["actor"], e.details["credential"]) for e in enabled] == [
        (f"local:{getpass.getuser()}", "ca-key:root")
    ]


def test_cli_an_owner_limited_officer_acts_only_on_its_owner(installed, password_file):
    data = ["--data", str(installed)]
    with opened(installed) as pki:
        enrol(pki, "line-2", "plc-21")
        enrol(pki, "line-3", "plc-31")
        other, _ = pki.enrollment_tokens.create("line-3", uses=1, ttl=timedelta(hours=1))
    run(
        "admin",
        "add",
        "bob",
        "--role",
        "enrollment-officer:line-2",
        "--password-file",
        str(password_file),
        *data,
    )
    env = {"OTWARD_PASSWORD_FILE": str(password_file)}
    as_bob = ["--as", "bob"]
    assert "of owner 'line-3'" in run(*as_bob, "device", "disable", "plc-31", *data, env=env, code=1)
    assert "only of line-2" in run(*as_bob, "device", "list", *data, env=env, code=1)
    assert "of owner 'line-3'" in run(*as_bob, "token", "revoke", other.token_id, *data, env=env, code=1)
    assert "of owner 'line-3'" in run(*as_bob, "token", "create", "--owner", "line-3", *data, env=env, code=1)
    run(*as_bob, "device", "disable", "plc-21", *data, env=env)
    run(*as_bob, "token", "create", "--owner", "line-2", *data, env=env)
    listed = json.loads(run(*as_bob, "device", "list", "--owner", "line-2", "--json", *data, env=env))
    assert [d["device_id"] for d in listed["items"]] == ["plc-21"]
    with opened(installed) as pki:
        assert pki.devices.get("plc-31").status.value == "active"
        denied = [e for e in events(pki, EventType.AUTHZ_DENIED) if e.details["actor"] == "admin:bob"]
    assert len(denied) == 4


def test_accounts_on_both_databases(pki):
    """The store on SQLite and PostgreSQL: the roles read with a token, lock-out counted, removal."""
    pki.accounts.add("alice", grants("pki-officer", "enrollment-officer:line-2"), password=PASSWORD)
    record, _ = pki.tokens.create("alice", account="alice")
    assert pki.stores.tokens.get_token(record.token_id).grants == grants(
        "pki-officer", "enrollment-officer:line-2"
    )
    for _ in range(5):
        with pytest.raises(AuthenticationError):
            pki.accounts.sign_in("alice", "wrong password!", None, ANON)
    assert pki.accounts.get("alice").locked_until is not None
    pki.accounts.disable("alice")
    assert pki.stores.tokens.get_token(record.token_id).grants is None
    pki.accounts.remove("alice")
    assert pki.stores.tokens.get_token(record.token_id).revoked_at is not None
    assert [a.name for a in pki.accounts.list()] == ["admin"]


def test_cli_an_account_changes_its_own_password_and_no_one_elses(installed, password_file, tmp_path):
    data = ["--data", str(installed)]
    for name in ("alice", "carol"):
        run("admin", "add", name, "--role", "auditor", "--password-file", str(password_file), *data)
    new = tmp_path / "new"
    new.write_text("a brand new password\n")
    env = {"OTWARD_PASSWORD_FILE": str(password_file)}
    refused = run(
        "--as", "alice", "admin", "passwd", "carol", "--password-file", str(new), *data, env=env, code=1
    )
    assert "may not write admin" in refused
    run("--as", "alice", "admin", "passwd", "alice", "--password-file", str(new), *data, env=env)
    run("--as", "alice", "audit", "verify", *data, env={"OTWARD_PASSWORD_FILE": str(new)})
    run("--as", "carol", "audit", "verify", *data, env=env)  # carol's is unchanged
