"""``otward ca create|list|export|pin|migrate-keys``."""

from __future__ import annotations

import contextlib
import ipaddress
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives.serialization import Encoding
from rich.markup import escape

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
    print_json,
    print_listing,
    working,
)
from otward.config import KeySettings
from otward.core.keys import KeyType, spki_pin
from otward.errors import ConfigError, InvalidRequestError
from otward.http.schemas import AuthorityOut
from otward.services.key_migration import migrate_keys_to_pkcs11

app = typer.Typer(
    help="Certificate authorities: create sub-CAs, list them, export chains.", no_args_is_help=True
)


@app.command("create")
@handle_errors
def create(
    name: Annotated[str, typer.Argument(help="Name of the new CA (lower-case, e.g. plant-a)")],
    parent: Annotated[str, typer.Option("--parent", help="CA that signs the new one")],
    path_len: Annotated[int, typer.Option("--path-len", help="pathLenConstraint of the new CA")] = 0,
    permitted_dns: Annotated[
        list[str] | None,
        typer.Option("--permitted-dns", help="Name constraint: permitted DNS subtree (repeatable)"),
    ] = None,
    permitted_ip: Annotated[
        list[str] | None,
        typer.Option(
            "--permitted-ip", help="Name constraint: permitted IP network, e.g. 10.20.0.0/16 (repeatable)"
        ),
    ] = None,
    key_type: Annotated[
        str, typer.Option("--key-type", help="ec-p256, ec-p384, ec-p521, ed25519, rsa-2048/3072/4096")
    ] = "ec-p256",
    org: Annotated[
        str | None, typer.Option("--org", help="Organization (default: the installation's)")
    ] = None,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a subordinate CA (per plant or per owner), with its own OCSP responder and CRL."""
    with open_pki(data, db) as pki:
        with working(f"creating CA {name}") if not as_json else contextlib.nullcontext():
            loaded = pki.authorities.create_subordinate(
                name,
                parent=parent,
                key_type=KeyType.parse(key_type),
                organization=org or pki.settings.organization,
                path_length=path_len,
                permitted_dns=tuple(permitted_dns or ()),
                permitted_ip=tuple(_network(n) for n in permitted_ip or ()),
                actor=cli_actor(),
            )
            pki.revocation.publish_crl(name, cli_actor())
        out = AuthorityOut.from_record(pki.authorities.record(loaded.name))
    if as_json:
        print_json(out.model_dump(mode="json"))
    else:
        console.print(
            f"created CA [bold]{out.name}[/] ({out.subject}) under {parent}, "
            f"valid until {out.not_valid_after:%Y-%m-%d}"
        )


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        raise InvalidRequestError(
            f"'{text}' is not an IP network such as 10.20.0.0/16", rule="name-constraints"
        ) from None


@app.command("list")
@handle_errors
def list_(data: DataOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """List all CAs."""
    with open_pki(data, db) as pki:
        items = [AuthorityOut.from_record(r) for r in pki.authorities.list()]
    rows = [i.model_dump(mode="json", exclude={"certificate"}) for i in items]
    columns: dict[str, Column] = {"name": "name", "parent": "parent", "subject": "subject"}
    columns["path len"] = "path_length"
    columns["permitted DNS"] = "permitted_dns"
    columns["valid until"] = lambda row: row["not_valid_after"][:10]
    print_listing(rows, columns, as_json=as_json, summary=count_line(len(rows), None, "CA"))


@app.command("export")
@handle_errors
def export(
    name: Annotated[str, typer.Argument(help="CA name")],
    data: DataOption = None,
    db: DbOption = None,
) -> None:
    """Print the PEM chain from CA NAME up to the root on stdout."""
    with open_pki(data, db) as pki:
        chain = pki.authorities.certificate_chain(name)
    typer.echo("".join(c.public_bytes(Encoding.PEM).decode() for c in chain), nl=False)


@app.command("pin")
@handle_errors
def pin(
    name: Annotated[str, typer.Argument(help="CA name")] = "root",
    data: DataOption = None,
    db: DbOption = None,
) -> None:
    """Print the pin for ``otward agent enroll --pin``: sha256/<base64> of the CA's public key.

    Pin the root: it outlives the service's TLS certificate and the issuing CA."""
    with open_pki(data, db) as pki:
        certificate = pki.authorities.get(name).certificate
    typer.echo(spki_pin(certificate.public_key()))


@app.command("migrate-keys")
@handle_errors
def migrate_keys(
    to: Annotated[str, typer.Option("--to", help="Key backend to move the key files into: pkcs11")],
    pkcs11_module: Annotated[
        Path | None,
        typer.Option("--pkcs11-module", help="PKCS#11 module (.so) [default: keys.pkcs11_module]"),
    ] = None,
    pkcs11_token: Annotated[
        str | None, typer.Option("--pkcs11-token", help="Token label [default: keys.pkcs11_token]")
    ] = None,
    pkcs11_pin_file: Annotated[
        Path | None,
        typer.Option(
            "--pkcs11-pin-file",
            help="File (0600) with the user PIN; else $OTWARD_PKCS11_PIN [default: keys.pkcs11_pin_file]",
        ),
    ] = None,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move the CA, responder and signer key files into a PKCS#11 token (imported sensitive and
    non-extractable), switch config.toml to the token and delete the files. Stop the service first.
    For tokens that refuse key import, see docs/hsm.md (rollover)."""
    if to != "pkcs11":
        raise ConfigError(f"--to {to!r}: keys can be moved to pkcs11 only", rule="key-backend")
    with open_pki(data, db) as pki:
        configured = pki.settings.keys
        module = pkcs11_module or configured.pkcs11_module
        token = pkcs11_token or configured.pkcs11_token
        if module is None or not token:
            raise ConfigError("give --pkcs11-module and --pkcs11-token", rule="key-backend")
        pin_file = pkcs11_pin_file or configured.pkcs11_pin_file
        target = KeySettings(
            backend="pkcs11",
            pkcs11_module=module.absolute(),
            pkcs11_token=token,
            pkcs11_pin_file=pin_file.absolute() if pin_file is not None else None,
        )
        moved = migrate_keys_to_pkcs11(pki, target, cli_actor())
    if as_json:
        print_json({"token": token, "moved": [{"from": m.old_ref, "to": m.new_ref} for m in moved]})
        return
    if not moved:
        console.print("no key files to move: every key is in the token already", highlight=False)
        return
    console.print(f"moved {len(moved)} keys into token {escape(token)}:", highlight=False)
    for move in moved:
        console.print(f"  {escape(move.old_ref)} -> {escape(move.new_ref)}", highlight=False)
