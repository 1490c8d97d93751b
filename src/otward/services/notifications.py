"""Notifications: check the installation, decide what is new, queue it in the outbox, deliver it.

:meth:`Notifier.decide` runs the checks whose events some channel subscribes to, and commits the
new messages to the outbox together with the marks they announce (one transaction).
:meth:`Notifier.drain` claims due outbox rows and delivers each to its channel: a failure is
retried with exponential backoff and jitter until ``[notify] max_attempts``, then given up on.
Each delivery and each final failure is audited (``notify.sent``, ``notify.failed``); neither the
audit trail nor the log ever holds a secret or a webhook URL's query.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509

from otward.adapters.db.notifications import FAILED, PENDING, SENT, OutboxEntry, OutboxRow, Plan
from otward.adapters.notify import SmtpChannel, WebhookChannel, read_secret_file
from otward.config import NotifySettings, Settings
from otward.core.audit import AuditFilter, EventType, Outcome
from otward.core.keys import sign_data, verify_data
from otward.core.notifications import (
    Condition,
    JsonValue,
    NotificationChannel,
    NotifyEvent,
    ca_expiry_conditions,
    decide,
    encode_payload,
    expiry_conditions,
    flood_condition,
    probe_notification,
    retry_delay,
)
from otward.errors import ConfigError, OtwardError
from otward.services.audit import SYSTEM_ACTOR, Actor
from otward.services.pki import Pki

__all__ = ["CRL_GRACE", "CheckReport", "DrainReport", "Notifier", "TestResult", "open_channels"]

log = logging.getLogger("otward.notify")

CRL_GRACE = timedelta(minutes=10)  # how long a due CRL refresh may lag before it counts as failed
KEEP_FINISHED = timedelta(days=90)  # sent and failed outbox rows are kept this long (notify list)
LEASE = timedelta(minutes=10)  # a claimed outbox row is due again after this (its sender died)
BATCH = 20
_KEY_PROBE = b"otward notify: key check"


def open_channels(settings: NotifySettings) -> list[NotificationChannel]:
    """The configured webhooks and SMTP server, their secrets read (0600 files only)."""
    channels: list[NotificationChannel] = []
    for index, hook in enumerate(settings.webhook):
        secret = read_secret_file(hook.secret_file, f"notify.webhook[{index}].secret_file")
        events = frozenset(NotifyEvent(e) for e in hook.events)
        channels.append(WebhookChannel(hook.url, secret, events, ca_file=hook.ca_file))
    smtp = settings.smtp
    if smtp is not None:
        password = None
        if smtp.password_file is not None:
            password = read_secret_file(smtp.password_file, "notify.smtp.password_file").decode()
        channels.append(
            SmtpChannel(
                host=smtp.host,
                port=smtp.port,
                sender=smtp.sender,
                to=smtp.to,
                events=frozenset(NotifyEvent(e) for e in smtp.events),
                username=smtp.username,
                password=password,
                ca_file=smtp.ca_file,
            )
        )
    names = [c.name for c in channels]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise ConfigError(f"notify: channel {duplicate} is configured twice", rule="notify-channel")
    return channels


@dataclass(frozen=True)
class DrainReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0


@dataclass(frozen=True)
class CheckReport:
    queued: Sequence[OutboxEntry]
    drained: DrainReport


@dataclass(frozen=True)
class TestResult:
    channel: str
    error: str | None  # None: delivered


class Notifier:
    """The notification use cases of one installation (``otward notify``, ``otward serve``)."""

    def __init__(
        self,
        pki: Pki,
        channels: Sequence[NotificationChannel],
        *,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._pki = pki
        self._store = pki.stores.notifications
        self._channels = list(channels)
        self._settings = pki.settings.notify
        self._jitter = jitter

    @classmethod
    def for_pki(cls, pki: Pki) -> Notifier:
        return cls(pki, open_channels(pki.settings.notify))

    @staticmethod
    def configured(settings: Settings) -> bool:
        return bool(settings.notify.webhook) or settings.notify.smtp is not None

    @property
    def channels(self) -> list[NotificationChannel]:
        return list(self._channels)

    @property
    def installation(self) -> str:
        return self._settings.installation or self._pki.settings.organization

    def close(self) -> None:
        for channel in self._channels:
            close = getattr(channel, "close", None)
            if close is not None:
                close()

    # --- checks -------------------------------------------------------------------------------

    def wanted(self) -> frozenset[NotifyEvent]:
        """The events some channel subscribes to: only their checks run."""
        return frozenset(
            e for e in NotifyEvent if e is not NotifyEvent.TEST and any(c.accepts(e) for c in self._channels)
        )

    def evaluate(self, actor: Actor = SYSTEM_ACTOR) -> tuple[list[Condition], frozenset[NotifyEvent]]:
        """The conditions found now, and the events whose checks ran. A check that fails (the
        database away, say) is logged and left out: what it announced before is kept, not forgotten."""
        now = self._pki.clock()
        checks: dict[NotifyEvent, Callable[[], list[Condition]]] = {
            NotifyEvent.CERT_EXPIRING: lambda: self._expiry_conditions(now),
            NotifyEvent.CA_EXPIRING: lambda: ca_expiry_conditions(
                self._ca_expiry(), now, self._settings.ca_expiring_within_days
            ),
            NotifyEvent.CRL_FAILED: lambda: self._crl_conditions(now, actor),
            NotifyEvent.AUDIT_FAILED: self._audit_conditions,
            NotifyEvent.KEY_FAILED: self._key_conditions,
            NotifyEvent.ENROLL_FLOOD: lambda: self._flood_conditions(now),
        }
        conditions: list[Condition] = []
        checked = set()
        for event in sorted(self.wanted(), key=lambda e: e.value):
            try:
                conditions += checks[event]()
            except OtwardError as exc:
                log.warning("notification check %s could not run: %s", event.value, exc)
                continue
            checked.add(event)
        return conditions, frozenset(checked)

    def _expiry_conditions(self, now: datetime) -> list[Condition]:
        marks = self._settings.expiring_within_days
        found = self._store.expiring_certificates(now, now + timedelta(days=max(marks)))
        return expiry_conditions(found, now, marks)

    def _ca_expiry(self) -> list[tuple[str, datetime]]:
        found = []
        for record in self._pki.authorities.list():
            try:
                certificate = x509.load_der_x509_certificate(record.certificate_der)
            except ValueError:
                continue
            found.append((record.name, certificate.not_valid_after_utc))
        return found

    def _crl_conditions(self, now: datetime, actor: Actor) -> list[Condition]:
        """A CA whose CRL is missing, expired, or not refreshed ``CRL_GRACE`` after it was due (the
        service's refresh failed), or behind a committed revocation and failing to re-sign now."""
        crls = self._pki.stores.crls
        margin = self._pki.settings.crl.refresh_margin
        stale = set(crls.stale_crls())
        conditions = []
        for name, ca_not_after in self._ca_expiry():
            record = crls.get_crl(name)
            problem: str | None = None
            mark = ""
            if record is None:
                mark, problem = "missing", f"CA '{name}' has no CRL"
            elif record.next_update <= now:
                mark = "expired"
                problem = (
                    f"the CRL of CA '{name}' (number {record.crl_number}) expired at "
                    f"{record.next_update:%Y-%m-%d %H:%M} UTC"
                )
            elif record.next_update - now < margin - CRL_GRACE and record.next_update < ca_not_after:
                mark = "overdue"
                problem = (
                    f"the CRL of CA '{name}' (number {record.crl_number}) was due for refresh and was not "
                    f"re-signed; it expires at {record.next_update:%Y-%m-%d %H:%M} UTC"
                )
            elif name in stale:
                try:  # what the service does every few seconds; failing here means it fails there
                    self._pki.revocation.publish_if_stale(name, actor)
                except OtwardError as exc:
                    mark = "behind"
                    problem = (
                        f"the CRL of CA '{name}' is behind a committed revocation and cannot be "
                        f"re-signed: {exc.message}"
                    )
            if problem is None:
                continue
            details: dict[str, JsonValue] = {"ca": name, "problem": mark}
            if record is not None:
                details["crl_number"] = record.crl_number
                details["next_update"] = record.next_update.strftime("%Y-%m-%dT%H:%M:%SZ")
            conditions.append(
                Condition(NotifyEvent.CRL_FAILED, f"crl.failed/{name}", frozenset({mark}), problem, details)
            )
        return conditions

    def _audit_conditions(self) -> list[Condition]:
        report = self._pki.audit.verify()
        check = report.check
        if check.ok:
            return []
        summary = f"the audit chain does not verify: {check.problem or check.status.value}"
        details: dict[str, JsonValue] = {
            "status": check.status.value,
            "first_bad_sequence": check.first_bad_sequence,
            "records": check.records,
            "problem": check.problem,
        }
        mark = f"{check.status.value}:{check.first_bad_sequence or ''}"
        return [Condition(NotifyEvent.AUDIT_FAILED, "audit.failed", frozenset({mark}), summary, details)]

    def _key_conditions(self) -> list[Condition]:
        """Every CA and responder key signs a probe (on a token this is a real signature by the
        token), and every service signer's key loads."""
        conditions = []
        for record in self._pki.authorities.list():
            try:
                loaded = self._pki.authorities.get(record.name)
                for key, certificate, role in (
                    (loaded.key, loaded.certificate, "CA"),
                    (loaded.ocsp_key, loaded.ocsp_certificate, "OCSP responder"),
                ):
                    signature = sign_data(key, _KEY_PROBE)
                    if not verify_data(certificate.public_key(), signature, _KEY_PROBE):
                        raise OtwardError(
                            f"the {role} key does not match its certificate", rule="key-mismatch"
                        )
            except OtwardError as exc:
                conditions.append(
                    self._key_condition(f"ca/{record.name}", f"the keys of CA '{record.name}'", exc)
                )
            except ValueError as exc:  # an unreadable certificate or a key that cannot sign
                wrapped = OtwardError(str(exc), rule="key-unusable")
                conditions.append(
                    self._key_condition(f"ca/{record.name}", f"the keys of CA '{record.name}'", wrapped)
                )
        try:
            self._pki.signers.check_keys()
        except OtwardError as exc:
            conditions.append(self._key_condition("signers", "a service signer's key", exc))
        return conditions

    @staticmethod
    def _key_condition(what: str, label: str, exc: OtwardError) -> Condition:
        details: dict[str, JsonValue] = {"key": what, "error": exc.message, "rule": exc.rule}
        return Condition(
            NotifyEvent.KEY_FAILED,
            f"key.failed/{what}",
            frozenset({exc.rule or "error"}),
            f"{label} cannot sign: {exc.message}",
            details,
        )

    def _flood_conditions(self, now: datetime) -> list[Condition]:
        window = self._settings.flood_window
        conditions = []
        for outcome, event, threshold in (
            ("refused", EventType.ENROLL_REFUSED, self._settings.enroll_refused_threshold),
            ("accepted", EventType.ENROLL_SUCCEEDED, self._settings.enroll_accepted_threshold),
        ):
            _, count = self._pki.stores.audit.list_audit(
                AuditFilter(since=now - window, type=event.value), limit=1, offset=0
            )
            condition = flood_condition(outcome, count, threshold, now, window)
            if condition is not None:
                conditions.append(condition)
        return conditions

    # --- deciding and sending -----------------------------------------------------------------

    def decide(self, actor: Actor = SYSTEM_ACTOR) -> list[OutboxEntry]:
        """Run the checks and queue what is new (committed before anything is sent)."""
        if not self._channels:
            return []
        conditions, checked = self.evaluate(actor)
        now = self._pki.clock()
        installation = self.installation

        def plan(announced: Mapping[str, tuple[NotifyEvent, frozenset[str]]]) -> Plan:
            decision = decide(conditions, announced, checked, now)
            entries = []
            for notification in decision.notifications:
                payload = encode_payload(notification, installation).decode()
                entries += [
                    OutboxEntry(
                        notification.id, c.name, notification.event.value, notification.key[:255], payload
                    )
                    for c in self._channels
                    if c.accepts(notification.event)
                ]
            return Plan(decision.store, decision.forget, entries)

        queued = self._store.save_decision(now, plan)
        self._store.purge_finished(now - KEEP_FINISHED)
        if queued:
            log.info("%d notifications queued", len(queued))
        return queued

    def drain(self, actor: Actor = SYSTEM_ACTOR) -> DrainReport:
        """Deliver every due outbox row once (claimed, so no other node sends it meanwhile)."""
        by_name = {c.name: c for c in self._channels}
        sent = retrying = failed = 0
        while True:
            now = self._pki.clock()
            rows = self._store.claim_due(now, now + LEASE, BATCH)
            if not rows:
                return DrainReport(sent, retrying, failed)
            for row in rows:
                outcome = self._deliver(row, by_name.get(row.channel), actor)
                sent += outcome == SENT
                retrying += outcome == PENDING
                failed += outcome == FAILED
            if len(rows) < BATCH:
                return DrainReport(sent, retrying, failed)

    def _deliver(self, row: OutboxRow, channel: NotificationChannel | None, actor: Actor) -> str:
        audit = self._pki.audit
        details = {"notification": row.notification_id, "event": row.event, "attempts": str(row.attempts)}
        try:
            if channel is None:
                raise OtwardError(f"channel {row.channel} is no longer configured", rule="notify-channel")
            channel.deliver(row.payload.encode(), json.loads(row.payload))
        except OtwardError as exc:
            now = self._pki.clock()
            error = exc.message[:1024]
            if channel is not None and row.attempts < self._settings.max_attempts:
                delay = retry_delay(
                    row.attempts,
                    base=self._settings.retry_base_seconds,
                    cap=self._settings.retry_max_seconds,
                    jitter=self._jitter(),
                )
                self._store.finish(row.id, now, status=PENDING, error=error, retry_at=now + delay)
                log.warning(
                    "notification %s to %s failed (attempt %d), retrying in %d s: %s",
                    row.notification_id,
                    row.channel,
                    row.attempts,
                    delay.total_seconds(),
                    error,
                )
                return PENDING
            event = audit.event(
                actor,
                EventType.NOTIFY_FAILED,
                row.channel,
                outcome=Outcome.FAILURE,
                reason=error,
                details=details,
            )
            self._store.finish(row.id, now, status=FAILED, error=error, events=[event])
            log.error(
                "notification %s to %s given up after %d attempts: %s",
                row.notification_id,
                row.channel,
                row.attempts,
                error,
            )
            return FAILED
        event = audit.event(actor, EventType.NOTIFY_SENT, row.channel, details=details)
        self._store.finish(row.id, self._pki.clock(), status=SENT, error=None, events=[event])
        return SENT

    def check(self, actor: Actor = SYSTEM_ACTOR) -> CheckReport:
        """``otward notify check``: decide now, then deliver everything due."""
        queued = self.decide(actor)
        return CheckReport(queued, self.drain(actor))

    def send_test(self, actor: Actor = SYSTEM_ACTOR) -> list[TestResult]:
        """One test message straight to every channel (not through the outbox), each audited."""
        notification = probe_notification(self._pki.clock(), secrets.token_hex(8))
        payload = encode_payload(notification, self.installation)
        decoded = json.loads(payload)
        results = []
        for channel in self._channels:
            details = {"notification": notification.id, "event": NotifyEvent.TEST.value, "attempts": "1"}
            try:
                channel.deliver(payload, decoded)
            except OtwardError as exc:
                results.append(TestResult(channel.name, exc.message))
                event = self._pki.audit.event(
                    actor,
                    EventType.NOTIFY_FAILED,
                    channel.name,
                    outcome=Outcome.FAILURE,
                    reason=exc.message[:1024],
                    details=details,
                )
            else:
                results.append(TestResult(channel.name, None))
                event = self._pki.audit.event(actor, EventType.NOTIFY_SENT, channel.name, details=details)
            self._pki.audit.record(event)
        return results

    def outbox(self, *, status: str | None = None, limit: int = 100) -> list[OutboxRow]:
        return self._store.list_outbox(status=status, limit=limit)
