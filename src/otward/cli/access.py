"""``otward access ...``: who may do what, where, when (people, grants, assets, roles, schedules).

Commands parse their options into model values, call ``pki.access`` and print; the decisions are
Cedar's (``otward.core.access``).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

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
from otward.core.access.model import (
    Asset,
    Person,
    PersonKind,
    Role,
    Schedule,
    make_asset,
    make_schedule,
    parse_date,
    validate_identifier,
)
from otward.errors import ConfigError
from otward.services.access import (
    asset_json,
    explanation_json,
    grant_json,
    parse_instant,
    person_json,
    role_json,
    schedule_json,
)

__all__ = ["app", "asset_app", "grant_app", "person_app", "role_app", "schedule_app"]

MAX_MODEL_FILE = 8 << 20  # as much as the API takes (http.app.BODY_LIMITS)

app = typer.Typer(
    help="Access of people and robots to areas, machines and systems (Cedar policies).", no_args_is_help=True
)
person_app = typer.Typer(
    help="People and robots: add, disable, enable, list, show, remove.", no_args_is_help=True
)
grant_app = typer.Typer(help="Grants of roles: add, remove, list.", no_args_is_help=True)
asset_app = typer.Typer(
    help="Areas, machines and systems with their functions: add, update, remove, list, show.",
    no_args_is_help=True,
)
role_app = typer.Typer(help="Roles: add, update, remove, list.", no_args_is_help=True)
schedule_app = typer.Typer(
    help="Weekly schedules in site time (grants' 'when', people's shifts): add, update, remove, list.",
    no_args_is_help=True,
)
app.add_typer(person_app, name="person")
app.add_typer(grant_app, name="grant")
app.add_typer(asset_app, name="asset")
app.add_typer(role_app, name="role")
app.add_typer(schedule_app, name="schedule")

PersonArgument = Annotated[str, typer.Argument(help="Person or robot id")]


@app.command("import")
@handle_errors
def import_model(
    file: Annotated[Path, typer.Argument(help="YAML file in the format of examples/chemical-plant.yaml")],
    replace_all: Annotated[
        bool, typer.Option("--replace", help="Make the file the whole model (drop what it does not name)")
    ] = False,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Import or update the access model from YAML; re-importing the same file changes nothing."""
    try:
        text = read_limited(file, MAX_MODEL_FILE, "access model").decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"access model {file} is not UTF-8 text", rule="file") from None
    with open_pki(data, db) as pki:
        result = pki.access.import_yaml(text, cli_actor(), replace_all=replace_all)
    if as_json:
        print_json(
            {
                "site": result.site,
                "changed": result.changed,
                "revision": result.revision,
                "details": result.details,
            }
        )
        return
    if not result.changed:
        console.print(f"site {result.site}: unchanged (revision {result.revision})", highlight=False)
        return
    console.print(f"site {result.site}: imported, revision {result.revision}", highlight=False)
    for kind, summary in result.details.items():
        console.print(f"  {kind}: {summary} (added ~changed -removed)", highlight=False)


