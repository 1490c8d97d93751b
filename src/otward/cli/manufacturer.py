"""``otward manufacturer add|list|remove|crl`` and ``otward device claim|claims|release``: zero-touch
onboarding with the devices' factory identities (IEEE 802.1AR IDevID, docs/zero-touch.md)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Annotated, Any

import typer

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
    print_json,
    print_listing,
)
from otward.core.idevid import ClaimRecord, ManufacturerRecord
from otward.errors import InvalidRequestError
from otward.services.zerotouch import ClaimEntry

__all__ = ["app", "claim", "list_claims", "release"]

app = typer.Typer(
    help="Manufacturers whose factory certificates (IDevID) may enroll claimed devices.", no_args_is_help=True
)
MAX_FILE = 8 * 1024 * 1024
NameArgument = Annotated[str, typer.Argument(help="Manufacturer name (lower-case), e.g. acme-sensors")]


def _manufacturer_json(record: ManufacturerRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "ca": [c.subject.rfc4514_string() for c in record.ca_certificates],
        "ca_not_valid_after": min(c.not_valid_after_utc for c in record.ca_certificates),
        "crl_url": record.crl_url,
        "crl": record.crl is not None,
        "created_at": record.created_at,
    }


@app.command("add")
@handle_errors
def add_manufacturer(
    name: NameArgument,
    ca: Annotated[
        Path, typer.Option("--ca", help="The manufacturer's IDevID CA certificate (or chain), PEM")
    ],
    crl_url: Annotated[
        str | None,
        typer.Option("--crl-url", help="Where its CRL is published (fetched now and kept current)"),
    ] = None,
    crl: Annotated[Path | None, typer.Option("--crl", help="Its CRL, DER or PEM")] = None,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Trust a manufacturer's IDevID CA for the first enrollment of claimed devices (and nothing else);
    a running service accepts its certificates in the TLS handshake within a minute."""
    pem = read_limited(ca, MAX_FILE, "manufacturer CA file")
    crl_bytes = read_limited(crl, MAX_FILE, "CRL file") if crl is not None else None
    with open_pki(data, db) as pki:
        record = pki.zerotouch.add_manufacturer(name, pem, crl_url=crl_url, crl=crl_bytes, actor=cli_actor())
    if as_json:
        print_json(_manufacturer_json(record))
    else:
        console.print(
            f"added manufacturer {record.name} ({len(record.ca_certificates)} CA certificates,"
            f" CRL {'checked' if record.crl_required else 'not configured'})",
            highlight=False,
        )


