"""``otward crl generate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from otward.cli.common import (
    DataOption,
    DbOption,
    JsonOption,
    check_output,
    cli_actor,
    console,
    handle_errors,
    open_pki,
    print_json,
    write_output,
)

app = typer.Typer(help="Certificate revocation lists.", no_args_is_help=True)


@app.command("generate")
@handle_errors
def generate(
    ca: Annotated[list[str] | None, typer.Option("--ca", help="CA name (repeatable) [default: all]")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the DER CRL here (one --ca only)")] = None,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Sign and publish a fresh CRL now (the service also does this before nextUpdate)."""
    if out is not None:
        check_output(out, "--out", force=True)  # a CRL file is there to be replaced (atomically)
    with open_pki(data, db) as pki:
        names = ca or [a.name for a in pki.authorities.list()]
        if out is not None and len(names) != 1:
            raise typer.BadParameter("--out needs exactly one --ca")
        records = [pki.revocation.publish_crl(name, cli_actor()) for name in names]
    if out is not None:
        write_output(out, records[0].der)
    if as_json:
        print_json(
            [
                {
                    "ca": r.ca,
                    "crl_number": r.crl_number,
                    "this_update": r.this_update,
                    "next_update": r.next_update,
                    "size": len(r.der),
                }
                for r in records
            ]
        )
    else:
        for r in records:
            console.print(
                f"{r.ca}: CRL #{r.crl_number}, next update {r.next_update:%Y-%m-%d %H:%M} UTC, "
                f"{len(r.der)} bytes"
            )
