"""``otward device list|show|disable|enable|revoke|reset|preprovision``: the device registry."""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import PrivateFormat, pkcs12
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

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
    print_table,
)
from otward.core.keys import KeyType
from otward.core.records import CertificateRecord, DeviceRecord, DeviceStatus
from otward.core.revocation import parse_reason
from otward.core.rfc3339 import format_rfc3339
from otward.errors import ConfigError, InvalidRequestError
from otward.services.provisioning import ProvisionedDevice, device_ids

app = typer.Typer(
    help="The device registry: list, inspect, disable, revoke, pre-provision.", no_args_is_help=True
)

DeviceArgument = Annotated[str, typer.Argument(help="Device id (the CN of its certificates)")]
PKCS12_KDF_ROUNDS = 50_000


def _device_json(record: DeviceRecord) -> dict[str, Any]:
    return {
        "device_id": record.device_id,
        "owner": record.owner,
        "status": record.status.value,
        "profile": record.profile,
        "current_serial": record.current_serial,
        "enrollment_token": record.enrollment_token_id,
        "first_seen": record.first_seen,
        "last_seen": record.last_seen,
        "last_attested_at": record.last_attested_at,
    }


def _certificate_json(record: CertificateRecord, now: Any) -> dict[str, Any]:
    return {
        "serial": record.serial,
        "ca": record.ca,
        "not_valid_before": record.not_valid_before,
        "not_valid_after": record.not_valid_after,
        "status": record.status_at(now),
    }


