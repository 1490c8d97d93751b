"""``otward doctor`` and ``otward assess self`` on real installations: clean after init, and each
problem named with a non-zero exit."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from cryptography.hazmat.primitives.serialization import Encoding
from typer.testing import CliRunner

from otward.adapters.db.engine import _alembic_config, create_database_engine
from otward.config import load_settings
from otward.core.assess.findings import parse_findings
from otward.core.audit import EventType
from otward.core.keys import KeyType, signature_hash_for
from otward.core.records import CrlRecord
from otward.core.revocation import build_crl
from otward.services import authorities as authorities_module
from otward.services.audit import SYSTEM_ACTOR
from otward.services.pki import Pki
from otward.services.selfcheck import run_selfcheck

runner = CliRunner()


def doctor(data, *extra: str) -> tuple[int, dict]:
    result = runner.invoke(app_(), ["doctor", "--data", str(data), "--json", *extra])
    return result.exit_code, json.loads(result.output)


def app_():
    from otward.cli.app import app

    return app


def checks(report: dict) -> set[str]:
    return {f["check"] for f in report["findings"]}


def test_a_fresh_installation_is_clean(installation, database_url):
    code, report = doctor(installation, *(["--db", database_url] if database_url else []))
    assert code == 0, report
    assert report["needs_action"] is False
    by_name = {c["name"]: c for c in report["checks"]}
    assert set(by_name) == {"database", "migrations", "clock", "revocation journal", "disk"}
    assert all(c["ok"] for c in report["checks"])
    if database_url:
        assert by_name["clock"]["message"].startswith("agrees with the database server")
    else:
        assert by_name["clock"]["message"].startswith("not applicable")
    assert checks(report) == {"selfcheck.tls.settings"}  # information only
    result = runner.invoke(
        app_(),
        ["assess", "self", "--data", str(installation), "--json"]
        + (["--db", database_url] if database_url else []),
    )
    assert result.exit_code == 0, result.output
    document = parse_findings(result.output)
    assert document.kind == "self"
    assert [f.check for f in document.findings] == ["selfcheck.tls.settings"]


@pytest.fixture
def sqlite_installation(tmp_path):
    from otward.services.bootstrap import initialize

    data = tmp_path / "data"
    initialize(data, key_type=KeyType.EC_P256, organization="ACME Chemicals")
    return data


def test_a_key_file_readable_by_others(sqlite_installation):
    key = sqlite_installation / "keys" / "ca-issuing.key.pem"
    key.chmod(0o644)
    code, report = doctor(sqlite_installation)
    assert code == 1
    [finding] = [f for f in report["findings"] if f["check"] == "selfcheck.permissions.key"]
    assert finding["target"] == str(key)
    assert finding["recommendation"] == f"chmod 600 {key}"
    text = runner.invoke(app_(), ["doctor", "--data", str(sqlite_installation)])
    assert text.exit_code == 1
    assert "PROBLEM" in text.output
    assert "[selfcheck.permissions.key]" in text.output
    assessed = runner.invoke(app_(), ["assess", "self", "--data", str(sqlite_installation), "--json"])
    assert assessed.exit_code == 1  # a high finding fails the gate
    assert "selfcheck.permissions.key" in {f.check for f in parse_findings(assessed.output).findings}


def test_a_crl_past_its_next_update(sqlite_installation):
    """A CRL signed in the test by the CA's key, with thisUpdate and nextUpdate in the past."""
    pki = Pki.open(load_settings(sqlite_installation))
    try:
        authority = pki.authorities.get("issuing")
        now = datetime.now(UTC)

        def build(number, revoked):
            crl = build_crl(
                authority.info,
                revoked,
                crl_number=number,
                this_update=now - timedelta(days=8),
                next_update=now - timedelta(days=1),
            ).sign(authority.key, signature_hash_for(authority.key))
            return CrlRecord(
                "issuing",
                number,
                now - timedelta(days=8),
                now - timedelta(days=1),
                crl.public_bytes(Encoding.DER),
            ), []

        pki.stores.crls.save_crl("issuing", build)
    finally:
        pki.close()
    code, report = doctor(sqlite_installation)
    assert code == 1
    [finding] = [f for f in report["findings"] if f["check"] == "selfcheck.crl.stale"]
    assert finding["target"] == "CRL of issuing"
    assert finding["severity"] == "high"


def test_an_unsigned_audit_tail(sqlite_installation):
    settings = load_settings(sqlite_installation)
    pki = Pki.open(settings)
    pki.audit.record(pki.audit.event(SYSTEM_ACTOR, EventType.POLICY_CHANGED, "test"))
    pki.stores.close()  # not Pki.close: that would sign the head
    young = run_selfcheck(settings)
    assert "selfcheck.audit.unsigned-tail" in {f.check for f in young.findings}
    assert not young.needs_action
    later = run_selfcheck(settings, clock=lambda: datetime.now(UTC) + timedelta(minutes=10))
    [finding] = [f for f in later.findings if f.check.startswith("selfcheck.audit")]
    assert finding.check == "selfcheck.audit.unsigned"
    assert later.needs_action


def test_a_ca_about_to_expire(sqlite_installation, monkeypatch):
    monkeypatch.setattr(authorities_module, "SUB_CA_VALIDITY", timedelta(days=3))
    pki = Pki.open(load_settings(sqlite_installation))
    try:
        pki.authorities.create_subordinate(
            "plant-7",
            parent="root",
            key_type=KeyType.EC_P256,
            organization="ACME Chemicals",
            path_length=0,
        )
        pki.revocation.publish_crl("plant-7")
    finally:
        pki.close()
    code, report = doctor(sqlite_installation)
    assert code == 1
    found = {(f["check"], f["target"], f["severity"]) for f in report["findings"]}
    assert ("selfcheck.ca.expiring", "CA plant-7", "high") in found


def test_a_migration_behind(sqlite_installation):
    engine = create_database_engine(load_settings(sqlite_installation).database_url)
    try:
        with engine.begin() as conn:
            config = _alembic_config()
            config.attributes["connection"] = conn
            command.downgrade(config, "-1")
    finally:
        engine.dispose()
    code, report = doctor(sqlite_installation)
    assert code == 1
    migrations = next(c for c in report["checks"] if c["name"] == "migrations")
    assert not migrations["ok"]
    assert "otward db upgrade" in migrations["message"]
    assessed = runner.invoke(app_(), ["assess", "self", "--data", str(sqlite_installation), "--json"])
    assert assessed.exit_code == 1
    assert "cannot assess the installation" in assessed.output


@pytest.mark.postgres
def test_an_unreachable_postgresql(sqlite_installation):
    code, report = doctor(sqlite_installation, "--db", "postgresql+psycopg://postgres@127.0.0.1:1/otward")
    assert code == 1
    database = next(c for c in report["checks"] if c["name"] == "database")
    assert not database["ok"]
    assert "cannot connect to the database" in database["message"]
