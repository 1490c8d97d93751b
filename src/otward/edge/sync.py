"""Keeping a gatekeeper in step with the central server when it can reach it.

Every interval: pull (``GET /api/v1/edge/assets/<asset>/bundle?after=<version>``;
a newer bundle is verified and installed like any other, a refused one is
recorded) and push (``POST .../trail`` with the records after the last
acknowledged sequence, in batches). The central server stores records by
(asset, sequence) idempotently and answers the highest sequence it holds; the
gatekeeper persists that as its cursor only after the answer arrived. A push
whose answer is lost is simply sent again, and the duplicates are skipped, so
across disconnects and restarts no record is lost and none is stored twice.
Unreachable or failing servers are retried next interval; decisions never wait
for the network.
"""

from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import httpx

from otward.adapters.trail_push import push_trail
from otward.edge.gatekeeper import Gatekeeper
from otward.errors import ConfigError, OtwardError

__all__ = ["SyncClient", "SyncResult"]

log = logging.getLogger("otward.edge.sync")


@dataclass(frozen=True)
class SyncResult:
    """What one round did: a bundle installed (its version), records acknowledged, an error if any."""

    bundle_version: int | None
    acknowledged: int
    error: str | None = None


class SyncClient:
    """Pulls bundles and pushes the trail of one gatekeeper; :meth:`start` runs it in a thread."""

    def __init__(
        self,
        gatekeeper: Gatekeeper,
        url: str,
        token: str,
        *,
        ca_file: Path | None = None,
        interval: float = 10.0,
        timeout: float = 10.0,
    ) -> None:
        if interval <= 0:
            raise ConfigError("sync interval must be positive", rule="edge-sync-interval")
        if not token.strip():
            raise ConfigError("the sync token is empty", rule="edge-sync-token")
        verify: ssl.SSLContext | bool = True
        if ca_file is not None:
            try:
                verify = ssl.create_default_context(cafile=str(ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"cannot load the CA file {ca_file}: {exc}", rule="edge-sync-ca") from None
        self._gatekeeper = gatekeeper
        self.interval = interval
        base = url.rstrip("/")
        self._prefix = f"/api/v1/edge/assets/{gatekeeper.asset}"
        self._client = httpx.Client(
            base_url=base,
            verify=verify,
            timeout=timeout,
            headers={"Authorization": f"Bearer {token.strip()}"},
        )
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_result: SyncResult | None = None

    def pull(self) -> int | None:
        """Fetch and install a newer bundle; its version if one was installed."""
        response = self._client.get(f"{self._prefix}/bundle", params={"after": self._gatekeeper.version})
        if response.status_code == 204:
            return None
        response.raise_for_status()
        outcome = self._gatekeeper.install_bundle(response.text, source="sync")
        return outcome.version if outcome.installed else None

    def push(self) -> int:
        """Send the records after the acknowledged cursor until the central server has them all
        (:func:`otward.adapters.trail_push.push_trail`, which the gateway's push shares)."""
        gatekeeper = self._gatekeeper
        return push_trail(self._client, f"{self._prefix}/trail", gatekeeper.trail, gatekeeper)

    def run_once(self) -> SyncResult:
        """One round of pull then push; network and server errors are returned, never raised."""
        version: int | None = None
        try:
            version = self.pull()
            acknowledged = self.push()
            result = SyncResult(version, acknowledged)
        except (httpx.HTTPError, ValueError, KeyError, OSError, OtwardError) as exc:
            log.info("sync with the central server failed: %s", exc)
            result = SyncResult(version, self._gatekeeper.acked_sequence, str(exc) or type(exc).__name__)
        self.last_result = result
        return result

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # the sync thread's edge: log, keep deciding, retry next interval
                log.exception("edge sync round failed")
            self._wake.wait(self.interval)
            self._wake.clear()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="otward-edge-sync", daemon=True)
            self._thread.start()

    def trigger(self) -> None:
        """Run the next round now (e.g. right after a decision, to push it early)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._client.close()
