"""The gatekeeper's local HTTP/JSON API (``otward edge serve``), for the reader or HMI at the asset.

``POST /v1/challenge`` ``{"credential", "function"}`` → ``{"nonce", "asset", "function", "expires_at"}``;
``POST /v1/answer`` ``{"nonce", "signature"}`` (base64url) → ``{"decision", "reason", ...}``;
``GET /v1/status``. It listens on loopback by default: the reader next to the door talks to it, the
holder's proof is the signature, and the central server is reached only by the sync thread. When the
reader sits elsewhere on the network, serve TLS (``tls_certificate``/``tls_key``) and admit only readers
with a client certificate (``tls_client_ca``): the decision the reader acts on must not be forgeable on
the wire.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from pydantic import BaseModel, Field

from otward import __version__
from otward.adapters.audit_file import SyncMode
from otward.adapters.files import read_limited
from otward.adapters.tls import TlsFlags, server_context
from otward.core import b64url
from otward.core.ratelimit import FailureLimiter
from otward.edge.gatekeeper import (
    DEFAULT_NONCE_TTL,
    DEFAULT_SKEW,
    DEFAULT_TRAIL_SYNC_INTERVAL,
    Gatekeeper,
    load_roots,
)
from otward.edge.sync import SyncClient
from otward.edge.tokens import MAX_TOKEN
from otward.errors import ConfigError, RateLimitedError
from otward.web.bodylimit import BodyLimit
from otward.web.connections import ConnectionLimits, GuardedHttpProtocol, GuardedServer
from otward.web.problems import install_problem_handlers
from otward.web.proxies import forwarded_headers

__all__ = [
    "MAX_BODY",
    "MAX_PROOF_FAILURES",
    "PROOF_FAILURE_WINDOW",
    "EdgeServeOptions",
    "check_tls_options",
    "create_gatekeeper_app",
    "serve_gatekeeper",
]


class ChallengeIn(BaseModel):
    credential: str = Field(max_length=8192)
    function: str = Field(max_length=128)


class ChallengeOut(BaseModel):
    nonce: str
    asset: str
    function: str
    expires_at: datetime


class AnswerIn(BaseModel):
    nonce: str = Field(max_length=128)
    signature: str = Field(max_length=2048)


class DecisionOut(BaseModel):
    decision: str
    reason: str
    asset: str
    function: str
    person: str | None
    credential_id: str | None
    policies: list[str]
    bundle_version: int | None
    local_time: str


# A source whose answers proved nothing this often in a minute (unknown or replayed nonces, forged
# credentials or holder signatures) is refused with 429 until the oldest ages out: that bounds what a
# flood costs the trail (every answer is recorded) and the CPU. Honest readers stay far below it: a
# policy deny, an expired or a revoked credential do not count.
MAX_PROOF_FAILURES = 30
PROOF_FAILURE_WINDOW = 60.0
# Every request body of this API is small (a credential is at most 8 KiB); larger ones are refused
# with 413 before they are read.
MAX_BODY = 16 * 1024


def create_gatekeeper_app(
    gatekeeper: Gatekeeper, sync: SyncClient | None = None, *, clock: Callable[[], float] = time.monotonic
) -> FastAPI:
    app = FastAPI(title="otward edge gatekeeper", version=__version__, docs_url=None, redoc_url=None)
    install_problem_handlers(app)
    app.add_middleware(BodyLimit, default=MAX_BODY)
    failures = FailureLimiter(
        max_failures=MAX_PROOF_FAILURES, window_seconds=PROOF_FAILURE_WINDOW, clock=clock
    )

    def admitted_source(request: Request) -> str:
        """The request's source address; 429 while it is held off."""
        source = request.client.host if request.client else "unknown"
        wait = failures.retry_after(source)
        if wait > 0:
            raise RateLimitedError(
                f"too many answers from {source} proved nothing (unknown nonces, forged signatures); "
                "try again later",
                retry_after=wait,
            )
        return source

    @app.post("/v1/challenge", response_model=ChallengeOut, status_code=201)
    def challenge(body: ChallengeIn, request: Request) -> ChallengeOut:
        """Step 1: present the credential and the function; sign the returned nonce within its lifetime."""
        issued = gatekeeper.challenge(body.credential, body.function, source=admitted_source(request))
        return ChallengeOut(
            nonce=b64url.encode(issued.nonce),
            asset=issued.asset,
            function=issued.function,
            expires_at=issued.expires_at,
        )

    @app.post("/v1/answer", response_model=DecisionOut)
    def answer(body: AnswerIn, request: Request) -> DecisionOut:
        """Step 2: the signature over ``otward-edge-access-v1\\n<asset>\\n<function>\\n<nonce>``."""
        source = admitted_source(request)
        verdict = gatekeeper.answer(
            b64url.decode(body.nonce, "nonce"), b64url.decode(body.signature, "signature"), source=source
        )
        if verdict.proof_failed:
            failures.record_failure(source)
        if sync is not None:
            sync.trigger()
        return DecisionOut(
            decision=verdict.decision,
            reason=verdict.reason,
            asset=gatekeeper.asset,
            function=verdict.function,
            person=verdict.person,
            credential_id=verdict.credential_id,
            policies=list(verdict.policies),
            bundle_version=verdict.bundle_version,
            local_time=verdict.local_time,
        )

    @app.get("/v1/status")
    def status() -> dict[str, object]:
        """Bundle in force, trail head, the sequence the central server acknowledged, the last sync."""
        result = sync.last_result if sync is not None else None
        return {
            **gatekeeper.status(),
            "sync": None if sync is None else {"last_error": result.error if result else None},
        }

    @app.get("/healthz")
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return app


