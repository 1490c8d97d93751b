"""The gateway's trail, pushed to the central server as a gatekeeper's is.

A gateway's ``--audit-file`` is hash-chained but carries no signed heads: whoever controls the gateway
host could rewrite it whole. Pushed to the central server (the edge trail endpoint, with an edge token
created for the gateway's name: ``otward edge token create --asset GATEWAY``), its records are kept
there per name, exactly once each, and a later rewrite contradicts what the server holds
(``integrity.failed``). The push runs in its own thread; connections never wait for it.
"""

from __future__ import annotations

import logging
import ssl
import threading
from pathlib import Path

import httpx

from otward.adapters.audit_file import FileAuditTrail
from otward.adapters.trail_push import FileCursor, push_trail
from otward.core.access.model import validate_identifier
from otward.errors import ConfigError, OtwardError

__all__ = ["TrailSync"]

log = logging.getLogger("otward.gateway.trail_sync")


class TrailSync:
    """Pushes ``trail`` to ``url`` as ``asset`` every ``interval`` seconds (and once more at stop);
    the acknowledged sequence is kept beside the trail (``TRAIL.pushed``)."""

    def __init__(
        self,
        trail: FileAuditTrail,
        url: str,
        token: str,
        asset: str,
        *,
        ca_file: Path | None = None,
        interval: float = 10.0,
        timeout: float = 10.0,
    ) -> None:
        if interval <= 0:
            raise ConfigError("--sync-interval must be positive", rule="gateway-sync-interval")
        if not token.strip():
            raise ConfigError("the sync token is empty", rule="gateway-sync-token")
        try:
            validate_identifier(asset, "--asset")
        except OtwardError as exc:
            raise ConfigError(exc.message, rule="gateway-sync-asset") from None
        verify: ssl.SSLContext | bool = True
        if ca_file is not None:
            try:
                verify = ssl.create_default_context(cafile=str(ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"cannot load the CA file {ca_file}: {exc}", rule="gateway-sync-ca"
                ) from None
        self.trail = trail
        self.interval = interval
        self.cursor = FileCursor(trail.path.with_name(trail.path.name + ".pushed"), trail)
        self._url = f"/api/v1/edge/assets/{asset}/trail"
        self._client = httpx.Client(
            base_url=url.rstrip("/"),
            verify=verify,
            timeout=timeout,
            headers={"Authorization": f"Bearer {token.strip()}"},
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def push_once(self) -> int:
        """One push; returns the acknowledged sequence. Failures are logged and kept, never raised."""
        try:
            acked = push_trail(self._client, self._url, self.trail, self.cursor)
        except (httpx.HTTPError, ValueError, KeyError, OSError, OtwardError) as exc:
            self.last_error = str(exc) or type(exc).__name__
            log.warning("trail push to the central server failed: %s", self.last_error)
            return self.cursor.acked_sequence
        self.last_error = None
        log.debug("trail pushed through record %d", acked)
        return acked

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.push_once()
            except Exception:  # the push thread's edge: log and retry next interval
                log.exception("trail push round failed")

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="otward-gateway-trail-push", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and push what is left (the trail must still be open)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.push_once()
        self._client.close()
