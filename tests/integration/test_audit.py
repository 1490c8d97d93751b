"""The audit trail on SQLite and PostgreSQL: what is recorded, and that tampering is caught."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, insert, select, update
from typer.testing import CliRunner

from otward.adapters.db.schema import audit_events, audit_heads, certificates
from otward.cli.app import app as cli
from otward.config import load_settings
from otward.core.audit import EventType
from otward.errors import AuthenticationError
from otward.http.app import create_app
from otward.services.audit import Actor, to_syslog
from otward.services.pki import Pki
from tests.conftest import build_csr, make_key

pytestmark = pytest.mark.integration

ACTOR = Actor(component="api", identity="token:test", source="192.0.2.7", request_id="req-1")


def events(pki, type_: EventType | None = None):
    return [r for r in pki.stores.audit.iter_audit() if type_ is None or r.event.type is type_]


def test_init_records_its_work_and_signs_the_head(pki):
    types = [r.event.type for r in events(pki)]
    assert types[:2] == [EventType.CA_CREATED, EventType.CA_CREATED]
    assert EventType.TOKEN_CREATED in types
    assert EventType.SIGNER_CREATED in types
    report = pki.audit.verify()
    assert report.check.ok, report.check.problem
    assert report.check.heads >= 1


def test_issuance_and_its_event_are_one_transaction(pki):
    issued = pki.issuance.issue(build_csr(make_key(), cn="op-1"), profile="tls-client", actor=ACTOR)
    (event,) = [r.event for r in events(pki, EventType.CERT_ISSUED) if r.event.subject == issued.serial]
    assert event.component == "api"
    assert event.source == "192.0.2.7"
    assert event.request_id == "req-1"
    assert event.details["actor"] == "token:test"
    assert event.details["profile"] == "tls-client"
    assert event.time.tzinfo is not None
    # every stored certificate has its event and its transparency-log entry
    with pki.stores.database.engine.connect() as conn:
        serials = {s for (s,) in conn.execute(select(certificates.c.serial))}
    logged = {r.event.subject for r in events(pki, EventType.CERT_ISSUED)}
    assert {issued.serial} <= logged
    assert pki.stores.transparency.log_size() == len(serials)


def test_a_head_is_signed_once_however_many_processes_sign(pki, installation, database_url):
    """Each worker signs the head on its own schedule; one that finds the newest signed head already
    covering the chain (signed by another process) adds none, and only the newest head is read."""
    other = Pki.open(load_settings(installation, database_url=database_url))
    try:
        pki.issuance.issue(build_csr(make_key(), cn="h-1"), profile="tls-client", actor=ACTOR)
        signed = pki.audit.sign_head()
        assert signed is not None
        assert other.audit.sign_head() is None  # already signed through this sequence by the other
        assert pki.stores.audit.latest_audit_head() == signed
        pki.issuance.issue(build_csr(make_key(), cn="h-2"), profile="tls-client", actor=ACTOR)
        newer = other.audit.sign_head()
        assert newer is not None
        assert newer.sequence > signed.sequence
        assert pki.stores.audit.latest_audit_head() == newer
        assert pki.stores.audit.audit_heads()[-1] == newer
        assert pki.audit.verify().check.ok
    finally:
        other.close()


def test_refusals_and_failures_are_recorded(pki):
    with pytest.raises(Exception, match="requires a dns or ip SAN"):
        pki.issuance.issue(build_csr(make_key(), cn="x"), profile="tls-server", actor=ACTOR)
    (refused,) = events(pki, EventType.CERT_REFUSED)
    assert refused.event.outcome.value == "failure"
    assert refused.event.details["rule"] == "san-required"
    assert refused.event.subject == "CN=x"
    with pytest.raises(Exception, match="not found"):
        pki.revocation.revoke(
            0xABCDEF0123456789AB, __import__("cryptography").x509.ReasonFlags.superseded, ACTOR
        )
    failed = [r for r in events(pki, EventType.CERT_REVOKED) if r.event.outcome.value == "failure"]
    assert failed[0].event.subject == "abcdef0123456789ab"


def test_api_authentication_failures_are_recorded_with_source(pki, installation):
    with TestClient(create_app(pki), base_url="https://testserver") as client:
        response = client.get(
            "/api/v1/certificates",
            headers={"Authorization": "Bearer otw_0123456789abcdef_" + "x" * 43, "X-Request-ID": "probe-42"},
        )
        assert response.status_code == 401
        token = (installation / "admin.token").read_text().strip()
        page = client.get(
            "/api/v1/audit", params={"type": "auth.failed"}, headers={"Authorization": f"Bearer {token}"}
        ).json()
    (failure,) = page["items"]
    assert failure["subject"] == "token:0123456789abcdef"
    assert failure["outcome"] == "failure"
    assert failure["source"] == "testclient"
    assert failure["request_id"] == "probe-42"
    assert failure["component"] == "api"


def test_repeated_authentication_failures_are_aggregated_per_source(pki):
    """The first failure of a source is a row of its own; the rest until the next flush one row with
    the count; after the flush, the next failure is a row of its own again."""
    sources = {"192.0.2.1": 5, "192.0.2.2": 1, "192.0.2.3": 3}
    for source, n in sources.items():
        for _ in range(n):
            with pytest.raises(AuthenticationError):
                pki.tokens.authenticate("wrong", Actor(component="api", identity="anonymous", source=source))
    assert [r.event.source for r in events(pki, EventType.AUTH_FAILED)] == list(sources)
    assert pki.audit.flush_failures() == 4 + 2
    aggregates = [r.event for r in events(pki, EventType.AUTH_FAILED)][len(sources) :]
    assert [(e.source, e.details["failures"], e.subject) for e in aggregates] == [
        ("192.0.2.1", "4", "(repeated failures)"),
        ("192.0.2.3", "2", "(repeated failures)"),
    ]
    assert all(e.details["first"] <= e.details["last"] for e in aggregates)
    assert pki.audit.flush_failures() == 0  # nothing counted since
    with pytest.raises(AuthenticationError):
        pki.tokens.authenticate("wrong", Actor(component="api", identity="anonymous", source="192.0.2.1"))
    assert len(events(pki, EventType.AUTH_FAILED)) == len(sources) + 2 + 1
    assert pki.audit.verify().check.ok


def test_api_listing_filters_and_verify(pki, installation):
    token = (installation / "admin.token").read_text().strip()
    with TestClient(create_app(pki), base_url="https://testserver") as client:
        client.headers["Authorization"] = f"Bearer {token}"
        serial = client.post(
            "/api/v1/certificates",
            json={"csr": build_csr(make_key(), cn="op").decode(), "profile": "tls-client"},
        ).json()["serial"]
        by_subject = client.get("/api/v1/audit", params={"subject": serial}).json()
        assert [i["type"] for i in by_subject["items"]] == ["cert.issued"]
        assert by_subject["items"][0]["details"]["actor"].startswith("token:")
        recent = client.get("/api/v1/audit", params={"since": "1h", "outcome": "success", "limit": 2}).json()
        assert len(recent["items"]) == 2
        assert recent["total"] > 2
        assert client.get("/api/v1/audit", params={"until": "2000-01-01T00:00:00Z"}).json()["total"] == 0
        assert client.get("/api/v1/audit", params={"type": "nope"}).status_code == 400
        assert client.get("/api/v1/audit", params={"since": "yesterday"}).status_code == 400
        verdict = client.get("/api/v1/audit/verify").json()
        assert verdict["ok"] is True
        assert verdict["records"] == verdict["head_sequence"]


# --- tampering ------------------------------------------------------------------------------------


def _tamper(pki, how: str) -> int:
    """Apply one kind of tampering directly in the database; returns the sequence it should be found at."""
    for i in range(3):
        pki.issuance.issue(build_csr(make_key(), cn=f"t{i}"), profile="tls-client", actor=ACTOR)
    pki.audit.sign_head()
    with pki.stores.database.engine.begin() as conn:
        rows = conn.execute(select(audit_events).order_by(audit_events.c.sequence)).all()
        victim = rows[len(rows) // 2]
        if how == "edit":
            conn.execute(
                update(audit_events)
                .where(audit_events.c.sequence == victim.sequence)
                .values(subject="someone-else")
            )
            return victim.sequence
        if how == "edit-details":
            conn.execute(
                update(audit_events)
                .where(audit_events.c.sequence == victim.sequence)
                .values(details=json.dumps({"actor": "nobody"}))
            )
            return victim.sequence
        if how == "delete":
            conn.execute(delete(audit_events).where(audit_events.c.sequence == victim.sequence))
            return victim.sequence
        if how == "reorder":
            a, b = rows[2], rows[3]
            for row, target in ((a, -1), (b, a.sequence), (a, b.sequence)):
                source = row.sequence if target != a.sequence or row is b else -1
                conn.execute(
                    update(audit_events).where(audit_events.c.sequence == source).values(sequence=target)
                )
            return a.sequence
        if how == "insert":
            forged = dict(victim._mapping)
            conn.execute(
                update(audit_events)
                .where(audit_events.c.sequence > victim.sequence)
                .values(sequence=audit_events.c.sequence + 1000)
            )
            forged["sequence"] = victim.sequence + 1
            forged["subject"] = "forged"
            conn.execute(insert(audit_events).values(**forged))
            return victim.sequence + 1
        if how == "truncate":
            last = rows[-1].sequence
            conn.execute(delete(audit_events).where(audit_events.c.sequence == last))
            return last
        if how == "head-signature":
            head = conn.execute(select(audit_heads).order_by(audit_heads.c.id.desc())).first()
            conn.execute(
                update(audit_heads)
                .where(audit_heads.c.id == head.id)
                .values(signature=bytes(reversed(head.signature)))
            )
            return head.sequence
        if how == "unknown-type":
            conn.execute(
                update(audit_events)
                .where(audit_events.c.sequence == victim.sequence)
                .values(type="cert.forgotten")
            )
            return victim.sequence
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    ["edit", "edit-details", "delete", "reorder", "insert", "truncate", "head-signature", "unknown-type"],
)
def test_tampering_is_detected_and_the_first_bad_record_named(pki, how):
    assert pki.audit.verify().check.ok
    expected = _tamper(pki, how)
    check = pki.audit.verify().check
    assert not check.ok
    assert check.first_bad_sequence == expected, check.problem
    assert check.problem


def test_cli_verify_exits_non_zero_on_tampering(pki, installation, database_url):
    runner = CliRunner()
    args = ["--data", str(installation)] + (["--db", database_url] if database_url else [])
    ok = runner.invoke(cli, ["audit", "verify", "--json", *args])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["ok"] is True
    sequence = _tamper(pki, "edit")
    broken = runner.invoke(cli, ["audit", "verify", "--json", *args])
    assert broken.exit_code == 1
    assert json.loads(broken.output)["first_bad_sequence"] == sequence


def test_exports(pki, installation, database_url, tmp_path):
    pki.issuance.issue(build_csr(make_key(), cn='op "quoted" ]'), profile="tls-client", actor=ACTOR)
    runner = CliRunner()
    args = ["--data", str(installation)] + (["--db", database_url] if database_url else [])
    out = tmp_path / "audit.jsonl"
    assert runner.invoke(cli, ["audit", "export", "--out", str(out), *args]).exit_code == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["sequence"] for line in lines] == list(range(1, len(lines) + 1))
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", line["time"]) for line in lines)
    syslog = runner.invoke(cli, ["audit", "export", "--format", "syslog", *args]).output.splitlines()
    assert len(syslog) == len(lines)
    # RFC 5424: <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD-ID params] MSG
    pattern = re.compile(
        r'^<(\d{1,3})>1 \S+Z \S+ otward-\w+ \S+ \S+ \[otward@32473( [A-Za-z_]+="(?:[^"\\\]]|\\.)*")+\] .+$'
    )
    for line in syslog:
        assert pattern.match(line), line
    issued = next(r for r in events(pki, EventType.CERT_ISSUED) if "quoted" in r.event.details["dn"])
    line = to_syslog(issued)
    assert pattern.match(line)
    assert ' \\]"' in line  # ']' inside a parameter value is escaped (RFC 5424 6.3.3)
