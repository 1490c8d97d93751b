"""``otward api-token create|list|revoke``: bearer tokens for the HTTPS API's admin endpoints."""

from __future__ import annotations

from typing import Annotated

import typer

from otward.cli.common import (
    DataOption,
    DbOption,
    JsonOption,
    cli_actor,
    console,
    handle_errors,
    open_pki,
    print_json,
    print_listing,
)

app = typer.Typer(help="Admin API tokens: create (shown once), list, revoke.", no_args_is_help=True)


@app.command("create")
@handle_errors
def create(
    name: Annotated[str, typer.Option("--name", help="What the token is for, e.g. prometheus or mes-bridge")],
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a token and print it once; only its SHA-256 is stored."""
    with open_pki(data, db) as pki:
        record, token = pki.tokens.create(name, cli_actor())
    if as_json:
        print_json({"token_id": record.token_id, "name": record.name, "token": token})
    else:
        console.print(f"token {record.token_id} ({record.name}); it is shown only now:", highlight=False)
        typer.echo(token)


@app.command("list")
@handle_errors
def list_(data: DataOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """List tokens (ids and names; secrets are never stored)."""
    with open_pki(data, db) as pki:
        records = pki.tokens.list()
    rows = [
        {"token_id": r.token_id, "name": r.name, "created_at": r.created_at, "revoked_at": r.revoked_at}
        for r in records
    ]
    columns = {"id": "token_id", "name": "name", "created (UTC)": "created_at", "revoked (UTC)": "revoked_at"}
    print_listing(rows, columns, as_json=as_json)


@app.command("revoke")
@handle_errors
def revoke(
    token_id: Annotated[str, typer.Argument(help="Token id (the part after otw_)")],
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke a token for good."""
    with open_pki(data, db) as pki:
        record = pki.tokens.revoke(token_id, cli_actor())
    if as_json:
        print_json({"token_id": record.token_id, "name": record.name, "revoked_at": record.revoked_at})
    else:
        console.print(f"revoked token {record.token_id} ({record.name})", highlight=False)
