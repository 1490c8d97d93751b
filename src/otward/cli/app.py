"""The ``otward`` command line. Commands parse options, call a service and print; no logic lives here."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509
from rich.markup import escape

from otward import __version__
from otward.cli import access as access_cli
from otward.cli import admin as admin_cli
from otward.cli import agent, audit, ca, cert, crl, device, log, owner, signer, token
from otward.cli import approvals as approvals_cli
from otward.cli import assess as assess_cli
from otward.cli import assess_report as _assess_report  # noqa: F401 - registers 'assess report'
from otward.cli import assess_self as _assess_self  # noqa: F401 - registers 'assess self'
from otward.cli import backup as backup_cli
from otward.cli import db as db_cli
from otward.cli import deploy as deploy_cli
from otward.cli import doctor as doctor_cli
from otward.cli import edge as edge_cli
from otward.cli import firmware as firmware_cli
from otward.cli import gateway as gateway_cli
from otward.cli import manufacturer as manufacturer_cli
from otward.cli import mqtt as mqtt_cli
from otward.cli import notify as notify_cli
from otward.cli import opcua as opcua_cli
from otward.cli.common import (
    DataOption,
    DbOption,
    JsonOption,
    cli_actor,
    console,
    handle_errors,
    print_json,
    resolve_data_dir,
    set_invocation_account,
    set_invocation_data_dir,
    trusted_proxies,
    working,
)
from otward.cli.permissions import is_local_group
from otward.config import (
    CONFIG_FILE,
    DEFAULT_SERVICE_NAMES,
    KeySettings,
    default_public_url,
    load_settings,
    mask_database_url,
)
from otward.core.keys import KeyType
from otward.errors import ConfigError, PermissionDeniedError
from otward.services.bootstrap import (
    InitResult,
    check_first_run_options,
    check_target,
    initialize,
    service_names,
)

DEFAULT_ORGANIZATION = "otward"
DEFAULT_KEY_TYPE = KeyType.EC_P256.value

__all__ = ["app", "main"]

app = typer.Typer(
    name="otward",
    help="otward: private PKI, device identity and secure channels for industrial sites.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(approvals_cli.app, name="approvals")
app.add_typer(ca.app, name="ca")
app.add_typer(cert.app, name="cert")
app.add_typer(crl.app, name="crl")
app.add_typer(db_cli.app, name="db")
app.add_typer(deploy_cli.app, name="deploy")
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
app.add_typer(assess_cli.app, name="assess")
app.add_typer(manufacturer_cli.app, name="manufacturer")  # zero-touch onboarding (issue 19)
device.app.command("claim")(manufacturer_cli.claim)
device.app.command("claims")(manufacturer_cli.list_claims)
device.app.command("release")(manufacturer_cli.release)
app.add_typer(notify_cli.app, name="notify")
app.command("backup")(backup_cli.backup)
app.command("restore")(backup_cli.restore)
app.command("doctor")(doctor_cli.doctor)
app.add_typer(firmware_cli.app, name="firmware")
app.add_typer(admin_cli.app, name="admin")


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit


@app.callback()
@handle_errors
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version")
    ] = False,
    data: DataOption = None,
    as_account: Annotated[
        str | None,
        typer.Option(
            "--as",
            envvar="OTWARD_AS",
            help="Act as this account (its password and TOTP code are asked for, or read from"
            " $OTWARD_PASSWORD_FILE and $OTWARD_TOTP_FILE) [default: local root mode]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """otward command line. ``--data DIR`` goes before the command or after it (after wins)."""
    set_invocation_data_dir(data)
    set_invocation_account(as_account)
    if as_account and is_local_group(ctx.invoked_subcommand):
        raise PermissionDeniedError(
            f"'otward {ctx.invoked_subcommand}' runs only in local root mode (without --as)", rule="role"
        )


KeyTypeOption = Annotated[
    str | None,
    typer.Option(
        "--key-type",
        help="CA key type: ec-p256, ec-p384, ec-p521, ed25519, rsa-2048, rsa-3072, rsa-4096"
        " [default: ec-p256]",
        show_default=False,
    ),
]
OrgOption = Annotated[
    str | None,
    typer.Option("--org", help="Organization name in CA subjects [default: otward]", show_default=False),
]
NameOption = Annotated[
    list[str] | None,
    typer.Option(
        "--name",
        help="DNS name or IP address clients reach the service by (repeatable; localhost and 127.0.0.1"
        " are added; kept as [server] names in config.toml)",
        show_default=False,
    ),
]


def _initialize(
    data_dir: Path,
    *,
    key_type: KeyType,
    org: str,
    public_url: str,
    names: tuple[str, ...],
    db: str | None,
    quiet: bool,
    keys: KeySettings | None = None,
    external_root: x509.Certificate | None = None,
) -> InitResult:
    check_target(data_dir)  # before saying what it creates: an existing installation is refused first
    with (
        contextlib.nullcontext()
        if quiet
        else working(f"creating root and issuing CA ({key_type.value}), responders, service TLS, admin token")
    ):
        return initialize(
            data_dir,
            key_type=key_type,
            organization=org,
            public_url=public_url,
            database_url=db,
            server_names=names,
            actor=cli_actor(),
            keys=keys,
            external_root=external_root,
        )


def _ca_summary(certificate: x509.Certificate, key_type: KeyType) -> str:
    return (
        f"{certificate.subject.rfc4514_string()} ({key_type.value}, "
        f"valid until {certificate.not_valid_after_utc:%Y-%m-%d})"
    )


def _report(result: InitResult, as_json: bool) -> None:
    info = {
        "data_dir": str(result.settings.data_dir),
        "organization": result.settings.organization,
        "key_type": result.key_type.value,
        "root_ca": result.root.subject.rfc4514_string(),
        "root_not_valid_after": result.root.not_valid_after_utc,
        "issuing_ca": result.issuing.subject.rfc4514_string() if result.issuing else None,
        "issuing_csr": str(result.issuing_csr) if result.issuing_csr else None,
        "service_names": list(result.service_names),
        "database_url": mask_database_url(result.settings.database_url),
        "root_certificate": str(result.tls.root_certificate),
        "root_sha256_fingerprint": result.root_fingerprint,
        "admin_token_file": str(result.admin_token_file),
        "ca_passphrase_file": str(result.passphrase_file) if result.passphrase_file else None,
        "public_url": result.settings.public_url,
        "key_backend": result.settings.keys.backend,
        "pkcs11_token": result.settings.keys.pkcs11_token,
    }
    if as_json:
        print_json(info)
        return
    lines = {
        "root CA": _ca_summary(result.root, result.key_type),
        "issuing CA": _ca_summary(result.issuing, result.key_type)
        if result.issuing
        else f"pending: have {result.issuing_csr} signed by the root, then otward ca import-cert issuing",
        "service TLS certificate for": ", ".join(result.service_names),
        "CRL and OCSP URLs in certificates": result.settings.public_url,
        "database": mask_database_url(result.settings.database_url),
        "root certificate (clients trust this)": str(result.tls.root_certificate),
        "root SHA-256 fingerprint": result.root_fingerprint,
        "admin token": str(result.admin_token_file),
        "CA keys in PKCS#11 token": result.settings.keys.pkcs11_token,
        "CA key passphrase": str(result.passphrase_file) if result.passphrase_file else None,
    }
    console.print(f"initialised [bold]{escape(str(result.settings.data_dir))}[/]", highlight=False)
    for key, value in lines.items():
        if value:
            console.print(f"  {key}: {escape(value)}", highlight=False)
    if result.settings.keys.backend == "pkcs11":
        console.print(
            "  [yellow]the CA keys never leave the token: back them up with the HSM's own procedure"
            " (docs/hsm.md)[/]"
        )
    elif result.passphrase_file:
        console.print(
            "  [yellow]back up ca.pass separately from the keys: without it the CA keys are lost[/]"
        )


def _first_public_url(names: list[str] | None, fallback_host: str, port: int) -> str:
    """CRL and OCSP links point at the first ``--name`` when one is given: that is the name
    devices elsewhere reach the service by."""
    return default_public_url(service_names(names)[0] if names else fallback_host, port)


@app.command("init")
@handle_errors
def init(
    data: DataOption = None,
    key_type: KeyTypeOption = None,
    org: OrgOption = None,
    name: NameOption = None,
    public_url: Annotated[
        str | None,
        typer.Option(
            "--public-url",
            help="Base URL for CRL/OCSP links in certificates [default: http://NAME:8080 with the first"
            " --name, else http://127.0.0.1:8080]",
            show_default=False,
        ),
    ] = None,
    db: DbOption = None,
    key_backend: Annotated[
        str,
        typer.Option(
            "--key-backend",
            help="Where CA, responder and signer keys live: file (encrypted, DATA/keys) or pkcs11 (a token;"
            " docs/hsm.md)",
        ),
    ] = "file",
    pkcs11_module: Annotated[
        Path | None, typer.Option("--pkcs11-module", help="PKCS#11 module (.so) of the HSM or token")
    ] = None,
    pkcs11_token: Annotated[str | None, typer.Option("--pkcs11-token", help="Label of the token")] = None,
    pkcs11_pin_file: Annotated[
        Path | None,
        typer.Option(
            "--pkcs11-pin-file", help="File (0600) holding the token's user PIN; else $OTWARD_PKCS11_PIN"
        ),
    ] = None,
    external_root: Annotated[
        Path | None,
        typer.Option(
            "--external-root",
            help="PEM of a root otward does not hold (offline or company root): no root is made, the issuing"
            " CA waits for its certificate (CSR in DATA/issuing.csr; then ca import-cert issuing)",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a data directory: database, root and issuing CA, OCSP responders, service TLS, admin token."""
    keys = _key_settings(key_backend, pkcs11_module, pkcs11_token, pkcs11_pin_file)
    result = _initialize(
        resolve_data_dir(data),
        key_type=KeyType.parse(key_type or DEFAULT_KEY_TYPE),
        org=org or DEFAULT_ORGANIZATION,
        public_url=public_url or _first_public_url(name, "127.0.0.1", 8080),
        names=service_names(name or ()),
        db=db,
        quiet=as_json,
        keys=keys,
        external_root=_external_root(external_root),
    )
    _report(result, as_json)