@dataclass(frozen=True)
class EdgeServeOptions:
    asset: str
    bundle: Path | None
    state_dir: Path
    roots_file: Path
    host: str = "127.0.0.1"
    port: int = 8700
    sync_url: str | None = None
    token_file: Path | None = None
    ca_file: Path | None = None
    sync_interval: float = 10.0
    skew_seconds: float = DEFAULT_SKEW.total_seconds()
    nonce_ttl_seconds: float = DEFAULT_NONCE_TTL.total_seconds()
    trail_sync: SyncMode = "always"
    trail_sync_interval_ms: float = DEFAULT_TRAIL_SYNC_INTERVAL.total_seconds() * 1000
    tls_certificate: Path | None = None  # serve HTTPS with this certificate (chain) ...
    tls_key: Path | None = None  # ... and key (mode 0600)
    tls_client_ca: Path | None = None  # require reader client certificates chaining to these CAs
    trusted_proxies: tuple[str, ...] = ()  # peers whose X-Forwarded-For is believed (none by default)
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)  # --max-connections, timeouts


def check_tls_options(certificate: Path | None, key: Path | None, client_ca: Path | None) -> None:
    """ConfigError unless the TLS options make sense together (checked before anything starts)."""
    if (certificate is None) != (key is None):
        raise ConfigError("--tls-cert and --tls-key go together", rule="edge-tls")
    if client_ca is not None and certificate is None:
        raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key", rule="edge-tls")


def serve_gatekeeper(options: EdgeServeOptions, *, announce: Callable[[str], None] | None = None) -> None:
    """Run the gatekeeper until interrupted: local API, plus the sync thread when a URL is given.

    ``announce`` gets one line for the operator when the ``--bundle`` file is refused (the refusal
    is in the trail as well): why, and what the gatekeeper decides with instead."""
    from datetime import timedelta

    check_tls_options(options.tls_certificate, options.tls_key, options.tls_client_ca)
    gatekeeper = Gatekeeper(
        options.asset,
        load_roots(options.roots_file),
        options.state_dir,
        skew=timedelta(seconds=options.skew_seconds),
        nonce_ttl=timedelta(seconds=options.nonce_ttl_seconds),
        trail_sync=options.trail_sync,
        trail_sync_interval=timedelta(milliseconds=options.trail_sync_interval_ms),
    )
    sync: SyncClient | None = None
    try:
        if options.bundle is not None:
            bundle = read_limited(options.bundle, MAX_TOKEN + 2, "bundle")
            outcome = gatekeeper.install_bundle(bundle.decode(errors="replace"), source="file")
            if outcome.version is None and announce is not None:
                held = gatekeeper.bundle
                instead = (
                    f"deciding with bundle {held.version}" if held else "no bundle: every request is denied"
                )
                announce(f"bundle {options.bundle} refused: {outcome.reason}; {instead}")
        if options.sync_url:
            if options.token_file is None:
                raise ConfigError("--sync needs --token-file", rule="edge-sync-token")
            token = read_limited(options.token_file, 4096, "edge token file").decode(errors="replace").strip()
            sync = SyncClient(
                gatekeeper,
                options.sync_url,
                token,
                ca_file=options.ca_file,
                interval=options.sync_interval,
            )
            sync.start()
        app = create_gatekeeper_app(gatekeeper, sync)
        config = uvicorn.Config(
            app,
            host=options.host,
            port=options.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            server_header=False,  # no "server: uvicorn" banner
            http=GuardedHttpProtocol,
            **forwarded_headers(options.trusted_proxies),
        )
        config.load()
        if options.tls_certificate is not None:
            # uvicorn uses config.ssl as it is once loaded: otward's context (TLS 1.2+, AEAD, no tickets)
            config.ssl = server_context(
                options.tls_certificate,
                options.tls_key or options.tls_certificate,
                client_ca=options.tls_client_ca,
                flags=TlsFlags("--tls-client-ca", "--tls-cert", "--tls-key"),
            )
        GuardedServer(config, options.limits, name="gatekeeper API").run()
    finally:
        if sync is not None:
            sync.stop()
        gatekeeper.close()
