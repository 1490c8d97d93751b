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
    count_line,
    handle_errors,
    invocation_account,
    open_pki,
    print_json,
    print_listing,
)
from otward.core.authz import Scope, parse_scope
from otward.core.durations import parse_duration

app = typer.Typer(
    help="API tokens with a scope (admin, read, metrics, enroll-admin, access-admin): create (shown once),"
    " list, revoke.",
    no_args_is_help=True,
)

_SCOPES = ", ".join(s.value for s in Scope)


@app.command("create")
@handle_errors
def create(
    name: Annotated[str, typer.Option("--name", help="What the token is for, e.g. prometheus or mes-bridge")],
    scope: Annotated[
        str, typer.Option("--scope", help=f"What it may do: {_SCOPES} (docs/api-tokens.md)")
    ] = "admin",
    expires: Annotated[
        str | None, typer.Option("--expires", help="Lifetime such as 90d or 12h [default: until revoked]")
    ] = None,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a token and print it once; only its SHA-256 is stored."""
    try:
        chosen = parse_scope(scope)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scope") from None
    ttl = parse_duration(expires) if expires is not None else None
    with open_pki(data, db) as pki:
        record, token = pki.tokens.create(
            name, cli_actor(), scope=chosen, ttl=ttl, account=invocation_account() or "admin"
        )
    if as_json:
        print_json(
            {
                "token_id": record.token_id,
                "name": record.name,
                "scope": record.scope.value,
                "expires_at": record.expires_at,
                "token": token,
            }
        )
    else:
        until = f", expires {record.expires_at:%Y-%m-%d %H:%M} UTC" if record.expires_at else ""
        console.print(
            f"token {record.token_id} ({record.name}, scope {record.scope.value}{until});"
            " it is shown only now:",
            highlight=False,
        )
        typer.echo(token)


@app.command("list")
@handle_errors
def list_(data: DataOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """List tokens (ids and names; secrets are never stored)."""
    with open_pki(data, db) as pki:
        records = pki.tokens.list()
    rows = [
        {
            "token_id": r.token_id,
            "name": r.name,
            "scope": r.scope.value,
            "account": r.account,
            "created_at": r.created_at,
            "expires_at": r.expires_at,
            "revoked_at": r.revoked_at,
        }
        for r in records
    ]
    columns = {
        "id": "token_id",
        "name": "name",
        "scope": "scope",
        "account": "account",
        "created (UTC)": "created_at",
        "expires (UTC)": "expires_at",
        "revoked (UTC)": "revoked_at",
    }
    print_listing(rows, columns, as_json=as_json, summary=count_line(len(rows), None, "API token"))


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