def _external_root(path: Path | None) -> x509.Certificate | None:
    if path is None:
        return None
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"--external-root {path}: {exc.strerror or exc}", rule="external-root") from None
    except ValueError:
        raise ConfigError(f"--external-root {path} holds no PEM certificate", rule="external-root") from None


def _key_settings(backend: str, module: Path | None, token: str | None, pin_file: Path | None) -> KeySettings:
    if backend not in ("file", "pkcs11"):
        raise ConfigError(f"--key-backend {backend!r}: expected file or pkcs11", rule="key-backend")
    if backend == "file":
        if module is not None or token is not None or pin_file is not None:
            raise ConfigError("--pkcs11-* options need --key-backend pkcs11", rule="key-backend")
        return KeySettings()
    if module is None or not token:
        raise ConfigError("--key-backend pkcs11 needs --pkcs11-module and --pkcs11-token", rule="key-backend")
    return KeySettings(
        backend="pkcs11",
        pkcs11_module=module.absolute(),
        pkcs11_token=token,
        pkcs11_pin_file=pin_file.absolute() if pin_file is not None else None,
    )


@app.command("serve")
@handle_errors
def serve(
    data: DataOption = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="HTTPS API port")] = 8443,
    http_port: Annotated[int, typer.Option("--http-port", help="Plain-HTTP port for CRL and OCSP")] = 8080,
    key_type: KeyTypeOption = None,
    org: OrgOption = None,
    name: NameOption = None,
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
    max_connections: Annotated[
        int | None,
        typer.Option(
            "--max-connections",
            min=1,
            help="Connections each port holds at most, all workers together (instead of"
            " [server.limits] max_connections) [default: 1000]",
        ),
    ] = None,
    max_connections_per_source: Annotated[
        int | None,
        typer.Option(
            "--max-connections-per-source",
            min=1,
            help="Connections one client address holds at most on each port; trusted proxies are"
            " exempt (instead of [server.limits] max_connections_per_source) [default: 64]",
        ),
    ] = None,
) -> None:
    """Serve the HTTPS API (OpenAPI at /docs) and CRL/OCSP over plain HTTP. On first run it creates DATA
    as ``init`` does (--org, --key-type, --name); later these must match what DATA has."""
    from otward.http.server import ServeOptions
    from otward.http.server import serve as run_server

    data_dir = resolve_data_dir(data)
    parsed_key_type = KeyType.parse(key_type) if key_type is not None else None
    names = service_names(name) if name else None
    if not (data_dir / CONFIG_FILE).exists():
        listen = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
        _report(
            _initialize(
                data_dir,
                key_type=parsed_key_type or KeyType.parse(DEFAULT_KEY_TYPE),
                org=org or DEFAULT_ORGANIZATION,
                public_url=_first_public_url(name, listen, http_port),
                names=names or service_names(),
                db=db,
                quiet=False,
            ),
            False,
        )
        defaults = [
            f"{option} {value}"
            for option, given, value in (
                ("--org", org, DEFAULT_ORGANIZATION),
                ("--key-type", key_type, DEFAULT_KEY_TYPE),
                ("--name", name, " --name ".join(DEFAULT_SERVICE_NAMES)),
            )
            if not given
        ]
        if defaults:
            console.print(
                f"  defaults used: {escape(', '.join(defaults))}; to choose others, stop now, remove "
                f"{escape(str(data_dir))} and run serve (or init) again with them",
                highlight=False,
            )
    else:
        check_first_run_options(
            load_settings(data_dir, database_url=db),
            key_type=parsed_key_type,
            organization=org,
            names=names,
        )
    console.print(
        f"otward {__version__}: API https://{host}:{port}/docs, web console https://{host}:{port}/ui,"
        f" CRL/OCSP http://{host}:{http_port}",
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
            max_connections=max_connections,
            max_connections_per_source=max_connections_per_source,
        ),
        announce=lambda text: console.print(text, highlight=False),
    )


def main() -> None:
    app()
