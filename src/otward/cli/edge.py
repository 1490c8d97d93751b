"""``otward access bundle``, ``otward access credential issue|revoke|list`` and
``otward edge serve|decide|token ...|trail``: the edge gatekeeper's central and asset sides."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from otward.adapters.files import read_limited
from otward.cli.common import (
    Column,
    DataOption,
    DbOption,
    JsonOption,
    cli_actor,
    console,
    count_line,
    handle_errors,
    open_pki,
    parse_host_port,
    print_json,
    print_listing,
    resolve_data_dir,
    trusted_proxies,
    warn,
)
from otward.core.durations import parse_duration
from otward.core.edge.formats import certificate_thumbprint
from otward.edge.tokens import MAX_TOKEN, unverified_bundle_timezone
from otward.errors import ConfigError, ConflictError, ParseError
from otward.services.access import parse_instant
from otward.services.edge import load_holder_public_key

__all__ = ["app", "bundle", "credential_app", "token_app"]

app = typer.Typer(help="The edge gatekeeper at an asset: serve, decide; sync tokens.", no_args_is_help=True)
credential_app = typer.Typer(help="Access credentials of holders: issue, revoke, list.", no_args_is_help=True)
token_app = typer.Typer(
    help="Sync tokens for gatekeepers (one asset each): create, list, revoke.", no_args_is_help=True
)
app.add_typer(token_app, name="token")

RootOption = Annotated[
    Path | None,
    typer.Option(
        "--ca-file", help="The otward root the asset trusts [default: DATA/root.pem]", show_default=False
    ),
]


def _write(path: Path, text: str, *, exclusive: bool = False) -> None:
    """Write ``text`` with mode 0600 (created exclusively for secrets: an existing file is never replaced)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise ConflictError(f"{path} exists; not overwriting it", rule="file-exists") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(text if text.endswith("\n") else text + "\n")


def _read(path: Path, what: str, limit: int = 64 << 10) -> bytes:
    """A key, credential or bundle file: keys and credentials are a few KiB, bundles up to 4 MiB."""
    return read_limited(path, limit, what)


def _roots_file(ca_file: Path | None, data: Path | None) -> Path:
    path = ca_file if ca_file is not None else resolve_data_dir(data) / "root.pem"
    if not path.exists():
        raise ConfigError(f"trusted root {path} not found (give --ca-file)", rule="edge-roots")
    return path


# --- otward access bundle -------------------------------------------------------------------------


