"""Webhook delivery: one signed HTTPS POST per attempt (httpx); retries are the outbox's job."""

from __future__ import annotations

import ssl
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from otward import __version__
from otward.core.notifications import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    JsonValue,
    NotifyEvent,
    is_loopback_host,
    signature_header,
)
from otward.errors import BackendError, ConfigError

__all__ = ["WebhookChannel"]

TIMEOUT_SECONDS = 10.0


def display_url(url: str) -> str:
    """The URL without its query or fragment (which may carry a token): how it is shown."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _context(ca_file: Path | None) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the webhook CA file {ca_file}: {exc}", rule="webhook-ca") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class WebhookChannel:
    """POSTs the JSON body with ``X-Otward-Signature`` and ``X-Otward-Timestamp`` (docs/notifications.md).

    ``http://`` only to a loopback address; https verifies the server against the system store or
    ``ca_file``. Redirects are not followed (the body would go elsewhere) and the environment's
    proxies are not used."""

    def __init__(
        self,
        url: str,
        secret: bytes,
        events: frozenset[NotifyEvent],
        *,
        ca_file: Path | None = None,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme == "http" and not is_loopback_host(parts.hostname or ""):
            raise ConfigError(
                f"webhook {display_url(url)}: http:// only to a loopback address", rule="webhook-url"
            )
        if parts.scheme not in ("http", "https"):
            raise ConfigError(f"webhook {display_url(url)}: not an http(s) URL", rule="webhook-url")
        self._url = url
        self._secret = secret
        self._events = events
        self.name = f"webhook:{display_url(url)}"
        self._client = httpx.Client(
            verify=_context(ca_file) if parts.scheme == "https" else True,
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
        )

    def accepts(self, event: NotifyEvent) -> bool:
        return event is NotifyEvent.TEST or event in self._events

    def deliver(self, payload: bytes, notification: Mapping[str, JsonValue]) -> None:
        # Wall-clock time: the receiver compares it with its own clock to refuse replays.
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"otward/{__version__}",
            "Idempotency-Key": str(notification.get("id")),
            "X-Otward-Event": str(notification.get("type")),
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: signature_header(self._secret, timestamp, payload),
        }
        try:
            response = self._client.post(self._url, content=payload, headers=headers)
        except (httpx.HTTPError, httpx.InvalidURL, ssl.SSLError, OSError) as exc:
            reason = str(exc).replace(self._url, display_url(self._url)) or type(exc).__name__
            raise BackendError(f"{self.name}: {reason}", rule="notify-delivery") from exc
        if not 200 <= response.status_code < 300:
            raise BackendError(f"{self.name} answered HTTP {response.status_code}", rule="notify-delivery")

    def close(self) -> None:
        self._client.close()
