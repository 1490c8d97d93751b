"""Running the service: HTTPS API and plain-HTTP status endpoints, in one or more worker processes.

The parent binds both sockets, then each worker process serves both on its
own event loop (uvicorn ``Server.serve(sockets=...)``), the same model as
uvicorn's ``--workers``. Worker 0 also refreshes CRLs before they go stale; every
worker checks each second whether the audit head is due for a signature (the
``[audit]`` schedule) and signs it when it stops.

Several nodes (``otward serve`` on several hosts) may share one PostgreSQL database and nothing
else (docs/deploy.md): the jobs that change shared state run under a cluster lock
(:meth:`otward.adapters.db.Database.singleton`), so one node does each of them at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from otward.adapters.syslog import SyslogTlsForwarder, client_context
from otward.adapters.tls import restrict_server_context
from otward.config import Settings, load_settings, read_passphrase
from otward.core.audit import EventType
from otward.errors import ConfigError, OtwardError
from otward.http.app import create_app, create_status_app
from otward.http.tls import TlsAwareHttpProtocol
from otward.services.audit import Actor
from otward.services.bootstrap import TlsFiles, renew_service_certificate_if_due
from otward.services.channels import Channels, reload_mosquitto
from otward.services.notifications import Notifier, open_channels
from otward.services.pki import Pki, upgrade_database
from otward.services.signers import SIGNERS
from otward.web.connections import ConnectionLimits, GuardedHttpProtocol, GuardedServer
from otward.web.proxies import forwarded_headers
from otward.web.serverlog import log_lifecycle_once

__all__ = ["ServeOptions", "serve"]

log = logging.getLogger("otward.server")

HOUSEKEEPING_SECONDS = 60.0
CRL_CHECK_SECONDS = 1.0  # how soon a CRL left behind a committed revocation is re-signed
SIGN_TICK_SECONDS = 1.0
NOTIFY_DRAIN_SECONDS = 5.0  # how often the outbox is drained (new messages and retries that are due)
SERVICE_ACTOR = Actor(component="ca", identity="service")


@dataclass(frozen=True)
class ServeOptions:
    data_dir: Path
    database_url: str | None
    host: str = "127.0.0.1"
    port: int = 8443
    http_port: int = 8080
    workers: int = 1
    access_log: bool = False
    trusted_proxies: tuple[str, ...] = ()  # besides config.toml's server.trusted_proxies
    max_connections: int | None = None  # instead of [server.limits] max_connections
    max_connections_per_source: int | None = None  # instead of [server.limits] max_connections_per_source


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only when the
    # listening socket says it is TCP; without it every response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        # A probe without SO_REUSEPORT first: with it, a second ``otward serve`` on the same port
        # would join the first one's group and take half its connections instead of failing.
        with socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            port = probe.getsockname()[1]
        # SO_REUSEPORT lets each further worker listen on its own socket (see _own_listener);
        # Linux admits only processes of the same user to the group.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _own_listener(shared: socket.socket) -> socket.socket:
    """A listening socket of this worker's own on the shared socket's address.

    Workers accepting from one shared socket share connections badly (one worker took all 16
    keep-alive connections of a benchmark while the other idled); with a socket each, the kernel
    spreads new connections over them by hash. Worker 0 keeps serving the shared socket, so every
    socket in the group has a worker accepting from it.
    """
    sock = socket.socket(shared.family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(shared.getsockname())
    sock.listen(2048)
    shared.close()
    return sock


def _client_ca_file(settings: Settings) -> Path:
    return settings.data_dir / "run" / "client-cas.pem"


def _write_client_cas(pki: Pki, path: Path) -> None:
    """Every otward CA certificate, for verifying client certificates (device re-enrollment);
    CAs created later are added by :class:`ClientCaTrust`."""
    pem = "".join(
        x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()
        for a in pki.authorities.list()
        for der in (a.certificate_der, *a.external_chain)  # a root outside otward too
    )
    # Manufacturers' IDevID CAs pass the handshake too; only simpleenroll accepts their certificates
    # (services.zerotouch), every other reader requires a certificate otward issued.
    pem += "".join(
        c.public_bytes(Encoding.PEM).decode()
        for m in pki.zerotouch.list_manufacturers()
        for c in m.ca_certificates
    )
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.write_text(pem)


def _trusted_proxies(settings: Settings, options: ServeOptions) -> tuple[str, ...]:
    return (*settings.server.trusted_proxies, *options.trusted_proxies)


def _connection_limits(settings: Settings, options: ServeOptions) -> ConnectionLimits:
    """The limits of each port, all workers together (``[server.limits]``, the options override);
    trusted proxies have no per-source cap (every client behind them shares their address)."""
    configured = settings.server.limits
    overrides = {
        "max_connections": options.max_connections,
        "max_connections_per_source": options.max_connections_per_source,
    }
    return ConnectionLimits(
        **{
            **configured.model_dump(),
            **{key: value for key, value in overrides.items() if value is not None},
        },
        unlimited_sources=_trusted_proxies(settings, options),
    )


def _https_config(
    app: Any, settings: Settings, options: ServeOptions, client_ca_file: Path
) -> uvicorn.Config:
    tls = TlsFiles.in_dir(settings.data_dir)
    config = uvicorn.Config(
        app,
        **forwarded_headers(_trusted_proxies(settings, options)),
        ssl_certfile=str(tls.certificate_chain),
        ssl_keyfile=str(tls.private_key),
        ssl_keyfile_password=read_passphrase(settings.data_dir).decode(),
        # A client certificate is optional (tokens and admin tokens need none); when one is sent it
        # must chain to an otward CA or the handshake fails. EST re-enrollment reads it (http.tls).
        ssl_cert_reqs=ssl.CERT_OPTIONAL,
        ssl_ca_certs=str(client_ca_file),
        http=TlsAwareHttpProtocol,
        access_log=options.access_log,
        log_level="info",
        lifespan="off",
        server_header=False,
    )
    config.load()
    assert config.ssl is not None  # noqa: S101 - set by load() when a certificate is configured
    # The same policy as every other listener: TLS 1.2+, ECDHE with AEAD suites only (uvicorn's own
    # context accepted CBC suites), no tickets or renegotiation.
    restrict_server_context(config.ssl)
    return config


class _Server(GuardedServer):
    """Two servers share one loop, so signals are handled once, by the worker, not by each server."""

    def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
        return contextlib.nullcontext()


class ClientCaTrust:
    """The CAs a worker's TLS context accepts client certificates from, kept in step with the
    database: a CA created (or a manufacturer added) while the service runs is trusted within a
    minute (OpenSSL's store takes additions while it serves handshakes)."""

    def __init__(self, context: ssl.SSLContext | None) -> None:
        self._context = context
        self._loaded: set[str] = set()
        # A removed manufacturer's CA stays in the store until a restart (OpenSSL adds, never drops);
        # enrollment re-verifies against the manufacturers registered now, so it is refused meanwhile.
        self._loaded_manufacturers: set[str] = set()

    def refresh(self, pki: Pki) -> None:
        if self._context is None:
            return
        for record in pki.authorities.list():
            # keyed by certificate: a renewed CA or an external root is added too
            for der in (record.certificate_der, *record.external_chain):
                stamp = hashlib.sha256(der).hexdigest()
                if stamp in self._loaded:
                    continue
                pem = x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()
                self._context.load_verify_locations(cadata=pem)
                self._loaded.add(stamp)
        for name in pki.zerotouch.manufacturer_names() - self._loaded_manufacturers:
            manufacturer = pki.zerotouch.get_manufacturer(name)
            for certificate in manufacturer.ca_certificates:
                self._context.load_verify_locations(cadata=certificate.public_bytes(Encoding.PEM).decode())
            self._loaded_manufacturers.add(name)


class ServiceIdentity:
    """The worker's own TLS certificate, reloaded when the files change (renewed by the leader):
    new handshakes get the new certificate, open connections keep theirs."""

    def __init__(
        self, context: ssl.SSLContext | None, tls: TlsFiles, passphrase: Callable[[], bytes]
    ) -> None:
        self._context = context
        self._tls = tls
        self._passphrase = passphrase
        self._loaded = self._stamp()

    def _stamp(self) -> tuple[int, int]:
        return self._tls.certificate_chain.stat().st_mtime_ns, self._tls.private_key.stat().st_mtime_ns

    def reload_if_changed(self) -> bool:
        stamp = self._stamp()
        if self._context is None or stamp == self._loaded:
            return False
        try:
            self._context.load_cert_chain(
                self._tls.certificate_chain, self._tls.private_key, password=self._passphrase
            )
        except (ssl.SSLError, OSError) as exc:  # caught between the two renames: next minute
            log.warning("service certificate not reloaded yet: %s", exc)
            return False
        self._loaded = stamp
        return True


def _housekeeping(pki: Pki, trust: ClientCaTrust, identity: ServiceIdentity, *, leader: bool) -> None:
    """Once a minute: aggregated OCSP signing and authentication failure events, new CAs for
    client certificates and changed CAs (a responder another node renewed) in every worker; in the
    first worker of each node, the service certificate and key files other nodes renewed or
    destroyed; and in one node of the whole installation at a time (the ``housekeeping`` cluster
    lock), CRL refresh, responder and signer renewal, old attestation challenges and expiry warnings:
    what changes shared state happens once, not once per node."""
    pki.record_aggregates(SERVICE_ACTOR)
    changed = pki.authorities.forget_changed()
    if changed:
        log.info("CAs changed by another process, reloaded: %s", ", ".join(changed))
    trust.refresh(pki)
    if leader:
        renewed = renew_service_certificate_if_due(pki, pki.settings.data_dir, SERVICE_ACTOR)
        if renewed:
            log.info("the service's TLS certificate was renewed: %s", renewed)
        for key_ref in pki.forget_destroyed_keys():
            log.info("key %s was destroyed by another node; this node's copy is deleted", key_ref)
    if identity.reload_if_changed():
        log.info("serving the renewed TLS certificate")
    if not leader:
        return
    with pki.stores.database.singleton("housekeeping") as held:
        if held:
            _shared_housekeeping(pki)


def _shared_housekeeping(pki: Pki) -> None:
    refreshed = pki.revocation.refresh_all()
    if refreshed:
        log.info("CRLs regenerated for %s", ", ".join(refreshed))
    for authority in pki.authorities.list():
        if pki.authorities.renew_ocsp_responder_if_due(authority.name):
            log.info("OCSP responder of %s renewed", authority.name)
    for name in SIGNERS:
        if pki.signers.rotate_if_due(name, SERVICE_ACTOR):
            log.info("the %s signer was rotated (revoked or two thirds of its lifetime passed)", name)
    pki.devices.purge_challenges()
    pki.console_sessions.purge()
    try:
        refreshed_crls = pki.zerotouch.refresh_crls(SERVICE_ACTOR)
    except OtwardError as exc:  # kept as it was; past its nextUpdate, IDevID enrollment refuses
        log.warning("manufacturer CRL not refreshed: %s", exc)
    else:
        if refreshed_crls:
            log.info("manufacturer CRLs fetched for %s", ", ".join(refreshed_crls))
    retired = pki.devices.retire_superseded(actor=SERVICE_ACTOR)
    if retired:
        log.info("%d renewed device certificates revoked as superseded", len(retired))
    for ca, mark, not_after in pki.expiry.record_ca_crossings():
        log.warning(
            "CA %s expires on %s (less than %d days): renew or roll it over (otward ca renew|rollover)",
            ca,
            f"{not_after:%Y-%m-%d}",
            mark,
        )
    warned = pki.expiry.record_crossings()
    if warned:
        log.warning("%d certificates crossed an expiry mark (see audit events cert.expiring)", warned)


async def _periodic(pki: Pki, trust: ClientCaTrust, identity: ServiceIdentity, *, leader: bool) -> None:
    while True:
        await asyncio.sleep(HOUSEKEEPING_SECONDS)
        try:
            await asyncio.to_thread(_housekeeping, pki, trust, identity, leader=leader)
        except OtwardError:
            log.exception("periodic housekeeping failed; retrying in %s s", HOUSEKEEPING_SECONDS)


async def _sign_audit_heads(pki: Pki) -> None:
    """Sign the audit head whenever the schedule says so (``[audit]`` sign_events, sign_seconds,
    heartbeat_seconds), checked every second: the unsigned tail stays short, and a live service's
    newest head is never older than the heartbeat. A refusal (a rewritten trail, a revoked signer) is
    logged each time it changes; the tail then stays unsigned and verification fails on its age."""
    tick = min(SIGN_TICK_SECONDS, pki.audit.schedule.seconds)
    reported: str | None = None
    while True:
        try:
            await asyncio.to_thread(pki.audit.sign_head_if_due)
            reported = None
        except OtwardError as exc:
            if exc.message != reported:
                log.error("audit head not signed: %s", exc.message.removeprefix("audit head not signed: "))
                reported = exc.message
        await asyncio.sleep(tick)


async def _forward_audit(pki: Pki) -> None:
    """Ship the audit trail to the configured syslog collector; retry with backoff while it is away."""
    settings = pki.settings.audit
    address = settings.syslog_address
    if address is None or settings.syslog_ca_file is None:
        return
    forwarder = SyslogTlsForwarder(
        pki.stores.audit,
        host=address[0],
        port=address[1],
        context=client_context(
            settings.syslog_ca_file, settings.syslog_client_certificate, settings.syslog_client_key
        ),
        clock=pki.clock,
    )
    delay = settings.forward_seconds

    def forward_once() -> None:
        with pki.stores.database.singleton("audit-forward") as held:
            if held:  # one node forwards; the cursor in the database says where it stopped
                forwarder.forward()

    try:
        while True:
            try:
                await asyncio.to_thread(forward_once)
                delay = settings.forward_seconds
            except OtwardError as exc:
                log.warning("audit forwarding paused: %s", exc)
                delay = min(delay * 2, 60.0)
            await asyncio.sleep(delay)
    finally:
        forwarder.close()


async def _refresh_mqtt(pki: Pki) -> None:
    """Keep a Mosquitto listener's CRLs, CA file and ACL current (``[mqtt]`` in config.toml), and
    SIGHUP the broker when they changed: a revoked device is refused at its next connection."""
    settings = pki.settings.mqtt
    if settings.config_dir is None:
        return
    channels = Channels.for_pki(pki)
    directory = Path(settings.config_dir)
    while True:
        try:
            changed = await asyncio.to_thread(channels.refresh_mosquitto_if_changed, directory)
            if changed and settings.pid_file is not None:
                reload_mosquitto(int(Path(settings.pid_file).read_text().strip()))
        except (OtwardError, OSError, ValueError) as exc:
            log.warning("MQTT listener refresh failed (retrying in %s s): %s", settings.refresh_seconds, exc)
        await asyncio.sleep(settings.refresh_seconds)


def _publish_stale_once(pki: Pki) -> list[str]:
    with pki.stores.database.singleton("crl-check") as held:
        return pki.revocation.publish_stale(SERVICE_ACTOR) if held else []


async def _keep_crls_current(pki: Pki) -> None:
    """Re-sign any CRL left behind a committed revocation (a worker or node killed between the two
    steps, a failed signature): one grouped count query per second, by one node at a time (the
    ``crl-check`` cluster lock), while every CRL is current. A revocation normally reaches every
    node at once: its node signs the CRL before answering, and every node serves CRLs and OCSP
    status from the database; this loop bounds the delay when that node died in between."""
    while True:
        await asyncio.sleep(CRL_CHECK_SECONDS)
        try:
            stale = await asyncio.to_thread(_publish_stale_once, pki)
        except OtwardError:
            log.exception("CRL check failed; retrying in %s s", CRL_CHECK_SECONDS)
        else:
            if stale:
                log.warning(
                    "CRLs of %s were behind a committed revocation and were re-signed", ", ".join(stale)
                )


async def _notify(pki: Pki) -> None:
    """Run the notification checks every ``[notify] interval`` and deliver the outbox every few
    seconds (retries included). On several nodes each does this: decisions are serialised and
    outbox rows claimed in the database, so every message goes out once per attempt."""
    if not Notifier.configured(pki.settings):
        return
    notifier = Notifier.for_pki(pki)
    loop = asyncio.get_running_loop()
    interval = pki.settings.notify.interval_delta.total_seconds()
    next_check = loop.time()
    try:
        while True:
            if loop.time() >= next_check:
                next_check = loop.time() + interval
                try:
                    await asyncio.to_thread(notifier.decide, SERVICE_ACTOR)
                except OtwardError as exc:
                    log.warning("notification checks failed (again in %d s): %s", interval, exc)
            try:
                await asyncio.to_thread(notifier.drain, SERVICE_ACTOR)
            except OtwardError as exc:
                log.warning("notification outbox not drained: %s", exc)
            await asyncio.sleep(NOTIFY_DRAIN_SECONDS)
    finally:
        notifier.close()


async def _exit_when_orphaned(stop: Callable[[], None], parent: int) -> None:
    """A worker whose supervisor died (even by SIGKILL) stops serving instead of running on unwatched.

    ``parent`` is the supervisor's pid as the supervisor saw it, so a supervisor that died while
    this worker was still starting is noticed too."""
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    log.warning("supervisor %d is gone; worker %d shutting down", parent, os.getpid())
    stop()


async def _serve_worker(
    options: ServeOptions, sockets: tuple[socket.socket, socket.socket], index: int, supervisor: int
) -> None:
    settings = load_settings(options.data_dir, database_url=options.database_url)
    if index > 0:
        sockets = (_own_listener(sockets[0]), _own_listener(sockets[1]))
    pki = Pki.open(settings, migrate=False)
    if settings.keys.backend == "pkcs11":
        try:
            pki.check_keys()  # this worker's own session on the token (spawned: nothing inherited)
        except BaseException:
            pki.close()
            raise
    app = create_app(pki, workers=options.workers)
    limits = _connection_limits(settings, options).for_workers(options.workers)
    https = _Server(_https_config(app, settings, options, _client_ca_file(settings)), limits, name="HTTPS")
    trust = ClientCaTrust(https.config.ssl)
    identity = ServiceIdentity(
        https.config.ssl, TlsFiles.in_dir(settings.data_dir), lambda: read_passphrase(settings.data_dir)
    )
    plain = _Server(
        uvicorn.Config(
            create_status_app(pki),
            http=GuardedHttpProtocol,
            access_log=options.access_log,
            lifespan="off",
            server_header=False,
            **forwarded_headers(_trusted_proxies(settings, options)),
        ),
        limits,
        name="plain HTTP",
    )
    loop = asyncio.get_running_loop()

    def stop() -> None:
        https.should_exit = plain.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    worker = {"worker": str(index), "pid": str(os.getpid())}
    pki.audit.record(pki.audit.event(SERVICE_ACTOR, EventType.SERVICE_STARTED, "otward", details=worker))
    if index == 0:
        await asyncio.to_thread(_housekeeping, pki, trust, identity, leader=True)
    periodic = asyncio.create_task(_periodic(pki, trust, identity, leader=index == 0))
    signing = asyncio.create_task(_sign_audit_heads(pki))
    orphan_watch = asyncio.create_task(_exit_when_orphaned(stop, supervisor))
    leader_tasks = []
    if index == 0:
        leader_tasks = [
            asyncio.create_task(task(pki))
            for task in (_forward_audit, _refresh_mqtt, _keep_crls_current, _notify)
        ]
    try:
        await asyncio.gather(https.serve(sockets=[sockets[0]]), plain.serve(sockets=[sockets[1]]))
    finally:
        for task in (periodic, signing, orphan_watch, *leader_tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        pki.record_aggregates(SERVICE_ACTOR)
        pki.audit.record(pki.audit.event(SERVICE_ACTOR, EventType.SERVICE_STOPPED, "otward", details=worker))
        pki.close()  # signs the audit head on the way out


def _worker_main(
    options: ServeOptions, sockets: tuple[socket.socket, socket.socket], index: int, supervisor: int
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log_lifecycle_once()  # two servers in this process: each start and stop line once
    # uvloop: the faster event loop for both the TLS API and the plain-HTTP OCSP port.
    uvloop.run(_serve_worker(options, sockets, index, supervisor))


def serve(options: ServeOptions, announce: Callable[[str], None] = log.info) -> None:
    """Serve until SIGINT/SIGTERM. Before any worker starts, the schema is migrated and the
    service's certificate reissued if ``[server] names`` changed; ``announce`` tells the console."""
    settings = load_settings(options.data_dir, database_url=options.database_url)
    _connection_limits(settings, options)  # checked before anything changes or starts
    if Notifier.configured(settings):
        for channel in open_channels(settings.notify):  # secret files (0600) and CA files readable
            getattr(channel, "close", lambda: None)()
    change = upgrade_database(settings)
    if change.before != change.after:
        announce(f"database schema upgraded from {change.before or 'an empty database'} to {change.after}")
    pki = Pki.open(settings)
    try:
        pki.check_ready()  # an issuing CA still waiting for its certificate: say so, serve nothing
        if settings.keys.backend == "pkcs11":
            pki.check_keys()  # a missing token or a wrong PIN stops the service here, before it listens
        _write_client_cas(pki, _client_ca_file(settings))
        renewed = renew_service_certificate_if_due(pki, settings.data_dir, SERVICE_ACTOR)
        if renewed:
            announce(f"the service's TLS certificate was reissued: {renewed}")
        if settings.console.enabled and not any(
            a.password_hash and a.disabled_at is None for a in pki.accounts.list()
        ):
            announce(
                "web console at /ui: no account can sign in yet; make one with `otward admin add NAME"
                " --roles admin,pki-officer,enrollment-officer,access-manager` (docs/console.md)"
            )
    finally:
        pki.close()
    if options.workers < 1:
        raise ConfigError("--workers must be at least 1")
    sockets = (_bind(options.host, options.port), _bind(options.host, options.http_port))
    # Workers share request and OCSP counters through files (prometheus-client multiprocess mode).
    metrics_dir = _fresh_metrics_dir(settings.data_dir / "run")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    try:
        _run_workers(options, sockets)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _fresh_metrics_dir(run_dir: Path) -> Path:
    """``DATA/run/metrics-<pid>``, after removing those of services that are no longer running."""
    run_dir.mkdir(mode=0o700, exist_ok=True)
    for stale in run_dir.glob("metrics-*"):
        pid = stale.name.removeprefix("metrics-")
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    path = run_dir / f"metrics-{os.getpid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run_workers(options: ServeOptions, sockets: tuple[socket.socket, socket.socket]) -> None:
    # Workers are always separate processes, even one: they must import prometheus-client
    # after PROMETHEUS_MULTIPROC_DIR is set, which this process did before it knew it would serve.
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=_worker_main,
            args=(options, sockets, i, os.getpid()),
            name=f"otward-worker-{i}",
            daemon=False,
        )
        for i in range(options.workers)
    ]
    for process in processes:
        process.start()

    def forward(signum: int, _frame: object) -> None:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for process in processes:
        process.join()
