"""The audit trail on SQLite and PostgreSQL: what is recorded, and that tampering is caught."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from sqlalchemy import delete, insert, select, update
from typer.testing import CliRunner

from otward.adapters.db.certificates import insert_certificates
from otward.adapters.db.schema import audit_events, audit_heads, authorities, certificates, ledger_state
from otward.cli.app import app as cli
from otward.config import load_settings
from otward.core.audit import GENESIS_HASH, EventType, Outcome, chain_hash, head_bytes
from otward.core.issuance import build_ca_certificate, build_signer_certificate, service_subject
from otward.core.keys import sign_data
from otward.core.records import CertificateKind, certificate_record, format_serial
from otward.core.syslog import to_syslog
from otward.errors import AuthenticationError, IntegrityError
from otward.http.app import create_app
from otward.services.audit import Actor
from otward.services.bootstrap import initialize
from otward.services.pki import Pki
from tests.conftest import build_csr, free_port, make_key, start_server, stop_server

AUDIT_SIGNING_OID = x509.ObjectIdentifier("1.3.6.1.4.1.32473.6.2")  # id-kp-otwardAuditSigning

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


def test_a_stale_decision_stores_no_head(pki):
    """The store adds a head only over the head the signer decided on (compare and set under the
    ledger lock): a worker that decided before another stored its head adds nothing."""
    pki.issuance.issue(build_csr(make_key(), cn="cas-1"), profile="tls-client", actor=ACTOR)
    seen = pki.stores.audit.latest_audit_head()
    assert pki.audit.sign_head(force=True) is not None
    stale = dataclasses.replace(pki.stores.audit.latest_audit_head(), signature=b"other")
    count = len(pki.stores.audit.audit_heads())
    assert pki.stores.audit.add_audit_head(stale, after=seen) is False
    assert len(pki.stores.audit.audit_heads()) == count


def test_two_workers_signing_at_once_store_one_head_per_decision(pki, installation, database_url):
    """Two processes' schedules fire together (two service workers): each head the trail holds is
    over a different stored head, never two heads decided on the same one."""
    import threading

    other = Pki.open(load_settings(installation, database_url=database_url))
    try:
        before = len(pki.stores.audit.audit_heads())
        signed: list[object] = []
        for round_ in range(8):
            pki.issuance.issue(build_csr(make_key(), cn=f"race-{round_}"), profile="tls-client", actor=ACTOR)
            start = threading.Barrier(2)

            def sign(service, start=start) -> None:  # type: ignore[no-untyped-def]
                start.wait()
                signed.append(service.sign_head())

            threads = [threading.Thread(target=sign, args=(p.audit,)) for p in (pki, other)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        heads = pki.stores.audit.audit_heads()[before:]
        assert len(heads) == 8 == len([h for h in signed if h is not None])
        assert len({h.sequence for h in heads}) == 8
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
        assert by_subject["items"][0]["details"]["actor"] == "admin:admin"  # the init token's account
        assert by_subject["items"][0]["details"]["credential"].startswith("token:")
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


# --- rewriting the trail with database access but without the audit key ---------------------------
# Each attack is what someone who can write the database (but not the data directory's root.pem, and
# without the audit signer's key) can do with otward's own chain_hash. Verification runs as the CLI
# does, in its own process.


def fill(pki, count: int) -> None:
    """``count`` more records, in one transaction."""
    pki.audit.record(
        *(
            pki.audit.event(ACTOR, EventType.AUTH_FAILED, f"token:{i:016x}", outcome=Outcome.FAILURE)
            for i in range(count)
        )
    )


def last_sequence(pki) -> int:
    return pki.stores.audit.audit_head()[0]


def rewrite(pki, sequence: int, subject: str = "rewritten") -> None:
    """Edit record ``sequence``, recompute every later hash with otward's ``chain_hash`` and set the
    ledger row to the new head."""
    records = list(pki.stores.audit.iter_audit())
    previous = records[sequence - 2].hash if sequence > 1 else GENESIS_HASH
    with pki.stores.database.engine.begin() as conn:
        for record in records[sequence - 1 :]:
            event = record.event
            if record.sequence == sequence:
                event = dataclasses.replace(event, subject=subject)
            current = chain_hash(previous, event)
            conn.execute(
                update(audit_events)
                .where(audit_events.c.sequence == record.sequence)
                .values(subject=event.subject, previous_hash=previous, hash=current)
            )
            previous = current
        conn.execute(update(ledger_state).values(audit_hash=previous))


def execute(pki, *statements) -> None:
    with pki.stores.database.engine.begin() as conn:
        for statement in statements:
            conn.execute(statement)


def verify_cli(installation, database_url, *options: str) -> tuple[int, dict]:
    """``otward audit verify --json`` as its own process: exit code and the report."""
    command = [sys.executable, "-m", "otward", "audit", "verify", "--json", "--data", str(installation)]
    command += ["--db", database_url] if database_url else []
    done = subprocess.run([*command, *options], capture_output=True, text=True, timeout=120, check=False)
    assert done.stdout.startswith("{"), done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout)


def forget_witness(installation) -> None:
    """As if the database were copied away from this data directory (or verified from another host):
    only the database's own evidence remains."""
    (installation / "audit-head.json").unlink(missing_ok=True)