@app.command("list")
@handle_errors
def list_manufacturers(data: DataOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """List the manufacturers."""
    with open_pki(data, db) as pki:
        rows = [_manufacturer_json(r) for r in pki.zerotouch.list_manufacturers()]
    columns: dict[str, Column] = {
        "manufacturer": "name",
        "CA": "ca",
        "CA expires (UTC)": "ca_not_valid_after",
    }
    columns["CRL"] = lambda row: row["crl_url"] or ("file" if row["crl"] else "none")
    print_listing(rows, columns, as_json=as_json, summary=count_line(len(rows), None, "manufacturer"))


@app.command("remove")
@handle_errors
def remove_manufacturer(name: NameArgument, data: DataOption = None, db: DbOption = None) -> None:
    """Stop trusting a manufacturer (refused while devices of it are claimed)."""
    with open_pki(data, db) as pki:
        pki.zerotouch.remove_manufacturer(name, actor=cli_actor())
    console.print(f"removed manufacturer {name}", highlight=False)


@app.command("crl")
@handle_errors
def update_crl(
    name: NameArgument,
    crl: Annotated[
        Path | None, typer.Option("--crl", help="The CRL (DER or PEM); default: fetch its URL")
    ] = None,
    data: DataOption = None,
    db: DbOption = None,
) -> None:
    """Load the manufacturer's newest CRL (from a file, or its CRL URL)."""
    crl_bytes = read_limited(crl, MAX_FILE, "CRL file") if crl is not None else None
    with open_pki(data, db) as pki:
        loaded = pki.zerotouch.update_crl(name, crl_bytes, actor=cli_actor())
    console.print(
        f"manufacturer {name}: CRL of {loaded.last_update_utc:%Y-%m-%d %H:%M} UTC, {len(loaded)} revoked",
        highlight=False,
    )


# --- claims: registered under ``otward device`` -----------------------------------------------------


def _read_delivery_note(path: Path) -> list[ClaimEntry]:
    """The CSV a supplier sends: serial, model, optional expected public-key hash (hex SHA-256 of the
    IDevID's SubjectPublicKeyInfo), optional device id; a header line naming ``serial`` is skipped."""
    text = read_limited(path, MAX_FILE, "delivery note").decode("utf-8-sig")
    entries = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [c.strip() for c in row]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        if number == 1 and cells[0].lower() == "serial":
            continue
        if len(cells) > 4:
            raise InvalidRequestError(
                f"{path.name} line {number}: at most 4 fields (serial, model, public-key hash, device id)",
                rule="claim-csv",
            )
        cells += [""] * (4 - len(cells))
        entries.append(
            ClaimEntry(
                serial=cells[0],
                model=cells[1] or None,
                public_key_sha256=cells[2] or None,
                device_id=cells[3] or None,
            )
        )
    return entries


def _claim_json(record: ClaimRecord) -> dict[str, Any]:
    return {
        "manufacturer": record.manufacturer,
        "serial": record.serial,
        "owner": record.owner,
        "model": record.model,
        "public_key_sha256": record.public_key_sha256,
        "profile": record.profile,
        "device_id": record.device_id,
        "claimed_at": record.claimed_at,
        "enrolled_device_id": record.enrolled_device_id,
        "ldevid_serial": record.ldevid_serial,
        "idevid_issuer": record.idevid_issuer,
        "idevid_serial": record.idevid_serial,
        "idevid_fingerprint": record.idevid_fingerprint,
        "enrolled_at": record.enrolled_at,
    }


OwnerOption = Annotated[str, typer.Option("--owner", help="The owner claiming the devices")]
ManufacturerOption = Annotated[str, typer.Option("--manufacturer", help="Their manufacturer")]
SerialOption = Annotated[
    list[str] | None, typer.Option("--serial", help="A serial number (repeat the option for more)")
]
CsvOption = Annotated[
    Path | None, typer.Option("--csv", help="Delivery note: serial,model[,public-key SHA-256[,device id]]")
]


def _entries(
    serial: list[str] | None, csv_file: Path | None, device_id: str | None, pubkey: str | None
) -> list[ClaimEntry]:
    if (serial is None) == (csv_file is None):
        raise InvalidRequestError("give --serial (one or more) or --csv, not both", rule="claim-serial")
    if csv_file is not None:
        if device_id or pubkey:
            raise InvalidRequestError(
                "--device-id and --pubkey-sha256 go in the CSV's columns", rule="claim-csv"
            )
        return _read_delivery_note(csv_file)
    assert serial is not None  # noqa: S101 - checked above
    if (device_id or pubkey) and len(serial) != 1:
        raise InvalidRequestError(
            "--device-id and --pubkey-sha256 apply to one --serial", rule="claim-serial"
        )
    return [ClaimEntry(serial=s, device_id=device_id, public_key_sha256=pubkey) for s in serial]


@handle_errors
def claim(
    owner: OwnerOption,
    manufacturer: ManufacturerOption,
    serial: SerialOption = None,
    csv_file: CsvOption = None,
    profile: Annotated[
        str | None, typer.Option("--profile", help="Profile of the LDevIDs [default: device]")
    ] = None,
    device_id: Annotated[str | None, typer.Option("--device-id", help="The LDevID's device id (CN)")] = None,
    pubkey_sha256: Annotated[
        str | None, typer.Option("--pubkey-sha256", help="Expected SHA-256 of the IDevID's public key (hex)")
    ] = None,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Claim devices by manufacturer and serial number: they may then enroll themselves with their
    factory certificate (all claims of one command, or none)."""
    entries = _entries(serial, csv_file, device_id, pubkey_sha256)
    with open_pki(data, db) as pki:
        claims = pki.zerotouch.claim(owner, manufacturer, entries, profile=profile, actor=cli_actor())
    if as_json:
        print_json([_claim_json(c) for c in claims])
    else:
        console.print(f"owner {owner} claimed {count_line(len(claims), None, 'device')}", highlight=False)


@handle_errors
def list_claims(
    owner: Annotated[str | None, typer.Option("--owner")] = None,
    manufacturer: Annotated[str | None, typer.Option("--manufacturer")] = None,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List claimed devices and, once enrolled, their device id and factory certificate."""
    with open_pki(data, db) as pki:
        rows = [_claim_json(c) for c in pki.zerotouch.list_claims(owner=owner, manufacturer=manufacturer)]
    columns: dict[str, Column] = {
        "manufacturer": "manufacturer",
        "serial": "serial",
        "owner": "owner",
        "model": "model",
        "device": lambda row: row["enrolled_device_id"] or row["device_id"],
        "enrolled (UTC)": "enrolled_at",
    }
    print_listing(rows, columns, as_json=as_json, summary=count_line(len(rows), None, "claim"))


@handle_errors
def release(
    owner: OwnerOption,
    manufacturer: ManufacturerOption,
    serial: SerialOption = None,
    csv_file: CsvOption = None,
    data: DataOption = None,
    db: DbOption = None,
) -> None:
    """Release the owner's claims (all or none), so that another owner may claim the devices."""
    serials = [e.serial for e in _entries(serial, csv_file, None, None)]
    with open_pki(data, db) as pki:
        pki.zerotouch.release(owner, manufacturer, serials, actor=cli_actor())
    console.print(f"owner {owner} released {count_line(len(serials), None, 'device')}", highlight=False)
