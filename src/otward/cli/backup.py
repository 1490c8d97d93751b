"""``otward backup`` and ``otward restore`` (docs/backup.md)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from otward.cli.common import (
    DataOption,
    DbOption,
    ForceOption,
    JsonOption,
    check_output,
    cli_actor,
    console,
    handle_errors,
    load,
    print_json,
    require_local_root,
    resolve_data_dir,
    warn,
    working,
)
from otward.config import mask_database_url
from otward.services.backup import RestoreOptions, create_backup, restore_backup

__all__ = ["backup", "restore"]


@handle_errors
def backup(
    out: Annotated[Path, typer.Option("--out", help="Archive to write (tar.gz, mode 0600)")],
    data: DataOption = None,
    db: DbOption = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Back up the installation while it runs: database snapshot, config.toml, encrypted key files,
    TLS files, revocation journal and a manifest of SHA-256 checksums (never ca.pass)."""
    require_local_root()
    check_output(out, "--out", force=force)
    settings = load(data, db)
    with contextlib.nullcontext() if as_json else working(f"backing up {settings.data_dir}"):
        result = create_backup(settings, out.absolute(), actor=cli_actor())
    info = {
        "archive": str(result.path),
        "created_at": result.created_at,
        "schema_revision": result.schema_revision,
        "database": result.database,
        "key_backend": result.key_backend,
        "members": list(result.members),
        "size": result.size,
    }
    if as_json:
        print_json(info)
        return
    console.print(
        f"wrote {escape(str(result.path))} ({result.size} bytes, {len(result.members)} files, "
        f"{result.database} database at schema {result.schema_revision})",
        highlight=False,
    )
    if result.key_backend == "pkcs11":
        warn("the CA keys live in the PKCS#11 token: back the token up by its own means (docs/hsm.md)")
    else:
        warn("the archive holds the encrypted keys but not ca.pass: keep the passphrase apart from it")


@handle_errors
def restore(
    archive: Annotated[Path, typer.Argument(help="Archive written by otward backup")],
    data: DataOption = None,
    db: DbOption = None,
    revocations: Annotated[
        list[Path] | None,
        typer.Option(
            "--revocations", help="Revocation journal kept since the backup (repeatable; docs/backup.md)"
        ),
    ] = None,
    crl: Annotated[
        list[Path] | None, typer.Option("--crl", help="A current CRL of a CA (DER or PEM; repeatable)")
    ] = None,
    fetch_crls: Annotated[
        bool, typer.Option("--fetch-crls", help="Fetch each CA's current CRL from the public_url")
    ] = False,
    assume_no_later_revocations: Annotated[
        bool,
        typer.Option(
            "--assume-no-later-revocations",
            help="Declare that nothing was revoked since the backup for CAs no evidence covers (audited)",
        ),
    ] = False,
    passphrase_file: Annotated[
        Path | None,
        typer.Option("--passphrase-file", help="The CA key passphrase (copied to DATA/ca.pass, 0600)"),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Restore a backup into an EMPTY data directory (and database): checksums first, then the
    database, migrations, every revocation recorded since the backup, and new CRLs."""
    require_local_root()
    data_dir = resolve_data_dir(data)
    options = RestoreOptions(
        database_url=db,
        journals=tuple(revocations or ()),
        crls=tuple(crl or ()),
        fetch_crls=fetch_crls,
        assume_no_later_revocations=assume_no_later_revocations,
        passphrase_file=passphrase_file,
    )
    with contextlib.nullcontext() if as_json else working(f"restoring {archive} into {data_dir}"):
        result = restore_backup(archive, data_dir.absolute(), options, actor=cli_actor())
    for line in result.warnings:
        warn(line)
    info = {
        "data_dir": str(result.data_dir),
        "backup_created_at": result.backup_created_at,
        "schema_revision": result.schema_revision,
        "database_url": mask_database_url(result.database_url),
        "rows": result.rows,
        "reapplied_revocations": list(result.reapplied),
        "reinserted_revoked_certificates": list(result.inserted),
        "crl_numbers_continue_after": result.crl_numbers,
        "evidence": list(result.evidence),
        "assumed_no_later_revocations": result.assumed,
    }
    if as_json:
        print_json(info)
        return
    console.print(
        f"restored {escape(str(result.data_dir))} from the backup of "
        f"{result.backup_created_at:%Y-%m-%d %H:%M} UTC ({result.rows} rows, "
        f"{escape(mask_database_url(result.database_url))})",
        highlight=False,
    )
    console.print(
        f"  revocations re-applied since the backup: {len(result.reapplied)}"
        f" (+{len(result.inserted)} revoked certificates the backup did not hold)",
        highlight=False,
    )
    console.print(f"  evidence: {escape(', '.join(result.evidence) or 'none')}", highlight=False)
    if result.assumed:
        warn("no evidence covered some CAs; you declared that nothing was revoked since the backup")