def test_init_signs_a_head_over_everything_it_recorded(installation, database_url):
    code, report = verify_cli(installation, database_url)
    assert code == 0, report
    assert report["unsigned"] == 0
    assert report["status"] == "intact"
    assert report["signed_sequence"] == report["records"] == report["head_sequence"]


def test_a_rewritten_trail_without_its_heads_fails(pki, installation, database_url):
    """(a) Edit record 5, recompute every later hash, update the ledger row, delete the signed heads."""
    fill(pki, 60)
    pki.audit.sign_head()
    rewrite(pki, 5)
    execute(pki, delete(audit_heads))
    code, report = verify_cli(installation, database_url)
    assert code == 1, report
    assert report["status"] == "broken"
    assert "differ from the head this installation signed last (audit-head.json)" in report["problem"]
    forget_witness(installation)
    code, report = verify_cli(installation, database_url)
    assert code == 1, report
    assert report["first_bad_sequence"] == 1
    assert report["problem"] == f"{report['records']} records and no signed head: nothing proves them"


def test_a_rewritten_trail_under_its_heads_fails(pki, installation, database_url):
    """(b) The same, keeping the heads: the first head whose record changed names the span. (The
    chain check alone caught this one before, too.)"""
    first = pki.stores.audit.latest_audit_head().sequence  # init's head
    fill(pki, 60)
    pki.audit.sign_head()
    rewrite(pki, 5)
    forget_witness(installation)
    code, report = verify_cli(installation, database_url)
    assert code == 1, report
    assert report["status"] == "broken"
    assert report["first_bad_sequence"] == 1
    assert report["problem"].startswith(f"records 1 to {first} differ from the head signed at ")


def test_a_trail_cut_at_record_50_fails(pki, installation, database_url):
    """(c) ``DELETE FROM audit_events WHERE sequence > 50`` and the heads above it; the ledger row
    still says how long the trail was."""
    fill(pki, 300)
    pki.audit.sign_head()
    length = last_sequence(pki)
    execute(
        pki,
        delete(audit_events).where(audit_events.c.sequence > 50),
        delete(audit_heads).where(audit_heads.c.sequence > 50),
    )
    forget_witness(installation)
    code, report = verify_cli(installation, database_url)
    assert code == 1, report
    assert report["first_bad_sequence"] == 51
    assert report["problem"] == (
        f"the trail ends at record 50, but the ledger row (ledger_state) is at record {length}"
    )


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned-tail", "signed"])
def test_the_last_three_records_deleted_fails(pki, installation, database_url, signed):
    """(d) Delete the newest three records, whether a head covers them yet or not."""
    fill(pki, 20)
    pki.audit.sign_head()
    fill(pki, 3)
    if signed:
        pki.audit.sign_head()
    length = last_sequence(pki)
    execute(pki, delete(audit_events).where(audit_events.c.sequence > length - 3))
    forget_witness(installation)
    code, report = verify_cli(installation, database_url)
    assert code == 1, report
    assert report["first_bad_sequence"] == length - 2
    assert report["problem"].startswith(f"the trail ends at record {length - 3}, but ")


