"""E-mail delivery with smtplib: STARTTLS required unless the server is on loopback."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

from otward.core.notifications import JsonValue, NotifyEvent, is_loopback_host, render_email
from otward.errors import BackendError, ConfigError

__all__ = ["SmtpChannel"]

TIMEOUT_SECONDS = 15.0


class SmtpChannel:
    """One message per notification to every recipient; the notification id is in the
    ``Message-ID`` (the same on every retry) so that mail systems can drop duplicates."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        to: Sequence[str],
        events: frozenset[NotifyEvent],
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self._host = host
        self._port = port
        self._sender = sender
        self._to = tuple(to)
        self._events = events
        self._username = username
        self._password = password
        self._timeout = timeout
        self._require_tls = not is_loopback_host(host)
        try:
            self._context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load notify.smtp.ca_file {ca_file}: {exc}", rule="smtp-ca") from None
        self._context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.name = f"smtp:{host}:{port}"

    def accepts(self, event: NotifyEvent) -> bool:
        return event is NotifyEvent.TEST or event in self._events

    def _message(self, notification: Mapping[str, JsonValue]) -> EmailMessage:
        subject, body = render_email(notification)
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = ", ".join(self._to)
        message["Subject"] = subject
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = f"<{notification.get('id')}@{self._sender.rpartition('@')[2]}>"
        message["X-Otward-Event"] = str(notification.get("type"))
        message.set_content(body)
        return message

    def deliver(self, payload: bytes, notification: Mapping[str, JsonValue]) -> None:
        message = self._message(notification)
        try:
            with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
                smtp.ehlo()
                if smtp.has_extn("starttls"):
                    smtp.starttls(context=self._context)
                    smtp.ehlo()
                elif self._require_tls:
                    raise BackendError(
                        f"{self.name} does not offer STARTTLS; refusing to send in the clear",
                        rule="notify-delivery",
                    )
                if self._username is not None and self._password is not None:
                    smtp.login(self._username, self._password)
                smtp.send_message(message, from_addr=self._sender, to_addrs=list(self._to))
        except smtplib.SMTPResponseException as exc:
            raise BackendError(f"{self.name} answered {exc.smtp_code}", rule="notify-delivery") from exc
        except (smtplib.SMTPException, OSError, ssl.SSLError, UnicodeError, ValueError) as exc:
            # ValueError/UnicodeError: an address or header the server or smtplib cannot take
            reason = str(exc) or type(exc).__name__
            raise BackendError(f"{self.name}: {reason}", rule="notify-delivery") from exc

    def close(self) -> None:
        """Nothing held between messages."""
