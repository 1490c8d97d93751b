"""Notifications end to end: a webhook receiver (a small HTTP server on loopback that checks the
HMAC the way docs/notifications.md tells a receiver to) and an SMTP server (aiosmtpd), both
started here; the checks run against a real installation on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import text
from typer.testing import CliRunner

from otward.cli.app import app
from otward.config import load_settings
from otward.core.audit import EventType
from otward.errors import AuthenticationError, ConfigError
from otward.services.notifications import Notifier, open_channels
from otward.services.pki import Pki
from tests.conftest import Clock, build_csr, free_port, make_key, write_key

pytestmark = pytest.mark.integration

SECRET = b"webhook-secret-for-tests-0123456789"
runner = CliRunner()


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    verified: bool
    status: int

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers each POST with the next of ``statuses`` (200 when none is left), after verifying it."""

    url: str
    deliveries: list[Delivery] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0  # seconds each answer takes

    def accepted(self) -> list[Delivery]:
        return [d for d in self.deliveries if d.status == 200]


def _verify(headers: dict[str, str], body: bytes) -> bool:
    """The receiver's side, written from the documentation, not from otward's code."""
    timestamp = headers.get("x-otward-timestamp", "")
    signature = headers.get("x-otward-signature", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 300:
        return False
    expected = "sha256=" + hmac.new(SECRET, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            headers = {k.lower(): v for k, v in self.headers.items()}
            verified = _verify(headers, body)
            status = state.statuses.pop(0) if state.statuses else 200
            time.sleep(state.delay)
            if not verified:
                status = 401
            state.deliveries.append(Delivery(headers, body, verified, status))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/otward?tag=plant"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[int, _Mailbox]]:
    mailbox = _Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.port, mailbox
    finally:
        controller.stop()


def _secret_file(directory: Path, mode: int = 0o600) -> Path:
    path = directory / "webhook.secret"
    path.write_bytes(SECRET + b"\n")
    path.chmod(mode)
    return path


def _configure(
    installation: Path,
    *,
    webhook: str | None = None,
    events: list[str] | None = None,
    smtp_port: int | None = None,
    notify: str = "",
    secret_mode: int = 0o600,
) -> None:
    lines = ["", "[notify]", 'interval = "1m"', notify]
    if webhook is not None:
        secret = _secret_file(installation, secret_mode)
        lines += [
            "[[notify.webhook]]",
            f"url = {json.dumps(webhook)}",
            f"secret_file = {json.dumps(str(secret))}",
        ]
        if events is not None:
            lines.append(f"events = {json.dumps(events)}")
    if smtp_port is not None:
        lines += [
            "[notify.smtp]",
            'host = "127.0.0.1"',
            f"port = {smtp_port}",
            'from = "otward@plant.example"',
            'to = ["ops@plant.example", "pki@plant.example"]',
        ]
        if events is not None:
            lines.append(f"events = {json.dumps(events)}")
    with (installation / "config.toml").open("a") as handle:
        handle.write("\n".join(lines) + "\n")


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _open(installation: Path, database_url: str | None, clock: Clock) -> Pki:
    return Pki.open(load_settings(installation, database_url=database_url), clock=clock)


def _audit_types(pki: Pki, *types: EventType) -> list[Any]:
    return [r.event for r in pki.stores.audit.iter_audit() if r.event.type in types]


# --- each event kind ---------------------------------------------------------------------------


def test_expiring_certificates_go_out_per_ca_and_owner_to_webhook_and_mail(
    installation, database_url, receiver, smtp, clock
):
    port, mailbox = smtp
    _configure(installation, webhook=receiver.url, events=["cert.expiring"], smtp_port=port)
    pki = _open(installation, database_url, clock)
    try:
        pki.owners.create("line-a")
        for batch in pki.provisioning.provision("line-a", ["plc-1", "plc-2"]):
            assert len(batch) == 2
        loose = pki.issuance.issue(
            build_csr(make_key(), cn="historian"), profile="tls-client", validity_days=20
        )
        far = pki.issuance.issue(build_csr(make_key(), cn="far"), profile="tls-client", validity_days=200)
        horizon = clock() + timedelta(days=4000)
        devices = [c for c in pki.stores.notifications.expiring_certificates(clock(), horizon) if c.owner]
        assert len(devices) == 2
        # The two devices within 30 days of expiry; the 20- and 200-day certificates expired by then.
        clock.now = max(c.not_valid_after for c in devices) - timedelta(days=10)
        report = Notifier.for_pki(pki).check()
    finally:
        pki.close()
    # One message per CA and owner: line-a's devices, and the service's own TLS certificate (no owner).
    assert sorted(e.subject for e in report.queued) == 2 * ["cert.expiring/issuing/"] + 2 * [
        "cert.expiring/issuing/line-a"
    ]
    channels = {e.channel for e in report.queued}
    assert channels == {f"smtp:127.0.0.1:{port}", "webhook:" + receiver.url.split("?")[0]}
    assert (report.drained.sent, report.drained.failed) == (4, 0)
    payloads = {d.payload["details"]["owner"]: d.payload for d in receiver.accepted()}
    assert len(receiver.deliveries) == 2
    assert all(d.verified for d in receiver.deliveries)
    assert set(payloads) == {"line-a", None}
    message = payloads["line-a"]
    assert message["type"] == "cert.expiring"
    assert message["installation"] == "ACME Chemicals"
    names = [c["subject"].split("CN=")[-1].split(",")[0] for c in message["details"]["certificates"]]
    assert sorted(names) == ["plc-1", "plc-2"]
    assert [c["subject"] for c in payloads[None]["details"]["certificates"]] == [
        "CN=localhost,O=ACME Chemicals"
    ]
    assert loose.serial not in json.dumps(payloads)
    assert far.serial not in json.dumps(payloads)
    by_id = {d.payload["id"]: d for d in receiver.deliveries}
    assert by_id[message["id"]].headers["idempotency-key"] == message["id"]
    assert len(mailbox.messages) == 2
    mails = {
        message_from_bytes(raw)["Message-ID"]: (sender, recipients, message_from_bytes(raw))
        for sender, recipients, raw in mailbox.messages
    }
    sender, recipients, mail = mails[f"<{message['id']}@plant.example>"]
    assert sender == "otward@plant.example"
    assert recipients == ["ops@plant.example", "pki@plant.example"]
    assert "cert.expiring" in mail["Subject"]
    assert "line-a" in mail["Subject"]
    assert "plc-1" in mail.get_payload()


def _only(receiver: Receiver, event: str) -> list[dict[str, Any]]:
    return [d.payload for d in receiver.accepted() if d.payload["type"] == event]


def test_a_ca_near_expiry_is_announced_at_90_30_and_7_days(installation, database_url, receiver, clock):
    _configure(installation, webhook=receiver.url, events=["ca.expiring"])
    pki = _open(installation, database_url, clock)
    try:
        issuing = pki.authorities.get("issuing").certificate.not_valid_after_utc
        notifier = Notifier.for_pki(pki)
        assert notifier.check().queued == []  # years away
        clock.now = issuing - timedelta(days=89)
        assert len(notifier.check().queued) == 1
        clock.now = issuing - timedelta(days=60)
        assert notifier.check().queued == []  # nothing new since 90 days
        clock.now = issuing - timedelta(days=29)
        assert len(notifier.check().queued) == 1
    finally:
        pki.close()
    messages = _only(receiver, "ca.expiring")
    assert [m["details"]["ca"] for m in messages] == ["issuing", "issuing"]
    assert [m["details"]["days_left"] for m in messages] == [89, 29]
    assert "renew or roll it over" in messages[0]["summary"]


def test_a_crl_not_refreshed_is_announced_once(installation, database_url, receiver, clock):
    _configure(installation, webhook=receiver.url, events=["crl.failed"])
    pki = _open(installation, database_url, clock)
    try:
        notifier = Notifier.for_pki(pki)
        assert notifier.check().queued == []  # init published current CRLs
        clock.advance(timedelta(days=8))  # past nextUpdate: the refresh never ran
        assert len(notifier.check().queued) == 2  # root and issuing
        assert notifier.check().queued == []
        pki.revocation.refresh_all()  # fixed: the conditions clear ...
        assert notifier.check().queued == []
        clock.advance(timedelta(days=8))  # ... and a new failure is announced again
        assert len(notifier.check().queued) == 2
    finally:
        pki.close()
    messages = _only(receiver, "crl.failed")
    assert len(messages) == 4
    assert {m["details"]["problem"] for m in messages} == {"expired"}
    assert {m["details"]["ca"] for m in messages} == {"root", "issuing"}


def test_a_tampered_audit_trail_is_announced(installation, database_url, receiver, clock):
    _configure(installation, webhook=receiver.url, events=["audit.failed"])
    pki = _open(installation, database_url, clock)
    try:
        notifier = Notifier.for_pki(pki)
        assert notifier.check().queued == []
        with pki.stores.database.engine.begin() as conn:
            conn.execute(text("UPDATE audit_events SET subject = 'forged' WHERE sequence = 2"))
        assert len(notifier.check().queued) == 1
        assert notifier.check().queued == []
    finally:
        pki.close()
    (message,) = _only(receiver, "audit.failed")
    assert message["details"]["status"] == "broken"
    assert message["details"]["first_bad_sequence"] == 2
    assert message["summary"].startswith("the audit chain does not verify")


def test_a_ca_key_that_cannot_sign_is_announced(installation, database_url, receiver, clock):
    _configure(installation, webhook=receiver.url, events=["key.failed"])
    pki = _open(installation, database_url, clock)
    try:
        assert Notifier.for_pki(pki).check().queued == []
        key_ref = pki.authorities.record("issuing").key_ref
    finally:
        pki.close()
    key_file = installation / key_ref.removeprefix("file:")
    assert key_file.is_file(), key_ref
    key_file.write_bytes(
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nbroken\n-----END ENCRYPTED PRIVATE KEY-----\n"
    )
    pki = _open(installation, database_url, clock)  # a new process: the key is read from the file again
    try:
        report = Notifier.for_pki(pki).check()
    finally:
        pki.close()
    assert [e.subject for e in report.queued] == ["key.failed/ca/issuing"]
    (message,) = _only(receiver, "key.failed")
    assert message["summary"].startswith("the keys of CA 'issuing' cannot sign:")
    assert "broken" not in json.dumps(message)  # the error names the problem, never key material


def test_an_enrollment_flood_is_announced_once_per_window(installation, database_url, receiver, clock):
    _configure(
        installation, webhook=receiver.url, events=["enroll.flood"], notify="enroll_refused_threshold = 3"
    )
    pki = _open(installation, database_url, clock)
    try:
        notifier = Notifier.for_pki(pki)
        for attempt in range(4):
            with pytest.raises(AuthenticationError):
                pki.enrollment_tokens.authenticate(f"not-a-token-{attempt}", actor=notifier_actor())
            queued = notifier.check().queued
            assert len(queued) == (1 if attempt == 3 else 0), attempt
        assert notifier.check().queued == []  # the same window
    finally:
        pki.close()
    (message,) = _only(receiver, "enroll.flood")
    assert message["details"] == {"outcome": "refused", "count": 4, "threshold": 3, "window_minutes": 15}


def notifier_actor():
    from otward.services.audit import Actor

    return Actor(component="est", identity="anonymous", source="192.0.2.9")


# --- delivery: retries, deduplication, crashes -------------------------------------------------


def _expiring(pki: Pki, clock: Clock, cn: str = "historian") -> str:
    serial = pki.issuance.issue(build_csr(make_key(), cn=cn), profile="tls-client", validity_days=20).serial
    return serial


def test_a_webhook_that_fails_twice_gets_the_same_message_a_third_time(
    installation, database_url, receiver, clock
):
    receiver.statuses = [500, 500]
    _configure(installation, webhook=receiver.url, events=["cert.expiring"])
    pki = _open(installation, database_url, clock)
    try:
        _expiring(pki, clock)
        notifier = Notifier(pki, open_channels(pki.settings.notify), jitter=lambda: 0.0)
        first = notifier.check()
        assert (len(first.queued), first.drained.retrying) == (1, 1)
        assert notifier.drain().retrying == 0  # not due yet: nothing is sent before the backoff
        clock.advance(timedelta(seconds=15))  # base 30 s, jitter 0: half of it
        assert notifier.drain().retrying == 1
        clock.advance(timedelta(seconds=29))
        assert notifier.drain().sent == 0  # the second delay is 30 s
        clock.advance(timedelta(seconds=1))
        assert notifier.drain().sent == 1
        (row,) = notifier.outbox()
        sent = _audit_types(pki, EventType.NOTIFY_SENT)
    finally:
        pki.close()
    assert [d.status for d in receiver.deliveries] == [500, 500, 200]
    assert len({d.body for d in receiver.deliveries}) == 1  # byte for byte the same message
    assert len({d.headers["idempotency-key"] for d in receiver.deliveries}) == 1
    assert (row.status, row.attempts, row.last_error) == ("sent", 3, None)
    assert [e.subject for e in sent] == [row.channel]
    assert sent[0].details["notification"] == row.notification_id
    assert sent[0].details["attempts"] == "3"


def test_a_message_is_given_up_after_max_attempts_and_audited(installation, database_url, receiver, clock):
    receiver.statuses = [503] * 10
    _configure(installation, webhook=receiver.url, events=["cert.expiring"], notify="max_attempts = 2")
    pki = _open(installation, database_url, clock)
    try:
        _expiring(pki, clock)
        notifier = Notifier.for_pki(pki)
        assert notifier.check().drained.retrying == 1
        clock.advance(timedelta(hours=1))
        assert notifier.drain().failed == 1
        clock.advance(timedelta(hours=1))
        assert notifier.drain() == type(notifier.drain())()  # nothing left to send
        failed = _audit_types(pki, EventType.NOTIFY_FAILED)
    finally:
        pki.close()
    assert len(receiver.deliveries) == 2
    (event,) = failed
    assert event.outcome.value == "failure"
    assert event.reason.endswith("answered HTTP 503")
    assert "tag=plant" not in event.reason
    assert "tag=plant" not in event.subject
    result = runner.invoke(
        app,
        [
            "notify",
            "list",
            "--status",
            "failed",
            "--json",
            "--data",
            str(installation),
            *(["--db", database_url] if database_url else []),
        ],
    )
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert (row["status"], row["attempts"]) == ("failed", 2)
    assert row["last_error"].endswith("answered HTTP 503")


def test_the_same_condition_is_not_sent_again_on_the_next_run(installation, database_url, receiver, clock):
    _configure(installation, webhook=receiver.url, events=["cert.expiring"])
    pki = _open(installation, database_url, clock)
    try:
        _expiring(pki, clock, "one")
        notifier = Notifier.for_pki(pki)
        assert len(notifier.check().queued) == 1
        clock.advance(timedelta(minutes=15))
        assert notifier.check().queued == []
        _expiring(pki, clock, "two")  # the group changed: a new message listing both
        assert len(notifier.check().queued) == 1
        clock.advance(timedelta(days=14))  # both now within 7 days: each crosses its second mark
        assert len(notifier.check().queued) == 1
        assert notifier.check().queued == []
        assert len(notifier.outbox()) == 3
        clock.advance(timedelta(days=91))  # sent rows are kept 90 days
        assert notifier.check().queued == []
        assert notifier.outbox() == []
    finally:
        pki.close()
    messages = _only(receiver, "cert.expiring")
    assert [len(m["details"]["certificates"]) for m in messages] == [1, 2, 2]
    assert len({m["id"] for m in messages}) == 3


def test_a_crash_between_deciding_and_sending_still_sends_once(installation, database_url, receiver, clock):
    _configure(installation, webhook=receiver.url, events=["cert.expiring"])
    pki = _open(installation, database_url, clock)
    try:
        _expiring(pki, clock)
        queued = Notifier.for_pki(pki).decide()  # committed to the outbox; the process then dies
        assert len(queued) == 1
        assert receiver.deliveries == []
    finally:
        pki.stores.close()  # no orderly close: nothing else runs
    pki = _open(installation, database_url, clock)
    try:
        report = Notifier.for_pki(pki).check()
    finally:
        pki.close()
    assert report.queued == []  # already decided: not decided again
    assert report.drained.sent == 1
    (delivery,) = receiver.deliveries
    assert delivery.payload["id"] == queued[0].notification_id


def test_a_sender_that_died_holding_a_claim_is_replaced_after_the_lease(
    installation, database_url, receiver, clock
):
    _configure(installation, webhook=receiver.url, events=["cert.expiring"])
    pki = _open(installation, database_url, clock)
    try:
        _expiring(pki, clock)
        notifier = Notifier.for_pki(pki)
        notifier.decide()
        claimed = pki.stores.notifications.claim_due(clock(), clock() + timedelta(minutes=10))
        assert len(claimed) == 1  # ... and the sender died before sending
        assert notifier.drain().sent == 0  # still claimed
        clock.advance(timedelta(minutes=11))
        assert notifier.drain().sent == 1
    finally:
        pki.close()
    assert len(receiver.deliveries) == 1


# --- configuration and the command line --------------------------------------------------------


def _cli(installation: Path, database_url: str | None, *args: str) -> Any:
    return runner.invoke(
        app, [*args, "--data", str(installation), *(["--db", database_url] if database_url else [])]
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://192.0.2.10/hook", "plain http:// is accepted only for a loopback address"),
        ("http://plant.example/hook", "plain http:// is accepted only for a loopback address"),
        ("ftp://127.0.0.1/hook", "must be an https:// URL"),
        ("https://user:pw@hooks.example/x", "must not hold a user name or password"),
    ],
    ids=["http-ip", "http-name", "ftp", "userinfo"],
)
def test_a_webhook_url_that_is_not_safe_is_a_config_error(data_dir, url, message):
    from otward.core.keys import KeyType
    from otward.services.bootstrap import initialize

    initialize(data_dir, key_type=KeyType.EC_P256, organization="ACME Chemicals")
    _configure(data_dir, webhook=url)
    with pytest.raises(ConfigError) as raised:
        load_settings(data_dir)
    assert "notify.webhook[0].url" in raised.value.message
    assert message in raised.value.message
    assert "user:pw" not in raised.value.message  # a password in a URL is never echoed


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('events = ["cert.expiring", "cert.exploded"]', "notify.webhook[0].events"),
    ],
)
def test_an_unknown_event_names_its_key(sqlite_pki, data_dir, receiver, extra, key):
    secret = _secret_file(data_dir)
    with (data_dir / "config.toml").open("a") as handle:
        handle.write(f'\n[[notify.webhook]]\nurl = "{receiver.url}"\nsecret_file = "{secret}"\n{extra}\n')
    with pytest.raises(ConfigError, match=r"notify\.webhook\[0\]\.events: .*unknown event 'cert\.exploded'"):
        load_settings(data_dir)


