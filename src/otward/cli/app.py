"""The ``otward`` command line. Commands parse options, call a service and print; no logic lives here."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from otward import __version__
from otward.cli import access as access_cli
from otward.cli import agent, audit, ca, cert, crl, device, log, owner, signer, token
from otward.cli import db as db_cli
from otward.cli import edge as edge_cli
from otward.cli import gateway as gateway_cli
from otward.cli import mqtt as mqtt_cli
from otward.cli import opcua as opcua_cli
from otward.cli.common import (
    DataOption,
    DbOption,
    JsonOption,
    cli_actor,
    console,
    err_console,
    handle_errors,
    print_json,
    resolve_data_dir,
    trusted_proxies,
)
from otward.config import CONFIG_FILE, mask_database_url
from otward.core.keys import KeyType
from otward.services.bootstrap import InitResult, initialize

__all__ = ["app", "main"]

app = typer.Typer(
    name="otward",
    help="otward: private PKI, device identity and secure channels for industrial sites.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(ca.app, name="ca")
app.add_typer(cert.app, name="cert")
app.add_typer(crl.app, name="crl")
app.add_typer(db_cli.app, name="db")
app.add_typer(audit.app, name="audit")
app.add_typer(log.app, name="log")
app.add_typer(signer.app, name="signer")
app.add_typer(token.app, name="api-token")
app.add_typer(owner.owner_app, name="owner")
app.add_typer(owner.token_app, name="token")
app.add_typer(device.app, name="device")
app.add_typer(agent.app, name="agent")
app.add_typer(access_cli.app, name="access")
access_cli.app.command("bundle")(edge_cli.bundle)
access_cli.app.add_typer(edge_cli.credential_app, name="credential")
app.add_typer(edge_cli.app, name="edge")
app.command("mqtt-config")(mqtt_cli.mqtt_config)
app.add_typer(opcua_cli.app, name="opcua")
app.command("gateway")(gateway_cli.gateway)


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version")
    ] = False,
) -> None:
    """otward command line."""


def _initialize(
    data_dir: Path, *, key_type: str, org: str, public_url: str, db: str | None, quiet: bool
) -> InitResult:
    parsed = KeyType.parse(key_type)
    progress = (
        contextlib.nullcontext()
        if quiet
        else Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err_console
        )
    )
    with progress as bar:
        if bar is not None:
            bar.add_task(
                f"creating root and issuing CA ({parsed.value}), responders, service TLS, admin token…"
            )
        return initialize(
            data_dir,
            key_type=parsed,
            organization=org,
            public_url=public_url,
            database_url=db,
            actor=cli_actor(),
        )


def _report(result: InitResult, as_json: bool) -> None:
    info = {
        "data_dir": str(result.settings.data_dir),
        "database_url": mask_database_url(result.settings.database_url),
        "root_certificate": str(result.tls.root_certificate),
        "root_sha256_fingerprint": result.root_fingerprint,
        "admin_token_file": str(result.admin_token_file),
        "ca_passphrase_file": str(result.passphrase_file) if result.passphrase_file else None,
        "public_url": result.settings.public_url,
    }
    if as_json:
        print_json(info)
        return
    console.print(f"initialised [bold]{info['data_dir']}[/]", highlight=False)
    for key, value in info.items():
        if key != "data_dir" and value:
            console.print(f"  {key.replace('_', ' ')}: {value}", highlight=False)
    if result.passphrase_file:
        console.print(
            "  [yellow]back up ca.pass separately from the keys: without it the CA keys are lost[/]"
        )


@app.command("init")
@handle_errors
def init(
    data: DataOption = None,
    key_type: Annotated[
        str, typer.Option("--key-type", help="ec-p256, ec-p384, ed25519, rsa-2048, rsa-3072, rsa-4096")
    ] = "ec-p256",
    org: Annotated[str, typer.Option("--org", help="Organization name in CA subjects")] = "otward",
    public_url: Annotated[
        str, typer.Option("--public-url", help="Base URL for CRL/OCSP links in certificates")
    ] = "http://127.0.0.1:8080",
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a data directory: database, root and issuing CA, OCSP responders, service TLS, admin token."""
    result = _initialize(
        resolve_data_dir(data), key_type=key_type, org=org, public_url=public_url, db=db, quiet=as_json
    )
    _report(result, as_json)


@app.command("serve")
@handle_errors
def serve(
    data: DataOption = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="HTTPS API port")] = 8443,
    http_port: Annotated[int, typer.Option("--http-port", help="Plain-HTTP port for CRL and OCSP")] = 8080,
    db: DbOption = None,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Worker processes")] = 1,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request")] = False,
    trusted_proxy: Annotated[
        list[str] | None,
        typer.Option(
            "--trusted-proxy",
            help="Address or network of a reverse proxy whose X-Forwarded-For is believed (repeatable;"
            " also [server] trusted_proxies) [default: none, the TCP peer is the client]",
        ),
    ] = None,
) -> None:
    """Serve the HTTPS API (OpenAPI at /docs) and CRL/OCSP over plain HTTP. Initialises DATA on first run."""
    from otward.http.server import ServeOptions
    from otward.http.server import serve as run_server

    data_dir = resolve_data_dir(data)
    if not (data_dir / CONFIG_FILE).exists():
        public_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{http_port}"  # noqa: S104
        _report(
            _initialize(
                data_dir, key_type="ec-p256", org="otward", public_url=public_url, db=db, quiet=False
            ),
            False,
        )
    console.print(
        f"otward {__version__}: API https://{host}:{port}/docs, CRL/OCSP http://{host}:{http_port}",
        highlight=False,
    )
    run_server(
        ServeOptions(
            data_dir=data_dir,
            database_url=db,
            host=host,
            port=port,
            http_port=http_port,
            workers=workers,
            access_log=access_log,
            trusted_proxies=trusted_proxies(trusted_proxy),
        )
    )


def main() -> None:
    app()
