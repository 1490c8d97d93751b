"""``otward cert issue|list|show|revoke``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from otward.adapters.files import read_limited
from otward.cli.common import (
    Column,
    DataOption,
    DbOption,
    ForceOption,
    JsonOption,
    check_output,
    cli_actor,
    console,
    count_line,
    handle_errors,
    open_pki,
    print_json,
    print_listing,
    write_output,
)
from otward.core.durations import parse_duration
from otward.core.records import parse_serial
from otward.core.revocation import REASON_NAMES, parse_reason
from otward.errors import InvalidRequestError, NotFoundError
from otward.http.schemas import CertificateOut
from otward.services.queries import certificate_filter

MAX_CSR_FILE = 64 << 10  # the CSR parser refuses larger ones anyway

app = typer.Typer(help="Certificates: issue from a CSR, list, show, revoke.", no_args_is_help=True)


def _serial(text: str) -> int:
    try:
        return parse_serial(text)
    except ValueError as exc:
        raise InvalidRequestError(str(exc), rule="serial") from None


@app.command("issue")
@handle_errors
def issue(
    csr: Annotated[
        Path, typer.Option("--csr", help="PKCS#10 request, PEM or DER", exists=True, dir_okay=False)
    ],
    profile: Annotated[
        str,
        typer.Option(
            "--profile",
            help="tls-server, tls-client, device, opcua-application, modbus-role, firmware-signing",
        ),
    ],
    ca: Annotated[
        str | None, typer.Option("--ca", help="Issuing CA [default: the owner's CA for device, else issuing]")
    ] = None,
    days: Annotated[
        int | None, typer.Option("--days", help="Validity in days [default: the profile's]")
    ] = None,
    role: Annotated[str | None, typer.Option("--role", help="Modbus/TCP Security role (modbus-role)")] = None,
    owner: Annotated[
        str | None, typer.Option("--owner", help="Device owner, an existing one (required by profile device)")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the certificate (PEM) here")] = None,
    chain_out: Annotated[
        Path | None, typer.Option("--chain-out", help="Write the CA chain (PEM) here")
    ] = None,
    force: ForceOption = False,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Issue a certificate from a CSR; it is stored before anything is written or printed.

    Output files are checked first (an existing one is replaced only with --force), so a refused
    path never leaves an issued certificate that was written nowhere."""
    for path, option in ((out, "--out"), (chain_out, "--chain-out")):
        if path is not None:
            check_output(path, option, force=force)
    with open_pki(data, db) as pki:
        issued = pki.issuance.issue(
            read_limited(csr, MAX_CSR_FILE, "CSR"),
            profile=profile,
            ca=ca,
            validity_days=days,
            role=role,
            owner=owner,
            actor=cli_actor(),
        )
    if out is not None:
        write_output(out, issued.pem.encode())
    if chain_out is not None:
        write_output(chain_out, "".join(issued.chain_pem).encode())
    if as_json:
        print_json({"serial": issued.serial, "certificate": issued.pem, "chain": issued.chain_pem})
    elif out is None:
        typer.echo(issued.pem, nl=False)
    else:
        console.print(f"issued {issued.serial} ({issued.record.subject}) -> {out}", highlight=False)


@app.command("list")
@handle_errors
def list_(
    expiring_within: Annotated[str | None, typer.Option("--expiring-within", help="e.g. 30d")] = None,
    status: Annotated[str | None, typer.Option("--status", help="valid, expired or revoked")] = None,
    ca: Annotated[str | None, typer.Option("--ca")] = None,
    profile: Annotated[str | None, typer.Option("--profile")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100000)] = 100,
    offset: Annotated[int, typer.Option("--offset", min=0)] = 0,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List certificates, newest first."""
    if expiring_within is not None:
        parse_duration(expiring_within)
    with open_pki(data, db) as pki:
        now = pki.clock()
        query = certificate_filter(
            now, status=status, expiring_within=expiring_within, ca=ca, profile=profile
        )
        records, total = pki.stores.certificates.list_certificates(query, limit=limit, offset=offset)
    items = [CertificateOut.from_record(r, now) for r in records]
    rows = [i.model_dump(mode="json", exclude={"certificate"}) for i in items]
    columns: dict[str, Column] = {"serial": "serial", "ca": "ca", "profile": "profile", "subject": "subject"}
    columns["not after (UTC)"] = lambda row: row["not_valid_after"][:16].replace("T", " ")
    print_listing(
        rows,
        {**columns, "status": "status"},
        as_json=as_json,
        summary=count_line(len(rows), total, "certificate"),
        json_value={"items": rows, "total": total, "limit": limit, "offset": offset},
    )


@app.command("show")
@handle_errors
def show(
    serial: Annotated[str, typer.Argument(help="Serial number in hex")],
    pem: Annotated[bool, typer.Option("--pem", help="Print only the certificate PEM")] = False,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one certificate."""
    with open_pki(data, db) as pki:
        record = pki.stores.certificates.get_certificate(_serial(serial))
        now = pki.clock()
    if record is None:
        raise NotFoundError(f"certificate {serial} not found", rule="serial")
    item = CertificateOut.from_record(record, now)
    if as_json:
        print_json(item.model_dump(mode="json"))
    elif pem:
        typer.echo(item.certificate, nl=False)
    else:
        certificate = x509.load_der_x509_certificate(record.der)
        for label, value in (
            ("serial", item.serial),
            ("subject", item.subject),
            ("issuer", certificate.issuer.rfc4514_string()),
            ("ca", item.ca),
            ("profile", item.profile),
            ("not before", item.not_valid_before.isoformat()),
            ("not after", item.not_valid_after.isoformat()),
            ("status", item.status),
        ):
            console.print(f"[bold]{label:>10}[/]  {value}", highlight=False)
        if item.revoked_at:
            console.print(
                f"[bold]{'revoked':>10}[/]  {item.revoked_at.isoformat()} ({item.revocation_reason})"
            )
        typer.echo(certificate.public_bytes(Encoding.PEM).decode(), nl=False)


@app.command("revoke")
@handle_errors
def revoke(
    serial: Annotated[str, typer.Argument(help="Serial number in hex")],
    reason: Annotated[
        str, typer.Option("--reason", help=f"One of: {', '.join(REASON_NAMES)}")
    ] = "unspecified",
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke a certificate for good; its CA's CRL is regenerated at once."""
    flag = parse_reason(reason)
    with open_pki(data, db) as pki:
        record = pki.revocation.revoke(_serial(serial), flag, cli_actor())
        now = pki.clock()
    item = CertificateOut.from_record(record, now)
    if as_json:
        print_json(item.model_dump(mode="json", exclude={"certificate"}))
    else:
        console.print(
            f"revoked {item.serial} ({item.subject}), reason {item.revocation_reason}", highlight=False
        )
