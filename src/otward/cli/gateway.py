"""``otward gateway``: the mutual-TLS (and Modbus/TCP Security) gateway in front of a plain upstream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from otward.adapters.audit_file import FileAuditTrail
from otward.adapters.files import read_limited
from otward.cli.common import err_console, handle_errors, parse_host_port
from otward.errors import ConfigError
from otward.gateway.audit import AuditWriter
from otward.gateway.proxy import Gateway, GatewayOptions, install_uvloop, load_policy
from otward.gateway.revocation import RevocationChecker, StalePolicy
from otward.gateway.tls import load_trusted_certificates, server_context
from otward.gateway.trail_sync import TrailSync

__all__ = ["gateway"]


def _existing(path: Path, option: str) -> Path:
    if not path.exists():
        raise ConfigError(f"{option} {path}: no such file")
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a directory, not a file")
    return path


@handle_errors
def gateway(
    listen: Annotated[
        str, typer.Option("--listen", help="HOST:PORT to accept TLS on (Modbus/TCP Security: 802)")
    ],
    upstream: Annotated[str, typer.Option("--upstream", help="HOST:PORT of the plain TCP device or server")],
    trust: Annotated[
        Path, typer.Option("--trust", help="PEM: the CA certificates client certificates must chain to")
    ],
    cert: Annotated[Path, typer.Option("--cert", help="PEM: the gateway's certificate (and chain)")],
    key: Annotated[Path, typer.Option("--key", help="PEM: the gateway's private key (keep it 0600)")],
    modbus_policy: Annotated[
        Path | None, typer.Option("--modbus-policy", help="TOML role policy: parse and authorize Modbus")
    ] = None,
    allow_identity: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-identity",
            help="Admit only this client CN or URI SAN, or a device as urn:otward:device:OWNER:ID"
            " (repeatable; tunnel mode)",
        ),
    ] = None,
    crl_url: Annotated[
        list[str] | None,
        typer.Option("--crl-url", help="CRL to enforce, e.g. http://ca:8080/crl/issuing.crl"),
    ] = None,
    revocation_refresh: Annotated[
        float, typer.Option("--revocation-refresh", min=0.5, help="Seconds between CRL fetches")
    ] = 30.0,
    crl_stale: Annotated[
        StalePolicy, typer.Option("--crl-stale", help="A CRL past nextUpdate: keep enforcing it, or refuse")
    ] = StalePolicy.KEEP,
    crl_cache: Annotated[
        Path | None, typer.Option("--crl-cache", help="Directory keeping the last good CRLs across restarts")
    ] = None,
    sync: Annotated[
        str | None,
        typer.Option(
            "--sync", help="Central server URL to push the --audit-file trail to, e.g. https://ca:8443"
        ),
    ] = None,
    asset: Annotated[
        str | None,
        typer.Option("--asset", help="The gateway's name at the central server (its edge token's asset)"),
    ] = None,
    token_file: Annotated[
        Path | None, typer.Option("--token-file", help="Edge token for --sync (otward edge token create)")
    ] = None,
    ca_file: Annotated[
        Path | None, typer.Option("--ca-file", help="The otward root that --sync's certificate chains to")
    ] = None,
    sync_interval: Annotated[
        float, typer.Option("--sync-interval", min=0.1, help="Seconds between trail pushes")
    ] = 10.0,
    audit_file: Annotated[
        Path | None, typer.Option("--audit-file", help="Hash-chained JSONL audit trail (fsynced)")
    ] = None,
    max_connections: Annotated[int, typer.Option("--max-connections", min=1)] = 1000,
    max_connections_per_source: Annotated[
        int,
        typer.Option(
            "--max-connections-per-source",
            min=1,
            help="Connections one client IP address may hold, handshakes included",
        ),
    ] = 8,
    handshake_timeout: Annotated[float, typer.Option("--handshake-timeout", min=0.1, help="Seconds")] = 10.0,
    idle_timeout: Annotated[float, typer.Option("--idle-timeout", min=0.5, help="Seconds")] = 300.0,
    connect_timeout: Annotated[
        float, typer.Option("--connect-timeout", min=0.1, help="Seconds to reach the upstream")
    ] = 5.0,
    max_in_flight: Annotated[
        int,
        typer.Option(
            "--max-in-flight",
            min=1,
            max=1024,
            help="Modbus requests forwarded before the first is answered (1: one at a time)",
        ),
    ] = 1,
    loop: Annotated[
        str, typer.Option("--loop", help="auto (uvloop if installed), uvloop or asyncio")
    ] = "auto",
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning, error")] = "info",
) -> None:
    """Terminate mutual TLS and forward to a plain upstream; Modbus-aware with --modbus-policy."""
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request at INFO: a CRL fetch each --revocation-refresh seconds is routine
    # (the gateway's own DEBUG line says it; failures are warnings).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    listen_host, listen_port = parse_host_port(listen, "--listen")
    upstream_host, upstream_port = parse_host_port(upstream, "--upstream")
    policy = load_policy(_existing(modbus_policy, "--modbus-policy")) if modbus_policy else None
    if policy is not None and allow_identity:
        raise ConfigError("--allow-identity applies to tunnel mode; under --modbus-policy the role decides")
    trusted = load_trusted_certificates(_existing(trust, "--trust"))
    context = server_context(trust, _existing(cert, "--cert"), _existing(key, "--key"))
    token = _sync_token(sync, asset, token_file, audit_file)
    if loop not in ("auto", "uvloop", "asyncio"):
        raise ConfigError(f"--loop {loop!r}: expected auto, uvloop or asyncio")
    if loop != "asyncio" and not install_uvloop() and loop == "uvloop":
        raise ConfigError("--loop uvloop: uvloop is not installed")
    options = GatewayOptions(
        listen_host=listen_host,
        listen_port=listen_port,
        upstream_host=upstream_host,
        upstream_port=upstream_port,
        policy=policy,
        allow_identities=frozenset(allow_identity or ()),
        max_connections=max_connections,
        max_connections_per_source=max_connections_per_source,
        handshake_timeout=handshake_timeout,
        idle_timeout=idle_timeout,
        connect_timeout=connect_timeout,
        revocation_refresh=revocation_refresh,
        max_in_flight=max_in_flight,
    )
    # Batch sync: the events wait in an in-memory queue before the writer anyway, so fsyncing each one
    # would buy no durability, only CPU on the handshake path; the writer fsyncs every few ms.
    trail = FileAuditTrail(audit_file, sync="batch") if audit_file is not None else None
    pusher: TrailSync | None = None
    try:
        if trail is not None and sync is not None and asset is not None and token is not None:
            pusher = TrailSync(
                trail,
                sync,
                token,
                asset,
                ca_file=_existing(ca_file, "--ca-file") if ca_file is not None else None,
                interval=sync_interval,
            )
    except BaseException:
        if trail is not None:
            trail.close()
        raise
    audit = AuditWriter(trail)
    checker = RevocationChecker(trusted, crl_url or (), cache_dir=crl_cache, stale=crl_stale)
    server = Gateway(options, context, trusted, checker, audit)
    checker.warn = server.stale_warning
    try:
        if pusher is not None:
            pusher.start()
        asyncio.run(_run(server))
    finally:
        audit.close()  # the last events reach the trail file ...
        if pusher is not None:
            pusher.stop()  # ... and the central server
        if trail is not None:
            trail.close()


def _sync_token(
    sync: str | None, asset: str | None, token_file: Path | None, audit_file: Path | None
) -> str | None:
    """The edge token for --sync, checked with the options it needs; None without --sync."""
    if sync is None:
        if asset is not None or token_file is not None:
            raise ConfigError("--asset and --token-file go with --sync", rule="gateway-sync")
        return None
    missing = [
        name
        for name, value in (("--audit-file", audit_file), ("--asset", asset), ("--token-file", token_file))
        if value is None
    ]
    if missing:
        raise ConfigError(f"--sync needs {', '.join(missing)}", rule="gateway-sync")
    assert token_file is not None  # noqa: S101 - checked above
    return (
        read_limited(_existing(token_file, "--token-file"), 4096, "edge token file")
        .decode(errors="replace")
        .strip()
    )


async def _run(server: Gateway) -> None:
    await server.start()
    options = server.options
    mode = "Modbus/TCP Security" if options.policy is not None else "mTLS tunnel"
    err_console.print(
        f"otward gateway ({mode}) on {options.listen_host}:{server.port} -> "
        f"{options.upstream_host}:{options.upstream_port}",
        highlight=False,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    serving = asyncio.ensure_future(server.serve_forever())
    try:
        await stop.wait()
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        await server.close()
