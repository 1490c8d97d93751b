"""``otward owner create|list`` and ``otward token create|list|revoke`` (enrollment tokens)."""

from __future__ import annotations

from typing import Annotated

import typer

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
from otward.core.durations import parse_duration
from otward.core.records import OwnerRecord
from otward.errors import InvalidRequestError

owner_app = typer.Typer(help="Owners: the accounts devices belong to.", no_args_is_help=True)
AllowKeygenOption = Annotated[
    bool, typer.Option("--allow-server-keygen", help="Its devices may ask the server to make their key")
]
GraceOption = Annotated[
    str, typer.Option("--renewal-grace", help="Allow renewal this long after expiry, e.g. 180d (0d: never)")
]
token_app = typer.Typer(help="Enrollment tokens: time- and use-limited, shown once.", no_args_is_help=True)


@owner_app.command("create")
@handle_errors
def create_owner(
    name: Annotated[str, typer.Argument(help="Owner name (lower-case), e.g. acme-line-2")],
    ca: Annotated[
        str | None, typer.Option("--ca", help="Issuing CA of its devices [default: issuing]")
    ] = None,
    allow_server_keygen: AllowKeygenOption = False,
    renewal_grace: GraceOption = "0d",
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an owner; its devices will be issued by --ca (its own sub-CA, or the default)."""
    with open_pki(data, db) as pki:
        record = pki.owners.create(
            name,
            ca=ca,
            allow_server_keygen=allow_server_keygen,
            renewal_grace_days=_days(renewal_grace),
            actor=cli_actor(),
        )
    if as_json:
        print_json(_owner_json(record))
    else:
        console.print(f"created owner {record.name} (devices issued by CA {record.ca})", highlight=False)


@owner_app.command("set")
@handle_errors
def update_owner(
    name: Annotated[str, typer.Argument(help="Owner name")],
    allow_server_keygen: Annotated[
        bool | None,
        typer.Option(
            "--allow-server-keygen/--no-server-keygen", help="May its devices ask the server for a key"
        ),
    ] = None,
    renewal_grace: Annotated[
        str | None, typer.Option("--renewal-grace", help="Renewal after expiry within, e.g. 180d; 0d: never")
    ] = None,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change what an owner's devices may do."""
    with open_pki(data, db) as pki:
        record = pki.owners.update(
            name,
            allow_server_keygen=allow_server_keygen,
            renewal_grace_days=None if renewal_grace is None else _days(renewal_grace),
            actor=cli_actor(),
        )
    if as_json:
        print_json(_owner_json(record))
    else:
        console.print(
            f"owner {record.name}: server keygen {'allowed' if record.allow_server_keygen else 'refused'},"
            f" renewal after expiry within {record.renewal_grace_days} days",
            highlight=False,
        )


def _days(text: str) -> int:
    duration = parse_duration(text) if text.strip() not in ("0", "0d") else None
    if duration is None:
        return 0
    if duration.total_seconds() % 86400:
        raise InvalidRequestError("the renewal grace is whole days, e.g. 90d", rule="renewal-grace")
    return duration.days


def _owner_json(record: OwnerRecord) -> dict[str, object]:
    return {
        "name": record.name,
        "ca": record.ca,
        "created_at": record.created_at,
        "allow_server_keygen": record.allow_server_keygen,
        "renewal_grace_days": record.renewal_grace_days,
    }


@owner_app.command("list")
@handle_errors
def list_owners(data: DataOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """List owners."""
    with open_pki(data, db) as pki:
        records = pki.owners.list()
    rows = [_owner_json(r) for r in records]
    columns: dict[str, Column] = {"owner": "name", "issuing CA": "ca"}
    columns["server keygen"] = lambda row: "allowed" if row["allow_server_keygen"] else "no"
    columns["renewal grace"] = lambda row: (
        f"{row['renewal_grace_days']}d" if row["renewal_grace_days"] else "none"
    )
    columns["created (UTC)"] = "created_at"
    print_listing(rows, columns, as_json=as_json, summary=count_line(len(rows), None, "owner"))


@token_app.command("create")
@handle_errors
def create_token(
    owner: Annotated[str, typer.Option("--owner", help="Owner the enrolled devices will belong to")],
    uses: Annotated[int, typer.Option("--uses", min=1, max=100000, help="How many enrollments")] = 1,
    ttl: Annotated[str, typer.Option("--ttl", help="Lifetime, e.g. 1h, 7d (at most 30d)")] = "1h",
    device_id_pattern: Annotated[
        str, typer.Option("--device-id-pattern", help="Glob the device ids must match, e.g. 'plc-*'")
    ] = "*",
    profile: Annotated[str, typer.Option("--profile", help="Profile of the certificates")] = "device",
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an enrollment token and print it once; only its SHA-256 is stored."""
    lifetime = parse_duration(ttl)
    with open_pki(data, db) as pki:
        record, token = pki.enrollment_tokens.create(
            owner,
            uses=uses,
            ttl=lifetime,
            device_id_pattern=device_id_pattern,
            profile=profile,
            actor=cli_actor(),
        )
    if as_json:
        print_json(
            {
                "token_id": record.token_id,
                "owner": record.owner,
                "profile": record.profile,
                "device_id_pattern": record.device_id_pattern,
                "uses": record.uses_allowed,
                "expires_at": record.expires_at,
                "token": token,
            }
        )
    else:
        console.print(
            f"enrollment token {record.token_id} for {record.owner} ({record.uses_allowed} use(s), "
            f"until {record.expires_at:%Y-%m-%d %H:%M} UTC); it is shown only now:",
            highlight=False,
        )
        typer.echo(token)


@token_app.command("list")
@handle_errors
def list_tokens(
    owner: Annotated[str | None, typer.Option("--owner")] = None,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List enrollment tokens (never their secrets)."""
    with open_pki(data, db) as pki:
        records = pki.enrollment_tokens.list(owner)
        now = pki.clock()
    rows = [
        {
            "token_id": r.token_id,
            "owner": r.owner,
            "profile": r.profile,
            "device_id_pattern": r.device_id_pattern,
            "uses": r.uses,
            "uses_allowed": r.uses_allowed,
            "expires_at": r.expires_at,
            "state": r.state_at(now),
            "kind": r.kind,
        }
        for r in records
    ]
    columns: dict[str, Column] = {"id": "token_id", "kind": "kind", "owner": "owner", "profile": "profile"}
    columns["pattern"] = "device_id_pattern"
    columns["uses"] = lambda row: f"{row['uses']}/{row['uses_allowed']}"
    print_listing(
        rows,
        {**columns, "expires (UTC)": "expires_at", "state": "state"},
        as_json=as_json,
        summary=count_line(len(rows), None, "enrollment token"),
    )


@token_app.command("revoke")
@handle_errors
def revoke_token(
    token_id: Annotated[str, typer.Argument(help="Token id (the part after otwe_)")],
    data: DataOption = None,
    db: DbOption = None,
) -> None:
    """Revoke an enrollment token for good."""
    with open_pki(data, db) as pki:
        record = pki.enrollment_tokens.revoke(token_id, cli_actor())
    console.print(f"revoked enrollment token {record.token_id} ({record.owner})", highlight=False)
