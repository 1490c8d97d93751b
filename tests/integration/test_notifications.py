"""Notifications end to end: a webhook receiver (a small HTTP server on loopback that checks the
HMAC the way docs/notifications.md tells a receiver to) and an SMTP server (aiosmtpd), both
started here; the checks run against a real installation on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import text
from typer.testing import CliRunner

from otward.cli.app import app
from otward.config import load_settings
from otward.core.audit import EventType
from otward.errors import AuthenticationError, ConfigError
from otward.services.notifications import Notifier, open_channels
from otward.services.pki import Pki
from tests.conftest import Clock, build_csr, free_port, make_key

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
    assert len(receiver.deliveries) == 2 and all(d.verified for d in receiver.deliveries)
    assert set(payloads) == {"line-a", None}
    message = payloads["line-a"]
    assert message["type"] == "cert.expiring"
    assert message["installation"] == "ACME Chemicals"
    names = [c["subject"].split("CN=")[-1].split(",")[0] for c in message["details"]["certificates"]]
    assert sorted(names) == ["plc-1", "plc-2"]
    assert [c["subject"] for c in payloads[None]["details"]["certificates"]] == [
        "CN=localhost,O=ACME Chemicals"
    ]
    assert loose.serial not in json.dumps(payloads) and far.serial not in json.dumps(payloads)
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
    assert "cert.expiring" in mail["Subject"] and "line-a" in mail["Subject"]
    assert "plc-1" in mail.get_payload()