@app.command("policies")
@handle_errors
def policies(
    asset: Annotated[
        str | None, typer.Option("--asset", help="Only the policies that concern this asset")
    ] = None,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print the Cedar policies the grants compile to, each with its @id."""
    with open_pki(data, db) as pki:
        compiled = pki.access.policies(asset)
    if as_json:
        print_json(
            [{"id": p.id, "grant": p.grant or None, "asset": p.asset, "text": p.text} for p in compiled]
        )
        return
    typer.echo("\n".join(policy.text for policy in compiled), nl=False)


@app.command("schema")
@handle_errors
def schema(data: DataOption = None, db: DbOption = None) -> None:
    """Print the Cedar schema the policies are written against."""
    with open_pki(data, db) as pki:
        typer.echo(pki.access.schema(), nl=False)


@app.command("explain")
@handle_errors
def explain(
    person: PersonArgument,
    asset: Annotated[str, typer.Argument(help="Asset id")],
    function: Annotated[str, typer.Argument(help="Function, e.g. start or enter")],
    at: Annotated[
        str | None,
        typer.Option("--at", help="ISO 8601 time; without offset it is local site time [default: now]"),
    ] = None,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Decide PERSON using FUNCTION of ASSET at a time, with the policies that decided it."""
    with open_pki(data, db) as pki:
        instant = parse_instant(at, pki.access.model().timezone) if at else None
        explanation = pki.access.explain(person, asset, function, instant)
    if as_json:
        print_json(explanation_json(explanation))
    else:
        decision = explanation.decision
        verdict = "[bold green]ALLOW[/]" if decision.allowed else "[bold red]DENY[/]"
        console.print(f"{verdict} {person} {function} {asset}", highlight=False)
        console.print(
            f"  local time: {decision.local_time} (UTC {explanation.at:%Y-%m-%d %H:%M})", highlight=False
        )
        console.print(f"  reason: {decision.reason}", highlight=False)
        for text in explanation.policy_texts:
            console.print(text, highlight=False, markup=False)


# --- people -------------------------------------------------------------------------------------


def _date_option(value: str | None, name: str) -> date | None:
    return parse_date(value, name) if value else None


@person_app.command("add")
@handle_errors
def person_add(
    person_id: PersonArgument,
    name: Annotated[str, typer.Option("--name", help="Display name")],
    role: Annotated[list[str], typer.Option("--role", help="Role (repeat for several)")],
    shift: Annotated[str | None, typer.Option("--shift", help="Schedule of the person's own shift")] = None,
    valid_from: Annotated[
        str | None, typer.Option("--valid-from", help="First valid day, YYYY-MM-DD")
    ] = None,
    valid_until: Annotated[
        str | None, typer.Option("--valid-until", help="Last valid day, YYYY-MM-DD")
    ] = None,
    robot: Annotated[bool, typer.Option("--robot", help="A robot rather than a person")] = False,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add a person or robot with roles (and shift, validity dates)."""
    person = Person(
        id=validate_identifier(person_id, "person"),
        name=name,
        roles=tuple(validate_identifier(r, "--role") for r in role),
        kind=PersonKind.ROBOT if robot else PersonKind.PERSON,
        shift=validate_identifier(shift, "--shift") if shift else None,
        valid_from=_date_option(valid_from, "--valid-from"),
        valid_until=_date_option(valid_until, "--valid-until"),
    )
    with open_pki(data, db) as pki:
        added = pki.access.add_person(person, cli_actor())
    _print_person(added, as_json, "added")


def _print_person(person: Person, as_json: bool, verb: str | None = None) -> None:
    if as_json:
        print_json(person_json(person))
        return
    if verb:
        console.print(f"{person.kind.value} {person.id} {verb}", highlight=False)
    for key, value in person_json(person).items():
        shown = ", ".join(value) if isinstance(value, list) else value
        console.print(f"{key:>12}: {shown if shown not in (None, '') else '-'}", highlight=False)


@person_app.command("disable")
@handle_errors
def person_disable(person_id: PersonArgument, data: DataOption = None, db: DbOption = None) -> None:
    """Deny the person everything (data kept); assets enforce it with their next bundle."""
    with open_pki(data, db) as pki:
        pki.access.disable_person(person_id, cli_actor())
    console.print(f"{person_id} disabled", highlight=False)


@person_app.command("enable")
@handle_errors
def person_enable(person_id: PersonArgument, data: DataOption = None, db: DbOption = None) -> None:
    """Enable a disabled person again."""
    with open_pki(data, db) as pki:
        pki.access.enable_person(person_id, cli_actor())
    console.print(f"{person_id} enabled", highlight=False)


@person_app.command("remove")
@handle_errors
def person_remove(person_id: PersonArgument, data: DataOption = None, db: DbOption = None) -> None:
    """Remove a person or robot from the model."""
    with open_pki(data, db) as pki:
        pki.access.remove_person(person_id, cli_actor())
    console.print(f"{person_id} removed", highlight=False)


@person_app.command("list")
@handle_errors
def person_list(data: DataOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """List people and robots."""
    with open_pki(data, db) as pki:
        people = pki.access.people()
    rows = [person_json(p) for p in people]
    columns: dict[str, Column] = {"id": "id", "name": "name", "kind": "kind", "roles": "roles"}
    columns["shift"] = "shift"
    columns["valid"] = lambda row: (
        f"{row['valid_from'] or ''}..{row['valid_until'] or ''}"
        if row["valid_from"] or row["valid_until"]
        else "-"
    )
    columns["enabled"] = lambda row: "yes" if row["enabled"] else "no"
    print_listing(
        rows,
        columns,
        as_json=as_json,
        summary=count_line(len(rows), None, "person or robot", "people and robots"),
    )


@person_app.command("show")
@handle_errors
def person_show(
    person_id: PersonArgument, data: DataOption = None, db: DbOption = None, as_json: JsonOption = False
) -> None:
    """Show one person or robot."""
    with open_pki(data, db) as pki:
        person = pki.access.person(person_id)
    _print_person(person, as_json)


# --- grants -------------------------------------------------------------------------------------


@grant_app.command("add")
@handle_errors
def grant_add(
    role: Annotated[str, typer.Option("--role", help="Role the grant is for")],
    asset: Annotated[list[str], typer.Option("--asset", help="Asset (repeat for several)")],
    function: Annotated[list[str], typer.Option("--function", help="Function (repeat for several)")],
    when: Annotated[
        str | None, typer.Option("--when", help="Schedule name or own-shift [default: always]")
    ] = None,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Allow a role functions on assets, optionally only when a schedule holds."""
    with open_pki(data, db) as pki:
        grant = pki.access.add_grant(role, asset, function, when, cli_actor())
    if as_json:
        print_json(grant_json(grant))
        return
    console.print(f"grant {grant.id} added", highlight=False)


@grant_app.command("remove")
@handle_errors
def grant_remove(
    grant_id: Annotated[str, typer.Argument(help="Grant id, e.g. operator-3")],
    data: DataOption = None,
    db: DbOption = None,
) -> None:
    """Remove a grant."""
    with open_pki(data, db) as pki:
        pki.access.remove_grant(grant_id, cli_actor())
    console.print(f"grant {grant_id} removed", highlight=False)


@grant_app.command("list")
@handle_errors
def grant_list(
    role: Annotated[str | None, typer.Option("--role")] = None,
    asset: Annotated[str | None, typer.Option("--asset")] = None,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List grants (of a role, or naming an asset)."""
    with open_pki(data, db) as pki:
        grants = pki.access.grants(role=role, asset=asset)
    rows = [grant_json(g) for g in grants]
    columns: dict[str, Column] = {"id": "id", "role": "role", "assets": "assets", "functions": "functions"}
    columns["when"] = lambda row: row["when"] or "always"
    print_listing(rows, columns, as_json=as_json, summary=count_line(len(rows), None, "grant"))


# --- assets -------------------------------------------------------------------------------------

AssetArgument = Annotated[str, typer.Argument(help="Asset id")]
FunctionsOption = Annotated[
    list[str] | None, typer.Option("--function", help="Function (repeat for several; an area has 'enter')")
]
InsideOption = Annotated[str | None, typer.Option("--inside", help="The area that contains it")]


def _print_asset(asset: Asset, as_json: bool, verb: str) -> None:
    if as_json:
        print_json(asset_json(asset))
        return
    console.print(f"{asset.kind.value} {asset.id} {verb}", highlight=False)


@asset_app.command("add")
@handle_errors
def asset_add(
    asset_id: AssetArgument,
    kind: Annotated[str, typer.Option("--kind", help="area, machine or system")],
    function: FunctionsOption = None,
    inside: InsideOption = None,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add an area, machine or system; grants then name it (the next bundles carry it)."""
    asset = make_asset(asset_id, kind, function or [], inside)
    with open_pki(data, db) as pki:
        added = pki.access.put_asset(asset, create=True, actor=cli_actor())
    _print_asset(added, as_json, "added")


@asset_app.command("update")
@handle_errors
def asset_update(
    asset_id: AssetArgument,
    kind: Annotated[str | None, typer.Option("--kind", help="area, machine or system")] = None,
    function: Annotated[
        list[str] | None, typer.Option("--function", help="The functions, all of them (repeat for several)")
    ] = None,
    inside: InsideOption = None,
    outside: Annotated[bool, typer.Option("--no-inside", help="No longer inside an area")] = False,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change what is given of an asset, keep the rest (refused if a grant would lose its function)."""
    if kind is None and function is None and inside is None and not outside:
        raise ConfigError("nothing to change: give --kind, --function, --inside or --no-inside")
    if inside is not None and outside:
        raise ConfigError("give --inside or --no-inside, not both")
    with open_pki(data, db) as pki:
        updated = pki.access.amend_asset(
            asset_id, kind=kind, functions=function, inside=inside, clear_inside=outside, actor=cli_actor()
        )
    _print_asset(updated, as_json, "updated")


@asset_app.command("remove")
@handle_errors
def asset_remove(asset_id: AssetArgument, data: DataOption = None, db: DbOption = None) -> None:
    """Remove an asset no grant names (the error lists the grants that still do)."""
    with open_pki(data, db) as pki:
        pki.access.remove_asset(asset_id, cli_actor())
    console.print(f"asset {asset_id} removed", highlight=False)


@asset_app.command("list")
@handle_errors
def asset_list(data: DataOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """List areas, machines and systems."""
    with open_pki(data, db) as pki:
        rows = [asset_json(a) for a in pki.access.assets()]
    columns = {"id": "id", "kind": "kind", "functions": "functions", "inside": "inside"}
    print_listing(rows, columns, as_json=as_json, summary=count_line(len(rows), None, "asset"))


@asset_app.command("show")
@handle_errors
def asset_show(
    asset_id: AssetArgument, data: DataOption = None, db: DbOption = None, as_json: JsonOption = False
) -> None:
    """Show an asset and the grants that name it."""
    with open_pki(data, db) as pki:
        shown = asset_json(pki.access.asset(asset_id))
        grants = [g.id for g in pki.access.grants(asset=asset_id)]
    shown["grants"] = grants
    if as_json:
        print_json(shown)
        return
    for key, value in shown.items():
        text = ", ".join(value) if isinstance(value, list) else value
        console.print(f"{key:>10}: {text or '-'}", highlight=False)


# --- roles --------------------------------------------------------------------------------------

RoleArgument = Annotated[str, typer.Argument(help="Role id")]


@role_app.command("add")
@handle_errors
def role_add(
    role_id: RoleArgument,
    external: Annotated[
        bool, typer.Option("--external", help="Its people need validity dates (engagements)")
    ] = False,
    data: DataOption = None,
    db: DbOption = None,
) -> None:
    """Add a role (give it grants with 'otward access grant add')."""
    role = Role(validate_identifier(role_id, "role"), external=external)
    with open_pki(data, db) as pki:
        pki.access.put_role(role, create=True, actor=cli_actor())
    console.print(f"{'external role' if external else 'role'} {role_id} added", highlight=False)


@role_app.command("update")
@handle_errors
def role_update(
    role_id: RoleArgument,
    external: Annotated[
        bool | None,
        typer.Option("--external/--internal", help="External roles need validity dates on their people"),
    ] = None,
    data: DataOption = None,
    db: DbOption = None,
) -> None:
    """Make a role external or internal (external needs validity dates on every person holding it)."""
    if external is None:
        raise ConfigError("nothing to change: give --external or --internal")
    role = Role(validate_identifier(role_id, "role"), external=external)
    with open_pki(data, db) as pki:
        pki.access.put_role(role, create=False, actor=cli_actor())
    console.print(f"role {role_id} is now {'external' if external else 'internal'}", highlight=False)


@role_app.command("remove")
@handle_errors
def role_remove(role_id: RoleArgument, data: DataOption = None, db: DbOption = None) -> None:
    """Remove a role no grant and no person uses."""
    with open_pki(data, db) as pki:
        pki.access.remove_role(role_id, cli_actor())
    console.print(f"role {role_id} removed", highlight=False)


@role_app.command("list")
@handle_errors
def role_list(data: DataOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """List roles."""
    with open_pki(data, db) as pki:
        rows = [role_json(r) for r in pki.access.roles()]
    columns: dict[str, Column] = {"id": "id", "external": lambda row: "yes" if row["external"] else "no"}
    print_listing(rows, columns, as_json=as_json, summary=count_line(len(rows), None, "role"))


# --- schedules ----------------------------------------------------------------------------------

ScheduleArgument = Annotated[str, typer.Argument(help="Schedule name")]
DaysOption = Annotated[list[str], typer.Option("--day", help="mon ... sun (repeat, or comma-separated)")]
FromOption = Annotated[str, typer.Option("--from", help="Start, HH:MM local site time (included)")]
ToOption = Annotated[
    str, typer.Option("--to", help="End, HH:MM (24:00 allowed, excluded); before --from crosses midnight")
]


def _days(entries: list[str]) -> list[str]:
    return [day.strip() for entry in entries for day in entry.split(",") if day.strip()]


def _print_schedule(schedule: Schedule, as_json: bool, verb: str) -> None:
    if as_json:
        print_json(schedule_json(schedule))
        return
    console.print(f"schedule {schedule.name} {verb}: {schedule.describe()}", highlight=False)


@schedule_app.command("add")
@handle_errors
def schedule_add(
    name: ScheduleArgument,
    day: DaysOption,
    start: FromOption,
    end: ToOption,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add a weekly window, e.g. --day mon,tue,wed,thu,fri --from 22:00 --to 06:00 (a night shift)."""
    schedule = make_schedule(name, _days(day), start, end)
    with open_pki(data, db) as pki:
        added = pki.access.put_schedule(schedule, create=True, actor=cli_actor())
    _print_schedule(added, as_json, "added")


@schedule_app.command("update")
@handle_errors
def schedule_update(
    name: ScheduleArgument,
    day: Annotated[
        list[str] | None, typer.Option("--day", help="All the days, mon ... sun (repeat, or comma-separated)")
    ] = None,
    start: Annotated[str | None, typer.Option("--from", help="Start, HH:MM local site time")] = None,
    end: Annotated[str | None, typer.Option("--to", help="End, HH:MM (24:00 allowed)")] = None,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a schedule's days or hours, keep the rest; grants and shifts follow with the next bundles."""
    if day is None and start is None and end is None:
        raise ConfigError("nothing to change: give --day, --from or --to")
    with open_pki(data, db) as pki:
        updated = pki.access.amend_schedule(
            name, days=None if day is None else _days(day), start=start, end=end, actor=cli_actor()
        )
    _print_schedule(updated, as_json, "updated")


@schedule_app.command("remove")
@handle_errors
def schedule_remove(name: ScheduleArgument, data: DataOption = None, db: DbOption = None) -> None:
    """Remove a schedule no grant and no person's shift uses."""
    with open_pki(data, db) as pki:
        pki.access.remove_schedule(name, cli_actor())
    console.print(f"schedule {name} removed", highlight=False)


@schedule_app.command("list")
@handle_errors
def schedule_list(data: DataOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """List schedules (times are local site time)."""
    with open_pki(data, db) as pki:
        rows = [schedule_json(s) for s in pki.access.schedules()]
    columns: dict[str, Column] = {"name": "name", "days": "days", "from": "from", "to": "to"}
    columns["crosses midnight"] = lambda row: "yes" if row["overnight"] else "no"
    print_listing(rows, columns, as_json=as_json, summary=count_line(len(rows), None, "schedule"))