def test_a_secret_file_readable_by_others_is_refused(sqlite_pki, data_dir, receiver):
    _configure(data_dir, webhook=receiver.url, secret_mode=0o644)
    settings = load_settings(data_dir)  # other commands still work
    with pytest.raises(
        ConfigError, match=r"notify\.webhook\[0\]\.secret_file: .* has mode 0644; .*chmod 600"
    ):
        open_channels(settings.notify)
    result = _cli(data_dir, None, "notify", "test")
    assert result.exit_code == 1
    assert "mode 0644" in result.output
    assert receiver.deliveries == []
    os.chmod(data_dir / "webhook.secret", 0o600)
    assert _cli(data_dir, None, "notify", "test").exit_code == 0


def test_notify_test_reports_each_channel(installation, database_url, receiver, smtp):
    port, mailbox = smtp
    _configure(installation, webhook=receiver.url, smtp_port=port)
    result = _cli(installation, database_url, "notify", "test", "--json")
    assert result.exit_code == 0, result.output
    results = json.loads(result.output)
    assert [(r["channel"], r["ok"]) for r in results] == [
        ("webhook:" + receiver.url.split("?")[0], True),
        (f"smtp:127.0.0.1:{port}", True),
    ]
    (delivery,) = receiver.deliveries
    assert delivery.verified
    assert delivery.payload["type"] == "test"
    assert len(mailbox.messages) == 1
    receiver.statuses = [500]
    result = _cli(installation, database_url, "notify", "test")
    assert result.exit_code == 1
    assert "answered HTTP 500" in result.output
    assert f"smtp:127.0.0.1:{port}: ok" in result.output
    pki = Pki.open(load_settings(installation, database_url=database_url))
    try:
        events = _audit_types(pki, EventType.NOTIFY_SENT, EventType.NOTIFY_FAILED)
    finally:
        pki.close()
    assert [(e.type, e.details["event"]) for e in events] == [
        (EventType.NOTIFY_SENT, "test"),
        (EventType.NOTIFY_SENT, "test"),
        (EventType.NOTIFY_FAILED, "test"),
        (EventType.NOTIFY_SENT, "test"),
    ]
    assert all(e.details["actor"].startswith("local:") for e in events)
    assert SECRET.decode() not in json.dumps([e.to_dict() for e in events])


