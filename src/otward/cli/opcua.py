"""``otward opcua trustlist``: the trust list directories OPC UA stacks read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from otward.cli.common import (
    DataOption,
    DbOption,
    JsonOption,
    console,
    err_console,
    handle_errors,
    open_pki,
    print_json,
)
from otward.services.channels import Channels

app = typer.Typer(help="OPC UA: trust lists for servers and clients.", no_args_is_help=True)


@app.command("trustlist")
@handle_errors
def trustlist(
    out: Annotated[Path, typer.Option("--out", help="Trust list directory (trusted/, issuers/)")],
    ca: Annotated[
        list[str] | None,
        typer.Option(
            "--ca",
            help="CA whose application certificates are trusted (repeatable; default: all but roots)",
        ),
    ] = None,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Export (or refresh) trusted/certs, trusted/crl, issuers/certs and issuers/crl as DER files."""
    with open_pki(data, db) as pki:
        result = Channels.for_pki(pki).export_opcua_trust_list(out, ca or ())
    if as_json:
        print_json(
            {
                "directory": str(result.directory),
                "trusted": list(result.trusted),
                "issuers": list(result.issuers),
                "skipped_revoked": list(result.skipped),
                "files": [str(p.relative_to(result.directory)) for p in result.files],
            }
        )
        return
    console.print(f"wrote the trust list in [bold]{result.directory}[/]", highlight=False)
    console.print(f"  trusted: {', '.join(result.trusted)}", highlight=False)
    console.print(f"  issuers (chain only): {', '.join(result.issuers) or '-'}", highlight=False)
    for name in result.skipped:
        err_console.print(f"[yellow]warning:[/] CA '{name}' is revoked and was left out")
