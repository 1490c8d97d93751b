"""``otward admin add|list|disable|enable|remove|passwd|roles|token|totp``: named accounts and roles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from otward.cli.approvals import gate
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
from otward.core.accounts import AccountRecord
from otward.core.approvals import Operation
from otward.core.authz import Grant, Role, Scope, parse_grant, parse_scope
from otward.core.durations import parse_duration
from otward.errors import ConfigError

app = typer.Typer(
    help="Named accounts and their roles (docs/administration.md): add, list, disable, enable, remove,"
    " passwd, roles, token, totp.",
    no_args_is_help=True,
)

_ROLES = ", ".join(r.value for r in Role)
NameArgument = Annotated[str, typer.Argument(help="Account name, e.g. alice or prometheus")]
RoleOption = Annotated[
    list[str],
    typer.Option("--role", help=f"A role (repeatable): {_ROLES}; enrollment-officer:OWNER for one owner"),
]
PasswordFileOption = Annotated[
    Path | None,
    typer.Option("--password-file", help="Read the password from this file's first line instead of a prompt"),
]


def _grants(roles: list[str]) -> frozenset[Grant]:
    try:
        return frozenset(parse_grant(r) for r in roles)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--role") from None


def _password(password_file: Path | None) -> str:
    if password_file is not None:
        try:
            text = password_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"--password-file {password_file}: {exc.strerror or exc}", rule="file"
            ) from None
        return text.splitlines()[0] if text else ""
    value: str = typer.prompt("new password", hide_input=True, confirmation_prompt=True, err=True)
    return value


def _row(account: AccountRecord) -> dict[str, Any]:
    return {
        "name": account.name,
        "roles": sorted(str(g) for g in account.grants),
        "kind": "service" if account.is_service else "person",
        "totp": account.totp_secret is not None,
        "created_at": account.created_at,
        "disabled_at": account.disabled_at,
        "locked_until": account.locked_until,
    }


@app.command("add")
@handle_errors
def add(
    name: NameArgument,
    role: RoleOption,
    service: Annotated[
        bool,
        typer.Option("--service", help="A service identity: no password, it acts only through API tokens"),
    ] = False,
    password_file: PasswordFileOption = None,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add an account with its roles; a person's password is asked for (twice) unless --password-file."""
    grants = _grants(role)
    if service and password_file is not None:
        raise typer.BadParameter("a service identity has no password", param_hint="--password-file")
    with open_pki(data, db) as pki:
        parameters = {"name": name, "roles": sorted(str(g) for g in grants)}
        if gate(pki, Operation.ACCOUNT_ADD, parameters, as_json=as_json):
            if not service:
                console.print(
                    f"once approved, set its password with `otward admin passwd {name}`", highlight=False
                )
            return
        password = None if service else _password(password_file)
        account = pki.accounts.add(name, grants, cli_actor(), password=password)
    if as_json:
        print_json(_row(account))
    else:
        kind = "service identity" if service else "account"
        console.print(f"{kind} {name} added with roles {', '.join(_row(account)['roles'])}", highlight=False)


@app.command("list")
@handle_errors
def list_(data: DataOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """List accounts with their roles and state (never a password hash or a TOTP secret)."""
    with open_pki(data, db) as pki:
        rows = [_row(a) for a in pki.accounts.list()]
    columns: dict[str, Column] = {
        "name": "name",
        "roles": "roles",
        "kind": "kind",
        "totp": lambda r: "yes" if r["totp"] else "no",
        "disabled (UTC)": "disabled_at",
        "locked until (UTC)": "locked_until",
    }
    print_listing(rows, columns, as_json=as_json, summary=count_line(len(rows), None, "account"))


@app.command("disable")
@handle_errors
def disable(name: NameArgument, data: DataOption = None, db: DbOption = None) -> None:
    """Disable an account: it cannot sign in and its API tokens stop working until it is enabled."""
    with open_pki(data, db) as pki:
        pki.accounts.disable(name, cli_actor())
    console.print(f"account {name} disabled", highlight=False)


@app.command("enable")
@handle_errors
def enable(name: NameArgument, data: DataOption = None, db: DbOption = None) -> None:
    """Enable an account again; this also lifts a lock-out after failed sign-ins."""
    with open_pki(data, db) as pki:
        pki.accounts.enable(name, cli_actor())
    console.print(f"account {name} enabled", highlight=False)


@app.command("remove")
@handle_errors
def remove(name: NameArgument, data: DataOption = None, db: DbOption = None) -> None:
    """Remove an account for good; its API tokens are revoked with it."""
    with open_pki(data, db) as pki:
        pki.accounts.remove(name, cli_actor())
    console.print(f"account {name} removed; its API tokens are revoked", highlight=False)


@app.command("passwd")
@handle_errors
def passwd(
    name: NameArgument, password_file: PasswordFileOption = None, data: DataOption = None, db: DbOption = None
) -> None:
    """Set an account's password (a prompt, or --password-file); this also lifts a lock-out."""
    with open_pki(data, db) as pki:
        pki.accounts.set_password(name, _password(password_file), cli_actor())
    console.print(f"password of {name} set", highlight=False)


@app.command("roles")
@handle_errors
def roles(name: NameArgument, role: RoleOption, data: DataOption = None, db: DbOption = None) -> None:
    """Replace an account's roles with the --role options given."""
    grants = _grants(role)
    with open_pki(data, db) as pki:
        pki.accounts.get(name)  # an unknown account is refused now, not at approval
        if gate(pki, Operation.ACCOUNT_ROLES, {"name": name, "roles": sorted(str(g) for g in grants)}):
            return
        account = pki.accounts.set_grants(name, grants, cli_actor())
    console.print(f"roles of {name}: {', '.join(_row(account)['roles'])}", highlight=False)


@app.command("token")
@handle_errors
def token(
    name: NameArgument,
    scope: Annotated[
        str,
        typer.Option("--scope", help="Narrow it further: admin (= the account's roles), read, metrics, ..."),
    ] = "admin",
    expires: Annotated[
        str | None, typer.Option("--expires", help="Lifetime such as 90d or 12h [default: until revoked]")
    ] = None,
    token_name: Annotated[
        str | None, typer.Option("--name", help="What the token is for [default: NAME]")
    ] = None,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make an API token of the account (printed once); it never does more than the account's roles."""
    try:
        chosen: Scope = parse_scope(scope)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scope") from None
    ttl = parse_duration(expires) if expires is not None else None
    with open_pki(data, db) as pki:
        record, text = pki.tokens.create(token_name or name, cli_actor(), scope=chosen, ttl=ttl, account=name)
    if as_json:
        print_json(
            {
                "token_id": record.token_id,
                "account": name,
                "scope": record.scope.value,
                "expires_at": record.expires_at,
                "token": text,
            }
        )
    else:
        console.print(f"token {record.token_id} of account {name}; it is shown only now:", highlight=False)
        typer.echo(text)


@app.command("totp")
@handle_errors
def totp(name: NameArgument, data: DataOption = None, db: DbOption = None) -> None:
    """Give the account a new TOTP second factor (RFC 6238) and print its otpauth:// URI once, for an
    authenticator app; every sign-in then needs the current code."""
    with open_pki(data, db) as pki:
        uri = pki.accounts.new_totp(name, cli_actor())
    console.print(
        f"TOTP for {name}; add this URI to an authenticator app (it is shown only now):", highlight=False
    )
    typer.echo(uri)