def test_notify_check_and_list_on_the_command_line(installation, database_url, receiver):
    _configure(installation, webhook=receiver.url, events=["cert.expiring"])
    pki = Pki.open(load_settings(installation, database_url=database_url))
    try:
        pki.issuance.issue(build_csr(make_key(), cn="historian"), profile="tls-client", validity_days=20)
    finally:
        pki.close()
    result = _cli(installation, database_url, "notify", "check")
    assert result.exit_code == 0, result.output
    assert "1 queued; sent 1, retrying 0, failed 0" in result.output
    assert (
        _cli(installation, database_url, "notify", "check")
        .output.strip()
        .endswith("0 queued; sent 0, retrying 0, failed 0")
    )
    listed = json.loads(_cli(installation, database_url, "notify", "list", "--json").output)
    assert [(r["event"], r["status"], r["attempts"]) for r in listed] == [("cert.expiring", "sent", 1)]
    table = _cli(installation, database_url, "notify", "list").output
    assert listed[0]["id"] in table
    assert table.rstrip().endswith("1 notification")


def test_commands_without_a_channel_say_how_to_configure_one(sqlite_pki, data_dir):
    result = _cli(data_dir, None, "notify", "check")
    assert result.exit_code == 1
    assert "no notification channel is configured" in result.output