def _forge_head(pki, key, signer_serial: int) -> None:
    """Replace every head with one over the current (rewritten) end, signed by ``key``."""
    sequence, head_hash = pki.stores.audit.audit_head()
    signed_at = datetime.now(UTC)
    execute(
        pki,
        delete(audit_heads),
        insert(audit_heads).values(
            sequence=sequence,
            hash=head_hash,
            signed_at=signed_at,
            signature=sign_data(key, head_bytes(sequence, head_hash, signed_at)),
            signer_serial=format_serial(signer_serial),
        ),
    )


def test_a_head_signed_by_a_forged_signer_and_ca_fails(pki, installation, database_url):
    """(e) A self-made key, certified as an audit signer by a forged CA with the issuing CA's name
    that replaces the issuing CA's row, the signer's row among the certificates, and a new head."""
    fill(pki, 20)
    pki.audit.sign_head()
    rewrite(pki, 5)
    issuing = pki.authorities.get("issuing").info
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    forged_ca = build_ca_certificate(
        subject=issuing.certificate.subject,
        public_key=ca_key.public_key(),
        serial_number=x509.random_serial_number(),
        not_valid_before=now - timedelta(days=1),
        not_valid_after=now + timedelta(days=365),
        path_length=0,
        issuer=None,
    ).sign(ca_key, hashes.SHA256())
    forged_issuer = dataclasses.replace(issuing, certificate=forged_ca)
    signer_key = ec.generate_private_key(ec.SECP256R1())
    signer = build_signer_certificate(
        subject=service_subject(forged_issuer, "otward audit signer"),
        public_key=signer_key.public_key(),
        issuer=forged_issuer,
        serial_number=x509.random_serial_number(),
        not_valid_before=now - timedelta(days=1),
        not_valid_after=now + timedelta(days=365),
        extended_key_usage=(AUDIT_SIGNING_OID,),
    ).sign(ca_key, hashes.SHA256())
    record = certificate_record(
        signer, ca="issuing", profile="audit-signer", kind=CertificateKind.END_ENTITY, now=now
    )
    execute(
        pki,
        update(authorities)
        .where(authorities.c.name == "issuing")
        .values(certificate_der=forged_ca.public_bytes(serialization.Encoding.DER)),
    )
    with pki.stores.database.engine.begin() as conn:
        insert_certificates(conn, [record])
    _forge_head(pki, signer_key, signer.serial_number)
    forget_witness(installation)
    code, report = verify_cli(installation, database_url)
    assert code == 1, report
    assert report["first_bad_sequence"] == last_sequence(pki)
    assert "does not chain to the trust anchor" in report["problem"]


def test_a_head_signed_with_a_certificate_the_ca_issued_for_something_else_fails(
    pki, installation, database_url
):
    """(e) A real certificate of the issuing CA for a key the attacker chose (a client certificate,
    as a device gets by enrolling), relabelled as a signer in its row."""
    key = make_key()
    issued = pki.issuance.issue(build_csr(key, cn="otward audit signer"), profile="tls-client", actor=ACTOR)
    rewrite(pki, 5)
    execute(
        pki,
        update(certificates).where(certificates.c.serial == issued.serial).values(profile="audit-signer"),
    )
    _forge_head(pki, key, issued.certificate.serial_number)
    forget_witness(installation)
    code, report = verify_cli(installation, database_url)
    assert code == 1, report
    assert "is not an audit signer (id-kp-otwardAuditSigning missing)" in report["problem"]


def test_an_unsigned_tail_is_a_warning_until_it_is_too_old(pki, installation, database_url):
    """(f) Records after the newest head: exit 0 with their count while young, 1 once older than
    allowed (here: any age at all)."""
    signed = last_sequence(pki)
    fill(pki, 3)
    code, report = verify_cli(installation, database_url)
    assert code == 0, report
    assert report["ok"] is True
    assert report["status"] == "unsigned-tail"
    assert (report["signed_sequence"], report["unsigned"]) == (signed, 3)
    assert report["unsigned_seconds"] >= 0
    assert report["max_unsigned_seconds"] == 300
    code, report = verify_cli(installation, database_url, "--max-unsigned-seconds", "0")
    assert code == 1, report
    assert report["status"] == "broken"
    assert report["first_bad_sequence"] == signed + 1
    assert report["problem"].startswith(f"3 records after record {signed} are unsigned since ")