@handle_errors
def bundle(
    asset: Annotated[str, typer.Option("--asset", help="The asset the bundle is for")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the signed bundle (JWS)")],
    ttl: Annotated[str, typer.Option("--ttl", help="Lifetime, e.g. 7d, 12h")] = "7d",
    fail_open: Annotated[
        list[str] | None,
        typer.Option("--fail-open", help="A function still decided once the bundle expired (repeatable)"),
    ] = None,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Sign the asset's policy bundle: its policies and people, revoked credentials, a new version."""
    with open_pki(data, db) as pki:
        record = pki.edge.issue_bundle(
            asset, ttl=parse_duration(ttl), fail_open=fail_open or (), actor=cli_actor()
        )
    _write(out, record.token)
    info = {
        "asset": record.asset,
        "version": record.version,
        "issued_at": record.issued_at,
        "expires_at": record.expires_at,
        "fail_open": sorted(fail_open or ()),
        "out": str(out),
    }
    if as_json:
        print_json(info)
    else:
        console.print(
            f"bundle {record.version} for {asset} written to {out}"
            f" (expires {record.expires_at:%Y-%m-%d %H:%M} UTC)",
            highlight=False,
        )


# --- otward access credential ---------------------------------------------------------------------


@credential_app.command("issue")
@handle_errors
def credential_issue(
    person: Annotated[str, typer.Argument(help="Person or robot id")],
    public_key: Annotated[Path, typer.Option("--public-key", help="The holder's public key (PEM)")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the credential (JWT)")],
    ttl: Annotated[str, typer.Option("--ttl", help="Lifetime, e.g. 12h")] = "12h",
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Bind the holder's public key to PERSON for TTL; the private key never leaves the holder.

    The credential names the edge signer by its certificate thumbprint (x5t#S256) instead of carrying its
    certificates: a gatekeeper knows the signer from the asset's bundle."""
    key = load_holder_public_key(_read(public_key, "public key"))
    with open_pki(data, db) as pki:
        issued = pki.edge.issue_credential(person, key, ttl=parse_duration(ttl), actor=cli_actor())
        signer = certificate_thumbprint(pki.edge.signer()[1][0])
    _write(out, issued.token)
    record = issued.record
    if as_json:
        print_json(
            {
                "credential_id": record.credential_id,
                "person": record.person,
                "key_thumbprint": record.key_thumbprint,
                "signer": signer,
                "issued_at": record.issued_at,
                "expires_at": record.expires_at,
                "out": str(out),
            }
        )
    else:
        console.print(
            f"credential {record.credential_id} for {person} written to {out}"
            f" (expires {record.expires_at:%Y-%m-%d %H:%M} UTC; signer x5t#S256 {signer})",
            highlight=False,
        )


@credential_app.command("revoke")
@handle_errors
def credential_revoke(
    credential_id: Annotated[str, typer.Argument(help="Credential id (jti)")],
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke for good: every asset the person may use refuses it from its next bundle on."""
    with open_pki(data, db) as pki:
        record = pki.edge.revoke_credential(credential_id, cli_actor())
    if as_json:
        print_json(
            {"credential_id": record.credential_id, "person": record.person, "revoked_at": record.revoked_at}
        )
    else:
        console.print(f"revoked credential {record.credential_id} of {record.person}", highlight=False)


@credential_app.command("list")
@handle_errors
def credential_list(
    person: Annotated[str | None, typer.Option("--person", help="Only this person's")] = None,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Credentials issued: id, person, validity, status (the tokens themselves are not kept)."""
    with open_pki(data, db) as pki:
        records = pki.edge.credentials(person)
        now = pki.clock()
    rows = [
        {
            "credential_id": r.credential_id,
            "person": r.person,
            "key_thumbprint": r.key_thumbprint,
            "issued_at": r.issued_at,
            "expires_at": r.expires_at,
            "revoked_at": r.revoked_at,
            "status": r.status(now),
        }
        for r in records
    ]
    columns = {"id": "credential_id", "person": "person", "issued (UTC)": "issued_at"}
    print_listing(
        rows,
        {**columns, "expires (UTC)": "expires_at", "status": "status"},
        as_json=as_json,
        summary=count_line(len(rows), None, "credential"),
    )


# --- otward edge token ----------------------------------------------------------------------------


@token_app.command("create")
@handle_errors
def token_create(
    asset: Annotated[str, typer.Option("--asset", help="The one asset this gatekeeper token syncs")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the token here (0600) instead of printing")
    ] = None,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """A sync token for ASSET's gatekeeper, shown once (only its SHA-256 is stored)."""
    if out is not None and out.exists():
        raise ConflictError(f"{out} exists; not overwriting it", rule="file-exists")
    with open_pki(data, db) as pki:
        record, token = pki.edge.create_token(asset, cli_actor())
    if out is not None:
        _write(out, token, exclusive=True)
    if as_json:
        print_json({"token_id": record.token_id, "asset": record.asset, **({} if out else {"token": token})})
    elif out is not None:
        console.print(f"edge token {record.token_id} for {asset} written to {out}", highlight=False)
    else:
        console.print(f"edge token {record.token_id} for {asset}; it is shown only now:", highlight=False)
        typer.echo(token)


@token_app.command("list")
@handle_errors
def token_list(data: DataOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Gatekeeper sync tokens (ids and assets; secrets are never stored)."""
    with open_pki(data, db) as pki:
        records = pki.edge.tokens()
    rows = [
        {"token_id": r.token_id, "asset": r.asset, "created_at": r.created_at, "revoked_at": r.revoked_at}
        for r in records
    ]
    columns = {
        "id": "token_id",
        "asset": "asset",
        "created (UTC)": "created_at",
        "revoked (UTC)": "revoked_at",
    }
    print_listing(rows, columns, as_json=as_json, summary=count_line(len(rows), None, "gatekeeper token"))


@token_app.command("revoke")
@handle_errors
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="Token id (the part after otwg_)")],
    data: DataOption = None,
    db: DbOption = None,
) -> None:
    """Revoke a gatekeeper's sync token for good."""
    with open_pki(data, db) as pki:
        record = pki.edge.revoke_token(token_id, cli_actor())
    console.print(f"revoked edge token {record.token_id} ({record.asset})", highlight=False)


# --- otward edge serve | decide | trail -----------------------------------------------------------


@app.command("serve")
@handle_errors
def serve(
    asset: Annotated[str, typer.Option("--asset", help="This asset's id")],
    state: Annotated[Path, typer.Option("--state", help="State directory: bundle, version, trail")],
    bundle_file: Annotated[
        Path | None, typer.Option("--bundle", help="A bundle to install at start (refused if older)")
    ] = None,
    listen: Annotated[str, typer.Option("--listen", help="HOST:PORT of the local API")] = "127.0.0.1:8700",
    sync: Annotated[
        str | None, typer.Option("--sync", help="Central server URL, e.g. https://ca:8443")
    ] = None,
    token_file: Annotated[Path | None, typer.Option("--token-file", help="Edge token for --sync")] = None,
    ca_file: RootOption = None,
    sync_interval: Annotated[
        float, typer.Option("--sync-interval", min=0.1, help="Seconds between syncs")
    ] = 10.0,
    skew: Annotated[int, typer.Option("--skew", min=0, help="Clock skew tolerated, seconds")] = 60,
    trail_sync: Annotated[
        str,
        typer.Option(
            "--trail-sync",
            help="always: answer after the decision's record is fsynced; batch: answer after it is"
            " written and flushed, fsync every --trail-sync-interval-ms (a power cut can lose the last"
            " few ms of records)",
        ),
    ] = "always",
    trail_sync_interval_ms: Annotated[
        float,
        typer.Option(
            "--trail-sync-interval-ms", min=0.1, max=10000, help="Milliseconds between fsyncs with batch"
        ),
    ] = 5.0,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="Serve the local API over HTTPS with this certificate")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="Key of --tls-cert (mode 0600)")] = None,
    tls_client_ca: Annotated[
        Path | None,
        typer.Option("--tls-client-ca", help="Admit only readers with a client certificate from these CAs"),
    ] = None,
    trusted_proxy: Annotated[
        list[str] | None,
        typer.Option(
            "--trusted-proxy",
            help="Address or network of a reverse proxy whose X-Forwarded-For is believed (repeatable)"
            " [default: none, the TCP peer is the reader]",
        ),
    ] = None,
    max_connections: Annotated[
        int, typer.Option("--max-connections", min=1, help="Connections the local API holds at most")
    ] = 256,
    max_connections_per_source: Annotated[
        int,
        typer.Option(
            "--max-connections-per-source",
            min=1,
            help="Connections one address holds at most (trusted proxies are exempt)",
        ),
    ] = 32,
    handshake_timeout: Annotated[
        float, typer.Option("--handshake-timeout", min=0.1, help="Seconds for a TLS handshake")
    ] = 10.0,
    request_timeout: Annotated[
        float,
        typer.Option(
            "--request-timeout",
            min=0.1,
            help="Seconds for a request head to arrive (from the connection or its first byte), and"
            " for each 16 KiB of its body",
        ),
    ] = 10.0,
    idle_timeout: Annotated[
        float,
        typer.Option(
            "--idle-timeout",
            min=0.1,
            help="Seconds a keep-alive connection may stay idle, and a client may leave its answer unread",
        ),
    ] = 15.0,
    data: DataOption = None,
) -> None:
    """Decide access requests at ASSET offline; with --sync, pull newer bundles and push the trail."""
    from otward.edge.server import EdgeServeOptions, check_tls_options, serve_gatekeeper
    from otward.web.connections import ConnectionLimits

    host, port = parse_host_port(listen, "--listen")
    check_tls_options(tls_cert, tls_key, tls_client_ca)
    if trail_sync not in ("always", "batch"):
        raise ConfigError(f"--trail-sync {trail_sync!r}: expected always or batch", rule="edge-trail-sync")
    roots = _roots_file(ca_file, data)
    console.print(
        f"otward edge gatekeeper for {asset}: {'https' if tls_cert else 'http'}://{host}:{port}/v1/"
        + (" (readers need a client certificate)" if tls_client_ca else "")
        + f" (state {state})"
        + (f", syncing with {sync} every {sync_interval:g} s" if sync else ", offline")
        + (f"; trail fsynced every {trail_sync_interval_ms:g} ms" if trail_sync == "batch" else ""),
        highlight=False,
    )
    serve_gatekeeper(
        EdgeServeOptions(
            asset=asset,
            bundle=bundle_file,
            state_dir=state,
            roots_file=roots,
            host=host,
            port=port,
            sync_url=sync,
            token_file=token_file,
            ca_file=ca_file if ca_file is not None else roots,
            sync_interval=sync_interval,
            skew_seconds=skew,
            trail_sync="batch" if trail_sync == "batch" else "always",
            trail_sync_interval_ms=trail_sync_interval_ms,
            tls_certificate=tls_cert,
            tls_key=tls_key,
            tls_client_ca=tls_client_ca,
            trusted_proxies=trusted_proxies(trusted_proxy),
            limits=ConnectionLimits(
                max_connections=max_connections,
                max_connections_per_source=max_connections_per_source,
                handshake_timeout=handshake_timeout,
                header_timeout=request_timeout,
                body_timeout=request_timeout,
                idle_timeout=idle_timeout,
                write_timeout=idle_timeout,
                unlimited_sources=trusted_proxies(trusted_proxy),
            ),
        ),
        announce=warn,
    )


def _load_holder_key(path: Path) -> CertificateIssuerPrivateKeyTypes:
    try:
        key = serialization.load_pem_private_key(_read(path, "holder key"), password=None)
    except (ValueError, TypeError) as exc:
        raise ParseError(
            f"holder key {path} is not an unencrypted PEM private key: {exc}", rule="holder-key"
        ) from None
    return key  # type: ignore[return-value]


@app.command("decide")
@handle_errors
def decide(
    bundle_file: Annotated[Path, typer.Option("--bundle", help="The asset's signed bundle")],
    credential: Annotated[Path, typer.Option("--credential", help="The holder's credential (JWT)")],
    holder_key: Annotated[Path, typer.Option("--holder-key", help="The holder's private key (PEM)")],
    asset: Annotated[str, typer.Option("--asset", help="The asset asked")],
    function: Annotated[str, typer.Option("--function", help="The function wanted")],
    at: Annotated[
        str | None,
        typer.Option("--at", help="ISO 8601 instant (no offset: local site time) [default: now]"),
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option("--state", help="Keep state and trail here [default: a temporary directory]"),
    ] = None,
    ca_file: RootOption = None,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run the whole exchange in one process: challenge, signed answer, decision (as of --at)."""
    from otward.edge.gatekeeper import Gatekeeper, load_roots
    from otward.edge.holder import run_exchange

    token = _read(bundle_file, "bundle", MAX_TOKEN + 2).decode(errors="replace")
    key = _load_holder_key(holder_key)
    instant = parse_instant(at, unverified_bundle_timezone(token) or "UTC") if at else None
    roots = load_roots(_roots_file(ca_file, data))
    with tempfile.TemporaryDirectory(prefix="otward-edge-") as temporary:
        with Gatekeeper(asset, roots, state or Path(temporary)) as gatekeeper:
            outcome = gatekeeper.install_bundle(token, at=instant, keep_expired=True)
            verdict = run_exchange(
                gatekeeper,
                _read(credential, "credential").decode(errors="replace"),
                key,
                function,
                at=instant,
            )
    result = {
        "decision": verdict.decision,
        "reason": verdict.reason if verdict.bundle_version else f"{verdict.reason} ({outcome.reason})",
        "asset": asset,
        "function": function,
        "person": verdict.person,
        "credential_id": verdict.credential_id,
        "policies": list(verdict.policies),
        "bundle_version": verdict.bundle_version,
        "local_time": verdict.local_time,
    }
    if as_json:
        print_json(result)
    else:
        colour = "green" if verdict.allowed else "red"
        console.print(f"[bold {colour}]{verdict.decision}[/]: {result['reason']}", highlight=False)


@app.command("trail")
@handle_errors
def trail(
    asset: Annotated[str, typer.Argument(help="The asset whose pushed trail to show")],
    after: Annotated[int, typer.Option("--after", min=0, help="Only records after this sequence")] = 0,
    limit: Annotated[int, typer.Option("--limit", min=1, max=5000)] = 1000,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """The trail records ASSET's gatekeeper pushed to the central server."""
    with open_pki(data, db) as pki:
        records = pki.edge.trail(asset, after=after, limit=limit)
    rows = [{"sequence": r.sequence, "hash": r.hash.hex(), **r.event.to_dict()} for r in records]
    columns: dict[str, Column] = {"seq": "sequence"}
    columns["time (UTC)"] = lambda row: row["time"][:19].replace("T", " ")
    columns |= {"type": "type", "subject": "subject", "outcome": "outcome", "reason": "reason"}
    print_listing(rows, columns, as_json=as_json, summary=count_line(len(rows), None, "record"))