# --- SMTP with STARTTLS and a login ------------------------------------------------------------


def _tls_files(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A CA file and a server context for 127.0.0.1 (certificate issued by that CA)."""
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail test CA")])
    now = datetime.now(UTC) - timedelta(minutes=1)
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.test")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "mail-ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain = directory / "mail-server.pem"
    chain.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file = write_key(directory / "mail-server.key", server_key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain, key_file)
    return ca_file, context


def test_mail_goes_over_starttls_with_a_login(installation, database_url, tmp_path):
    ca_file, server_context = _tls_files(tmp_path)
    logins: list[tuple[bytes, bytes, bool]] = []

    def authenticator(server, session, envelope, mechanism, credentials):
        logins.append((credentials.login, credentials.password, session.ssl is not None))
        # handled=False: aiosmtpd answers 535 itself when the credentials are refused
        return AuthResult(success=credentials.password == b"mail-password", handled=False)

    mailbox = _Mailbox()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=server_context,
        require_starttls=True,
        auth_required=True,
        authenticator=authenticator,
    )
    controller.start()
    password = tmp_path / "smtp.password"
    password.write_text("mail-password\n")
    password.chmod(0o600)
    try:
        with (installation / "config.toml").open("a") as handle:
            handle.write(
                "\n[notify.smtp]\n"
                f'host = "127.0.0.1"\nport = {controller.port}\n'
                'from = "otward@plant.example"\nto = ["ops@plant.example"]\n'
                f'username = "otward"\npassword_file = "{password}"\nca_file = "{ca_file}"\n'
            )
        result = _cli(installation, database_url, "notify", "test")
        assert result.exit_code == 0, result.output
        password.write_text("wrong\n")
        result = _cli(installation, database_url, "notify", "test")
        assert result.exit_code == 1
        assert "answered 535" in result.output
        assert "wrong" not in result.output
    finally:
        controller.stop()
    assert logins[0] == (b"otward", b"mail-password", True)
    assert {login[1:] for login in logins[1:]} == {(b"wrong", True)}  # smtplib tries PLAIN, then LOGIN
    assert len(mailbox.messages) == 1


def test_mail_to_a_server_whose_certificate_is_not_trusted_is_not_sent(installation, database_url, tmp_path):
    _, server_context = _tls_files(tmp_path)
    mailbox = _Mailbox()
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=free_port(), tls_context=server_context, require_starttls=True
    )
    controller.start()
    try:
        _configure(installation, smtp_port=controller.port)  # no ca_file: the system store
        result = _cli(installation, database_url, "notify", "test")
    finally:
        controller.stop()
    assert result.exit_code == 1
    assert "CERTIFICATE_VERIFY_FAILED" in result.output
    assert mailbox.messages == []


# --- several nodes, and the service ------------------------------------------------------------


@pytest.mark.postgres
def test_two_nodes_on_one_postgresql_send_each_message_once(data_dir, receiver, clock):
    from otward.core.keys import KeyType
    from otward.services.bootstrap import initialize
    from tests.conftest import _postgres_database

    database = _postgres_database()
    url = next(database)
    nodes: list[Pki] = []
    try:
        initialize(data_dir, key_type=KeyType.EC_P256, organization="ACME Chemicals", database_url=url)
        _configure(data_dir, webhook=receiver.url, events=["cert.expiring"])
        nodes = [_open(data_dir, url, clock) for _ in range(3)]
        for index in range(6):
            nodes[0].owners.create(f"line-{index}")
            for _ in nodes[0].provisioning.provision(f"line-{index}", [f"plc-{index}"]):
                pass
        clock.advance(timedelta(days=360))
        receiver.delay = 0.05
        notifiers = [Notifier.for_pki(node) for node in nodes]
        start = threading.Barrier(len(notifiers))
        reports: list[Any] = []

        def run(notifier: Notifier) -> None:
            start.wait()
            reports.append(notifier.check())

        threads = [threading.Thread(target=run, args=(n,)) for n in notifiers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        again = [n.check() for n in notifiers]
    finally:
        for node in nodes:
            node.close()
        database.close()
    assert len(reports) == 3
    assert sum(len(r.queued) for r in reports) == 7  # six owners and the service's own certificate
    assert sum(r.drained.sent for r in reports) == 7
    assert all(r.queued == [] and r.drained.sent == 0 for r in again)
    ids = [d.payload["id"] for d in receiver.deliveries]
    assert len(ids) == len(set(ids)) == 7


def test_the_service_sends_on_its_own_and_refuses_to_start_with_a_public_secret(tmp_path, receiver):
    from otward.services.bootstrap import initialize
    from tests.conftest import start_server, stop_server

    data_dir = tmp_path / "served"
    initialize(data_dir, organization="ACME Chemicals", public_url=f"http://127.0.0.1:{free_port()}")
    _configure(data_dir, webhook=receiver.url, events=["cert.expiring"], secret_mode=0o644)
    with pytest.raises(RuntimeError, match="has mode 0644"):
        start_server(data_dir)
    (data_dir / "webhook.secret").chmod(0o600)
    pki = Pki.open(load_settings(data_dir))
    try:
        serial = pki.issuance.issue(
            build_csr(make_key(), cn="historian"), profile="tls-client", validity_days=20
        ).serial
    finally:
        pki.close()
    server = start_server(data_dir)
    try:
        deadline = time.monotonic() + 30
        while not receiver.deliveries and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop_server(server)
    (delivery,) = receiver.deliveries
    assert delivery.verified
    assert delivery.payload["type"] == "cert.expiring"
    assert serial in [c["serial"] for c in delivery.payload["details"]["certificates"]]


def _https_receiver(context: ssl.SSLContext, status: int = 200) -> tuple[ThreadingHTTPServer, list[bytes]]:
    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(status)
            self.send_header("Location", "https://127.0.0.1:1/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, bodies


@pytest.mark.parametrize(
    ("trust", "status", "error"),
    [
        ("ca_file", 200, None),
        ("system", 200, "CERTIFICATE_VERIFY_FAILED"),
        ("ca_file", 302, "answered HTTP 302"),  # a redirect is not followed
    ],
    ids=["ca-file", "system-store", "redirect"],
)
def test_an_https_webhook_is_verified_against_its_ca_file(
    sqlite_pki, data_dir, tmp_path, trust, status, error
):
    ca_file, server_context = _tls_files(tmp_path)
    server, bodies = _https_receiver(server_context, status)
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}/hook"
        _configure(data_dir, webhook=url)
        if trust == "ca_file":
            with (data_dir / "config.toml").open("a") as handle:
                handle.write(f'ca_file = "{ca_file}"\n')
        result = _cli(data_dir, None, "notify", "test", "--json")
    finally:
        server.shutdown()
        server.server_close()
    (outcome,) = json.loads(result.output)
    assert outcome["ok"] is (error is None)
    assert result.exit_code == (0 if error is None else 1)
    if error is not None:
        assert error in outcome["error"]
    assert len(bodies) == (0 if trust == "system" else 1)


def test_a_check_that_cannot_run_keeps_what_it_announced(sqlite_pki, data_dir, receiver, clock, caplog):
    _configure(data_dir, webhook=receiver.url, events=["audit.failed", "crl.failed"])
    pki = _open(data_dir, None, clock)
    try:
        notifier = Notifier.for_pki(pki)
        with pki.stores.database.engine.begin() as conn:
            conn.execute(text("UPDATE audit_events SET subject = 'forged' WHERE sequence = 3"))
        assert [e.subject for e in notifier.check().queued] == ["audit.failed"]
        root = data_dir / "root.pem"
        saved = root.read_bytes()
        root.unlink()  # the audit check needs its trust anchor: it cannot run now
        _, checked = notifier.evaluate()
        assert {e.value for e in checked} == {"crl.failed"}
        assert notifier.check().queued == []
        assert "notification check audit.failed could not run" in caplog.text
        root.write_bytes(saved)
        assert notifier.check().queued == []  # still announced: not sent a second time
    finally:
        pki.close()
    assert len(_only(receiver, "audit.failed")) == 1


def test_a_renewed_certificate_is_not_announced(installation, database_url, receiver, clock):
    _configure(installation, webhook=receiver.url, events=["cert.expiring"])
    pki = _open(installation, database_url, clock)
    try:
        old = _expiring(pki, clock, "historian")
        renewed = pki.issuance.issue(
            build_csr(make_key(), cn="historian"), profile="tls-client", validity_days=200
        ).serial
        other = _expiring(pki, clock, "scada")
        report = Notifier.for_pki(pki).check()
        pki.revocation.revoke(int(renewed, 16), x509.ReasonFlags.superseded)  # the renewal revoked:
        again = Notifier.for_pki(pki).check()  # the old certificate is the current one again
    finally:
        pki.close()
    assert len(report.queued) == 1
    first, second = (m["details"]["certificates"] for m in _only(receiver, "cert.expiring"))
    assert [c["serial"] for c in first] == [other]
    assert len(again.queued) == 1
    assert sorted(c["serial"] for c in second) == sorted([old, other])


def _own_address() -> str | None:
    """This machine's address on its default route (no packet is sent), if it has one."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if ipaddress.ip_address(address).is_loopback else address


def test_mail_is_not_sent_in_the_clear_to_a_host_off_loopback(installation, database_url):
    address = _own_address()
    if address is None:
        pytest.skip("no non-loopback address on this machine")
    mailbox = _Mailbox()
    controller = Controller(mailbox, hostname=address, port=free_port())  # no STARTTLS offered
    controller.start()
    try:
        with (installation / "config.toml").open("a") as handle:
            handle.write(
                f'\n[notify.smtp]\nhost = "{address}"\nport = {controller.port}\n'
                'from = "otward@plant.example"\nto = ["ops@plant.example"]\n'
            )
        result = _cli(installation, database_url, "notify", "test")
    finally:
        controller.stop()
    assert result.exit_code == 1
    assert "does not offer STARTTLS; refusing to send in the clear" in result.output
    assert mailbox.messages == []