@app.command("list")
@handle_errors
def list_devices(
    owner: Annotated[str | None, typer.Option("--owner")] = None,
    status: Annotated[str | None, typer.Option("--status", help="active, disabled or revoked")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000)] = 100,
    offset: Annotated[int, typer.Option("--offset", min=0)] = 0,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List devices, by device id."""
    try:
        wanted = DeviceStatus(status) if status else None
    except ValueError:
        raise InvalidRequestError(
            "--status must be active, disabled or revoked", rule="device-status"
        ) from None
    with open_pki(data, db) as pki:
        records, total = pki.devices.list(owner=owner, status=wanted, limit=limit, offset=offset)
    rows = [_device_json(r) for r in records]
    columns: dict[str, Column] = {
        "device": "device_id",
        "owner": "owner",
        "status": "status",
        "current serial": "current_serial",
    }
    print_listing(
        rows,
        {**columns, "last seen (UTC)": "last_seen", "attested (UTC)": "last_attested_at"},
        as_json=as_json,
        summary=count_line(len(rows), total, "device"),
        json_value={"items": rows, "total": total},
    )


@app.command("show")
@handle_errors
def show_device(
    device_id: DeviceArgument, data: DataOption = None, db: DbOption = None, as_json: JsonOption = False
) -> None:
    """A device with its certificate history."""
    with open_pki(data, db) as pki:
        record = pki.devices.get(device_id)
        history = pki.devices.certificates(device_id)
        now = pki.clock()
    if as_json:
        print_json({**_device_json(record), "certificates": [_certificate_json(c, now) for c in history]})
        return
    for key, value in _device_json(record).items():
        console.print(f"{key:>17}: {value if value is not None else '-'}", highlight=False)
    columns = {"serial": "serial", "CA": "ca", "not before (UTC)": "not_valid_before"}
    print_table(
        [_certificate_json(c, now) for c in history],
        {**columns, "not after (UTC)": "not_valid_after", "status": "status"},
    )


@app.command("disable")
@handle_errors
def disable_device(device_id: DeviceArgument, data: DataOption = None, db: DbOption = None) -> None:
    """Stop a device from enrolling, re-enrolling or renewing (its certificates stay valid)."""
    with open_pki(data, db) as pki:
        pki.devices.disable(device_id, cli_actor())
    console.print(f"device {device_id} disabled", highlight=False)


@app.command("enable")
@handle_errors
def enable_device(device_id: DeviceArgument, data: DataOption = None, db: DbOption = None) -> None:
    """Let a disabled device enroll and renew again."""
    with open_pki(data, db) as pki:
        pki.devices.enable(device_id, cli_actor())
    console.print(f"device {device_id} enabled", highlight=False)


@app.command("revoke")
@handle_errors
def revoke_device(
    device_id: DeviceArgument,
    reason: Annotated[str, typer.Option("--reason", help="RFC 5280 reason name")] = "cessationOfOperation",
    data: DataOption = None,
    db: DbOption = None,
) -> None:
    """Revoke a device for good, with every certificate it holds (CRLs republished at once)."""
    with open_pki(data, db) as pki:
        revoked = pki.devices.revoke(device_id, parse_reason(reason), cli_actor())
    serials = ", ".join(c.serial for c in revoked) or "none"
    console.print(f"device {device_id} revoked; certificates revoked: {serials}", highlight=False)


@app.command("reset")
@handle_errors
def reset_device(
    device_id: DeviceArgument, data: DataOption = None, db: DbOption = None, as_json: JsonOption = False
) -> None:
    """Undo an enrollment the device never used (its client failed after the server issued): the
    certificate is revoked (superseded) and the device's owner enrolls it again with a new token.

    Refused for a device that renewed, attested or is not active: revoke that one instead."""
    with open_pki(data, db) as pki:
        revoked = pki.devices.reset(device_id, cli_actor())
        record = pki.devices.get(device_id)
    if as_json:
        print_json({"device_id": device_id, "owner": record.owner, "revoked_serial": revoked.serial})
        return
    console.print(
        f"device {device_id} reset: certificate {revoked.serial} revoked (superseded); "
        f"enroll it again with a new token of owner {record.owner}",
        highlight=False,
    )


@app.command("preprovision")
@handle_errors
def preprovision(
    owner: Annotated[str, typer.Option("--owner", help="Owner the devices belong to")],
    count: Annotated[int, typer.Option("--count", min=1, max=100000, help="How many devices")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the PKCS#12 files and the manifest")],
    prefix: Annotated[str | None, typer.Option("--prefix", help="Device id prefix [default: OWNER-]")] = None,
    start: Annotated[int, typer.Option("--start", min=0, help="First device number")] = 1,
    profile: Annotated[str, typer.Option("--profile")] = "device",
    key_type: Annotated[
        str, typer.Option("--key-type", help="ec-p256, ec-p384, ec-p521, rsa-2048, ...")
    ] = "ec-p256",
    password_file: Annotated[
        Path | None,
        typer.Option("--password-file", help="One password for every file (else one random password each)"),
    ] = None,
    data: DataOption = None,
    db: DbOption = None,
) -> None:
    """Make N device identities as password-protected PKCS#12 files plus a manifest (JSON and CSV).

    With a random password per device the passwords are in the manifest (mode 0600): hand it to the
    station that loads the devices, then delete it."""
    ids = device_ids(prefix if prefix is not None else f"{owner}-", count, start)
    shared = _read_password(password_file) if password_file else None
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory", rule="file")
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    clashes = [i for i in ids if (out / f"{i}.p12").exists()]
    if clashes or (out / "manifest.json").exists():
        raise ConfigError(
            f"{out} already holds a manifest or {clashes[:1] or 'files'}; use an empty directory"
        )
    manifest: list[dict[str, Any]] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with open_pki(data, db) as pki, Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("provisioning", total=count)
        for batch in pki.provisioning.provision(
            owner, ids, profile=profile, key_type=KeyType.parse(key_type), actor=cli_actor()
        ):
            for device in batch:
                password = shared or secrets.token_urlsafe(18)
                path = out / f"{device.device_id}.p12"
                _write_private(path, _pkcs12(device, password.encode()))
                entry = {
                    "device_id": device.device_id,
                    "file": path.name,
                    "serial": device.issued.serial,
                    "sha256": device.issued.certificate.fingerprint(hashes.SHA256()).hex(),
                    "not_valid_after": format_rfc3339(device.issued.certificate.not_valid_after_utc),
                }
                if shared is None:
                    entry["password"] = password
                manifest.append(entry)
            progress.advance(task, len(batch))
    _write_private(
        out / "manifest.json", json.dumps({"owner": owner, "devices": manifest}, indent=2).encode()
    )
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(manifest[0]))
    writer.writeheader()
    writer.writerows(manifest)
    _write_private(out / "manifest.csv", text.getvalue().encode())
    console.print(
        f"{count} devices of {owner} written to {out} (manifest.json, manifest.csv)", highlight=False
    )


def _pkcs12(device: ProvisionedDevice, password: bytes) -> bytes:
    """PKCS#12 with PBES2 (PBKDF2-SHA256, AES-256-CBC) and a SHA-256 MAC: no RC2, 3DES or SHA-1."""
    encryption = (
        PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(PKCS12_KDF_ROUNDS)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(password)
    )
    key = device.key
    if not isinstance(
        key,
        rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey,
    ):
        raise InvalidRequestError(f"a {type(key).__name__} cannot be put into a PKCS#12 file")
    return pkcs12.serialize_key_and_certificates(
        device.device_id.encode(),
        key,
        device.issued.certificate,
        list(device.issued.chain),
        encryption,
    )


def _read_password(path: Path) -> str:
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"{path} is readable by others; chmod 600 it")
    try:
        password = read_limited(path, 4096, "password file").decode().strip()
    except UnicodeDecodeError:
        raise ConfigError(f"password file {path} is not UTF-8 text", rule="password") from None
    if len(password) < 12:
        raise ConfigError("the PKCS#12 password must be at least 12 characters", rule="password")
    return password


def _write_private(path: Path, content: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
