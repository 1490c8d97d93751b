"""Where notifications go: signed webhooks over httpx and e-mail over smtplib
(:class:`otward.core.notifications.NotificationChannel`); secrets read from 0600 files."""

from otward.adapters.notify.secret_file import read_secret_file
from otward.adapters.notify.smtp import SmtpChannel
from otward.adapters.notify.webhook import WebhookChannel

__all__ = ["SmtpChannel", "WebhookChannel", "read_secret_file"]