def test_a_trail_cut_back_to_an_earlier_head_is_caught_by_the_installations_witness(
    pki, installation, database_url
):
    """Cut the trail back to an earlier signed head, with its heads and the ledger row: the chain and
    the heads agree, but this installation signed further (DATA/audit-head.json). The signer refuses
    to go on from there until an operator accepts the rollback, which the trail then records."""
    fill(pki, 10)
    earlier = pki.audit.sign_head()
    fill(pki, 10)
    pki.audit.sign_head()
    execute(
        pki,
        delete(audit_events).where(audit_events.c.sequence > earlier.sequence),
        delete(audit_heads).where(audit_heads.c.sequence > earlier.sequence),
        update(ledger_state).values(audit_sequence=earlier.sequence, audit_hash=earlier.hash),
    )
    code, report = verify_cli(installation, database_url)
    assert code == 1, report
    assert report["first_bad_sequence"] == earlier.sequence + 1
    assert "the head this installation signed last (audit-head.json)" in report["problem"]
    other = Pki.open(load_settings(installation, database_url=database_url))
    try:
        fill(other, 1)
        with pytest.raises(IntegrityError, match="audit head not signed: the trail ends at record"):
            other.audit.sign_head()
    finally:
        other.close()  # logs the refusal; the command's own work stays
    runner = CliRunner()
    args = ["--data", str(installation)] + (["--db", database_url] if database_url else [])
    accepted = runner.invoke(cli, ["audit", "sign", "--accept-rollback", "--json", *args])
    assert accepted.exit_code == 0, accepted.output
    code, report = verify_cli(installation, database_url)
    assert code == 0, report
    assert report["status"] == "intact"
    (acknowledged,) = events(pki, EventType.INTEGRITY_FAILED)
    assert acknowledged.event.details["acknowledged"] == "rollback"
    assert acknowledged.event.reason.startswith("the trail ends at record")


def test_the_trust_anchor_comes_from_outside_the_database(pki, installation, database_url, tmp_path):
    other_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    other_root = build_ca_certificate(
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "another installation")]),
        public_key=other_key.public_key(),
        serial_number=x509.random_serial_number(),
        not_valid_before=now - timedelta(days=1),
        not_valid_after=now + timedelta(days=30),
        path_length=None,
        issuer=None,
    ).sign(other_key, hashes.SHA256())
    other = tmp_path / "other-root.pem"
    other.write_bytes(other_root.public_bytes(serialization.Encoding.PEM))
    code, report = verify_cli(installation, database_url, "--trust", str(other))
    assert code == 1, report
    assert "does not chain to the trust anchor" in report["problem"]
    code, report = verify_cli(installation, database_url, "--trust", str(installation / "root.pem"))
    assert code == 0, report
    (installation / "root.pem").unlink()
    command = [sys.executable, "-m", "otward", "audit", "verify", "--data", str(installation)]
    command += ["--db", database_url] if database_url else []
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert "no trust anchor for the audit trail" in done.stdout + done.stderr


def test_api_verify_reports_the_unsigned_tail(pki, installation):
    token = (installation / "admin.token").read_text().strip()
    fill(pki, 2)
    with TestClient(create_app(pki), base_url="https://testserver") as client:
        client.headers["Authorization"] = f"Bearer {token}"
        verdict = client.get("/api/v1/audit/verify").json()
        assert (verdict["ok"], verdict["status"], verdict["unsigned"]) == (True, "unsigned-tail", 2)
        strict = client.get("/api/v1/audit/verify", params={"max_unsigned_seconds": 0}).json()
        assert (strict["ok"], strict["status"]) == (False, "broken")
        assert strict["first_bad_sequence"] == verdict["signed_sequence"] + 1


