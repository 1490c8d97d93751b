"""What every command shares: the data directory option, error handling and output."""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from otward.config import Settings, default_data_dir, load_settings
from otward.errors import ConfigError, OtwardError
from otward.services.audit import Actor
from otward.services.pki import Pki

__all__ = [
    "Column",
    "DataOption",
    "DbOption",
    "JsonOption",
    "console",
    "err_console",
    "handle_errors",
    "open_pki",
    "parse_host_port",
    "print_json",
    "print_listing",
    "print_table",
]

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

DataOption = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="Data directory [default: $OTWARD_DATA or the per-user data directory]",
        show_default=False,
    ),
]
DbOption = Annotated[
    str | None,
    typer.Option("--db", envvar="OTWARD_DB", help="Database URL (overrides the data directory's config)"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")]

P = ParamSpec("P")
R = TypeVar("R")


def resolve_data_dir(data: Path | None) -> Path:
    return data if data is not None else default_data_dir()


def load(data: Path | None, db: str | None) -> Settings:
    return load_settings(resolve_data_dir(data), database_url=db)


@contextlib.contextmanager
def open_pki(data: Path | None, db: str | None) -> Iterator[Pki]:
    """The installation's PKI for one command; closing it signs the audit head if the command added events."""
    pki = Pki.open(load(data, db))
    try:
        yield pki
    finally:
        pki.close()


def cli_actor() -> Actor:
    """The audit actor for a command run by hand: the operating-system user on this host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid-{os.getuid()}"
    return Actor(component="cli", identity=f"cli:{user}", source="local")


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Exit 1 with the error's message on any OtwardError (usage errors exit 2 via Typer)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except OtwardError as exc:
            rule = f" [{exc.rule}]" if exc.rule else ""
            err_console.print(f"[bold red]error:[/] {exc.message}{rule}", highlight=False)
            raise typer.Exit(1) from None

    return wrapper


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M}"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


Column = str | Callable[[Mapping[str, Any]], Any]


def print_table(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, Column]) -> None:
    """The rows a command prints with ``--json``, as a table of ``columns`` (heading: key of the row, or a
    function of it): times to the minute (UTC), lists joined, empty values as -."""
    table = Table(*columns)
    for row in rows:
        table.add_row(*(_cell(key(row) if callable(key) else row[key]) for key in columns.values()))
    console.print(table)


def print_listing(
    rows: Sequence[Mapping[str, Any]],
    columns: Mapping[str, Column],
    *,
    as_json: bool,
    summary: str | None = None,
) -> None:
    """What a list command prints: the rows as JSON with ``--json``, else a table and ``summary``."""
    if as_json:
        print_json(list(rows))
        return
    print_table(rows, columns)
    if summary is not None:
        console.print(summary, highlight=False)


def parse_host_port(text: str, option: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT``; ConfigError naming the option otherwise."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{option} {text!r}: expected HOST:PORT with a port in 1..65535")
    return host, int(port)
