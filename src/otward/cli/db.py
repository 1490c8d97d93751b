"""``otward db upgrade``: the one command besides ``init`` and ``serve`` that changes the schema."""

from __future__ import annotations

import typer

from otward.cli.common import DataOption, DbOption, JsonOption, console, handle_errors, load, print_json
from otward.config import mask_database_url
from otward.services.pki import upgrade_database

app = typer.Typer(help="The database.", no_args_is_help=True)


@app.command("upgrade")
@handle_errors
def upgrade(data: DataOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Create or upgrade the database schema to this version of otward (serve does it at start)."""
    settings = load(data, db)
    change = upgrade_database(settings)
    if as_json:
        print_json({"database_url": mask_database_url(settings.database_url), **change._asdict()})
    elif change.before == change.after:
        console.print(f"database schema is current (revision {change.after})", highlight=False)
    else:
        console.print(
            f"database schema upgraded from {change.before or 'an empty database'} "
            f"to revision {change.after}",
            highlight=False,
        )