def test_the_service_signs_on_its_schedule_and_as_a_heartbeat(tmp_path):
    data = tmp_path / "served"
    initialize(data, organization="ACME Chemicals", public_url=f"http://127.0.0.1:{free_port()}")
    config = data / "config.toml"
    config.write_text(
        config.read_text().replace(
            "[audit]\n", "[audit]\nsign_seconds = 1\nheartbeat_seconds = 2\nmax_unsigned_seconds = 10\n"
        )
    )
    server = start_server(data)
    try:
        with server.client() as http:
            issued = http.post(
                "/api/v1/certificates",
                json={"csr": build_csr(make_key(), cn="op").decode(), "profile": "tls-client"},
            )
            assert issued.status_code == 201
            (event,) = http.get("/api/v1/audit", params={"subject": issued.json()["serial"]}).json()["items"]

            def verdict() -> dict:
                return http.get("/api/v1/audit/verify").json()

            covered = wait_until(lambda: (v := verdict())["signed_sequence"] >= event["sequence"] and v)
            assert covered["ok"]
            # nothing new: a later signature over the same head (the heartbeat)
            wait_until(
                lambda: (
                    (v := verdict())["signed_sequence"] == covered["signed_sequence"]
                    and v["signed_at"] > covered["signed_at"]
                )
            )
    finally:
        stop_server(server)


def wait_until(condition, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError("condition not reached")


def test_a_legacy_audit_signer_is_replaced_and_its_heads_still_verify(pki, monkeypatch):
    """Audit signers made before id-kp-otwardAuditSigning carry no EKU: their heads verify, and the
    next signature rotates to a signer that has it."""
    from otward.services import signers as signers_module

    monkeypatch.setitem(signers_module._EXTENDED_KEY_USAGE, "audit", ())  # as an older otward made it
    legacy = pki.signers.rotate("audit").certificate
    with pytest.raises(x509.ExtensionNotFound):
        legacy.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert pki.audit.sign_head().signer_serial == legacy.serial_number
    monkeypatch.undo()
    fill(pki, 1)
    head = pki.audit.sign_head()
    current = pki.signers.current("audit").certificate
    assert current.serial_number != legacy.serial_number
    assert head.signer_serial == current.serial_number
    usage = current.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [AUDIT_SIGNING_OID]
    check = pki.audit.verify().check
    assert check.status.value == "intact", check.problem
    signers = [h.signer_serial for h in pki.stores.audit.audit_heads()]
    assert signers[-2:] == [legacy.serial_number, current.serial_number]
    rotated = events(pki, EventType.SIGNER_ROTATED)
    assert rotated[-1].event.details["previous_serial"] == format_serial(legacy.serial_number)


def test_the_unsigned_limit_must_leave_room_for_the_schedule():
    from pydantic import ValidationError

    from otward.config import AuditSettings

    assert AuditSettings().max_unsigned_seconds == 300
    with pytest.raises(ValidationError, match=r"audit.max_unsigned_seconds must be at least twice"):
        AuditSettings(heartbeat_seconds=200)


@pytest.mark.parametrize("garbage", ["head-serial", "signer-der", "ca-der"])
def test_garbage_in_heads_and_certificates_is_reported_not_a_traceback(
    pki, installation, database_url, garbage
):
    head = pki.stores.audit.latest_audit_head()
    if garbage == "head-serial":
        statement = update(audit_heads).values(signer_serial="not-hex")
        expected = "a signed head is unreadable (altered?)"
    elif garbage == "signer-der":
        statement = (
            update(certificates)
            .where(certificates.c.serial == format_serial(head.signer_serial))
            .values(der=b"garbage")
        )
        expected = "is not in the database, or unreadable"
    else:
        statement = update(authorities).values(certificate_der=b"garbage")
        expected = "does not chain to the trust anchor"
    execute(pki, statement)
    command = [sys.executable, "-m", "otward", "audit", "verify", "--data", str(installation)]
    command += ["--db", database_url] if database_url else []
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr
    assert expected in " ".join(done.stdout.split()), done.stdout
