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
from typing import IO, Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from otward.adapters.files import atomic_file, write_atomic
from otward.cli.permissions import APPROVAL_AREAS, APPROVAL_COMMANDS, COMMANDS, SELF_SERVICE

try:  # Typer 0.20+ carries its own copy of click; the running command's context lives there
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover - an older Typer on the real click
    from click import get_current_context  # type: ignore[no-redef,assignment,unused-ignore]
from otward.config import Settings, default_data_dir, load_settings, parse_trusted_proxies
from otward.core.accounts import AccountRecord, actor_identity
from otward.core.authz import Action, Area, Permission, is_granted
from otward.core.rfc3339 import json_default
from otward.errors import ConfigError, ConflictError, OtwardError, PermissionDeniedError
from otward.services.audit import Actor
from otward.services.pki import Pki

__all__ = [
    "WHOLE_HEADINGS",
    "Column",
    "DataOption",
    "DbOption",
    "ForceOption",
    "JsonOption",
    "authorize_command",
    "check_output",
    "cli_actor",
    "command_path",
    "console",
    "count_line",
    "err_console",
    "handle_errors",
    "invocation_account",
    "open_pki",
    "output_file",
    "parse_host_port",
    "print_json",
    "print_listing",
    "print_table",
    "prove_local_admin",
    "resolve_data_dir",
    "set_invocation_account",
    "set_invocation_data_dir",
    "signed_in_account",
    "trusted_proxies",
    "warn",
    "working",
    "write_output",
]

# No emoji codes: a fingerprint's ":ab:" would print as an emoji.
console = Console(soft_wrap=True, emoji=False)
err_console = Console(stderr=True, soft_wrap=True, emoji=False)

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
ForceOption = Annotated[bool, typer.Option("--force", help="Replace output files that exist")]

P = ParamSpec("P")
R = TypeVar("R")


def trusted_proxies(values: Sequence[str] | None) -> tuple[str, ...]:
    """The ``--trusted-proxy`` options, checked: addresses or networks, never ``*``."""
    try:
        return parse_trusted_proxies(values or ())
    except ValueError as exc:
        raise ConfigError(f"--trusted-proxy: {exc}", rule="trusted-proxy") from None


# ``otward --data DIR COMMAND``: the root callback sets it for this invocation (a command's own --data wins).
_invocation_data: list[Path | None] = [None]


def set_invocation_data_dir(data: Path | None) -> None:
    """Record the ``--data`` given before the command (None when there was none)."""
    _invocation_data[0] = data


def resolve_data_dir(data: Path | None) -> Path:
    """The command's ``--data``, else the one before the command, else $OTWARD_DATA or the per-user one."""
    if data is not None:
        return data
    return _invocation_data[0] if _invocation_data[0] is not None else default_data_dir()


def load(data: Path | None, db: str | None) -> Settings:
    return load_settings(resolve_data_dir(data), database_url=db)


# ``otward --as NAME COMMAND``: the account this invocation acts as (None: local root mode).
_invocation_account: list[str | None] = [None]
# What local root mode proved, if anything (``ca-key:root`` before a change of accounts or roles).
_local_credential: list[str | None] = [None]
_signed_in: list[AccountRecord | None] = [None]


def signed_in_account() -> AccountRecord | None:
    """The account ``--as`` signed in as (after :func:`open_pki`); None in local root mode."""
    return _signed_in[0]


def prove_local_admin(pki: Pki) -> None:
    """In local root mode, prove the root CA key usable before an account or role change (as
    :func:`authorize_command` does for the ``admin`` commands); nothing with ``--as``."""
    if invocation_account() is None:
        _local_credential[0] = f"ca-key:{pki.authorities.prove_root_key()}"


def set_invocation_account(name: str | None) -> None:
    """Record ``--as NAME`` (or $OTWARD_AS) for this invocation; None is local root mode."""
    _invocation_account[0] = name or None
    _local_credential[0] = None
    _signed_in[0] = None


def invocation_account() -> str | None:
    """The account named with ``--as``, if any."""
    return _invocation_account[0]


def require_local_root() -> None:
    """Refuse ``--as`` for a command that reads the data directory and database itself rather than
    through :func:`open_pki` (backup, restore, doctor, assess self): it acts as whoever can read the
    data directory, so it runs only in local root mode instead of silently ignoring the account."""
    path = command_path(get_current_context(silent=True))
    if invocation_account() is not None:
        raise PermissionDeniedError(
            f"'otward {path}' runs only in local root mode (without --as)", rule="role"
        )


@contextlib.contextmanager
def open_pki(data: Path | None, db: str | None) -> Iterator[Pki]:
    """The installation's PKI for one command, once the command is authorized (``--as``: the
    account's password, TOTP code and roles; :mod:`otward.cli.permissions`); closing it signs the
    audit head if the command added events."""
    pki = Pki.open(load(data, db))
    try:
        authorize_command(pki)
        yield pki
    finally:
        pki.close()


def command_path(ctx: Any) -> str:
    """The command as :data:`otward.cli.permissions.COMMANDS` names it (``ca create``)."""
    names: list[str] = []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(reversed(names))


def _command_owner(ctx: Any, pki: Pki) -> str | None:
    """The owner of what the command touches, for owner-limited roles: its ``owner`` option, else
    the owner of its ``device_id``, else of its enrollment ``token_id``; None when it names none of
    them (an owner-limited role is refused)."""
    params = ctx.params if ctx is not None else {}
    owner = params.get("owner")
    if isinstance(owner, str):
        return owner
    device_id = params.get("device_id")
    if isinstance(device_id, str):
        try:
            return pki.devices.get(device_id).owner
        except OtwardError:
            return None
    token_id = params.get("token_id")
    needed = COMMANDS.get(command_path(ctx))
    if isinstance(token_id, str) and needed is not None and needed.area is Area.ENROLLMENT:
        return next((t.owner for t in pki.enrollment_tokens.list() if t.token_id == token_id), None)
    return None


def _secret(env: str, prompt: str) -> str:
    """A secret from the file named by ``$env`` (first line), else from a hidden prompt."""
    path = os.environ.get(env)
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"${env} {path}: {exc.strerror or exc}", rule="file") from None
        return text.splitlines()[0] if text else ""
    value: str = typer.prompt(prompt, hide_input=True, err=True)
    return value


def authorize_command(pki: Pki) -> None:
    """Refuse the running command unless it may run. In local root mode (whoever can read the data
    directory) every command runs, but one that changes accounts or roles first proves the root CA
    key usable (its passphrase or the HSM PIN): reading the data directory alone does not make an
    administrator where the passphrase is kept elsewhere. With ``--as NAME``, the account signs in
    (password from a prompt or $OTWARD_PASSWORD_FILE, TOTP code from a prompt or $OTWARD_TOTP_FILE)
    and its roles must cover the command's entry in :data:`otward.cli.permissions.COMMANDS` for the
    resource's owner."""
    ctx = get_current_context(silent=True)
    path = command_path(ctx)
    needed = COMMANDS.get(path)
    name = invocation_account()
    if name is None:
        if needed is not None and needed.area is Area.ADMIN and needed.action is Action.WRITE:
            _local_credential[0] = f"ca-key:{pki.authorities.prove_root_key()}"
        return
    actor = Actor(component="cli", identity=f"local:{_os_user()}", source="local")
    if path not in COMMANDS:
        raise PermissionDeniedError(
            f"'otward {path}' has no entry in the command permission table; refused to --as", rule="role"
        )
    if needed is None:
        raise PermissionDeniedError(
            f"'otward {path}' runs only in local root mode (without --as)", rule="role"
        )
    password = _secret("OTWARD_PASSWORD_FILE", f"password for {name}")
    existing = pki.stores.accounts.get_account(name)
    code = (
        _secret("OTWARD_TOTP_FILE", f"TOTP code for {name}")
        if existing is not None and existing.totp_secret is not None
        else None
    )
    account = pki.accounts.sign_in(name, password, code, actor)
    _signed_in[0] = account
    if path in SELF_SERVICE and ctx is not None and ctx.params.get("name") == account.name:
        return  # an account's own password or TOTP secret, having just proved both
    if path in APPROVAL_COMMANDS:
        wanted = [Permission(area, APPROVAL_COMMANDS[path]) for area in APPROVAL_AREAS]
        if any(is_granted(account.grants, p) for p in wanted):
            return  # each request is decided on its own operation's permission
    pki.accounts.authorize(account, needed, cli_actor(), owner=_command_owner(ctx, pki))


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid-{os.getuid()}"


def cli_actor() -> Actor:
    """The audit actor of a command: ``admin:NAME`` with ``--as NAME`` (signed in by
    :func:`open_pki` before anything is done), else local root mode, ``local:<unix user>``."""
    name = invocation_account()
    if name is not None:
        return Actor(component="cli", identity=actor_identity(name), source="local", credential="password")
    return Actor(
        component="cli", identity=f"local:{_os_user()}", source="local", credential=_local_credential[0]
    )


def _fail(message: str, rule: str | None) -> typer.Exit:
    """Print one error line (the message is text, never markup) and return exit 1 to raise."""
    suffix = f" [{rule}]" if rule else ""
    err_console.print(f"[bold red]error:[/] {escape(message + suffix)}", highlight=False)
    return typer.Exit(1)


def warn(message: str) -> None:
    """One warning line on stderr (the message is text, never markup)."""
    err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Exit 1 with one line on any OtwardError, or on a file the command could not read or write
    (an OSError at this edge is the operator's path, not a bug); usage errors exit 2 via Typer."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except OtwardError as exc:
            raise _fail(exc.message, exc.rule) from None
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename is not None else ""
            raise _fail(f"{exc.strerror or exc}{where}", "file") from None

    return wrapper


def check_output(path: Path, option: str, *, force: bool = False) -> None:
    """Refuse an output file before any work is done: a directory, a missing parent directory, or an
    existing file unless ``force``."""
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a directory", rule="file")
    if not path.parent.is_dir():
        raise ConfigError(f"{option} {path}: directory {path.parent} does not exist", rule="file")
    if not force and (path.exists() or path.is_symlink()):
        raise ConflictError(
            f"{option} {path} exists; not overwriting it (--force replaces it)", rule="file-exists"
        )


@contextlib.contextmanager
def output_file(path: Path, *, private: bool = False) -> Iterator[IO[Any]]:
    """A text file to stream a command's output into; it replaces ``path`` only when complete
    (mode 0600 when ``private``, else 0644)."""
    try:
        with atomic_file(path, mode=0o600 if private else 0o644, text=True) as handle:
            yield handle
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}", rule="file") from None


def write_output(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write a command's output file whole or not at all (mode 0600 when ``private``, else 0644)."""
    try:
        write_atomic(path, data, mode=0o600 if private else 0o644)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}", rule="file") from None


@contextlib.contextmanager
def working(description: str) -> Iterator[None]:
    """A spinner on stderr while something slow runs, when stderr is a terminal; otherwise one plain
    line (a spinner's frames written to a pipe or a log file came out as "… …")."""
    if err_console.is_terminal:
        with err_console.status(description):
            yield
    else:
        err_console.print(escape(description), highlight=False, soft_wrap=True)
        yield


def print_json(value: Any) -> None:
    """``--json`` output: one encoder for every command, times as RFC 3339 like the API."""
    sys.stdout.write(json.dumps(value, indent=2, default=json_default) + "\n")


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M}"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


Column = str | Callable[[Mapping[str, Any]], Any]

# Headings of the columns that hold what another command takes (``token revoke ID``, ``cert revoke
# SERIAL``): printed whole on one line, never cut to "09e3148…", so they can be copied.
WHOLE_HEADINGS = frozenset({"id", "serial", "current serial", "device", "owner", "name", "seq"})
MIN_WRAPPED_WIDTH = 8  # other columns wrap, but not to a letter a line


def print_table(
    rows: Sequence[Mapping[str, Any]], columns: Mapping[str, Column], *, title: str | None = None
) -> None:
    """The rows a command prints with ``--json``, as a table of ``columns`` (heading: key of the row, or a
    function of it): times to the minute (UTC), lists joined, empty values as -.

    Identifier columns (``WHOLE_HEADINGS``) are never wrapped or cut; the other columns wrap (to no less
    than ``MIN_WRAPPED_WIDTH``), and when even that is not enough the table is printed wider than the
    terminal rather than cut an identifier."""
    cells = [[_cell(key(row) if callable(key) else row[key]) for key in columns.values()] for row in rows]
    table = Table(title=title)
    for index, heading in enumerate(columns):
        if heading in WHOLE_HEADINGS:
            widest = max((len(line[index]) for line in cells), default=0)
            table.add_column(heading, no_wrap=True, min_width=max(widest, len(heading)))
        else:
            words = [w for line in cells for w in line[index].split()] + heading.split()
            legible = min(max((len(w) for w in words), default=1), MIN_WRAPPED_WIDTH)
            table.add_column(heading, overflow="fold", min_width=legible)
    for line in cells:
        table.add_row(*(escape(cell) for cell in line))
    needed = Measurement.get(console, console.options, table).minimum
    console.print(table, width=max(console.width, needed))


def print_listing(
    rows: Sequence[Mapping[str, Any]],
    columns: Mapping[str, Column],
    *,
    as_json: bool,
    summary: str,
    json_value: Any = None,
) -> None:
    """What every list command prints: with ``--json`` the rows (or ``json_value``), else the table and
    the count line ``summary`` below it (one place for every list)."""
    if as_json:
        print_json(list(rows) if json_value is None else json_value)
        return
    print_table(rows, columns)
    console.print(summary, highlight=False)


def count_line(shown: int, total: int | None, noun: str, plural: str | None = None) -> str:
    """The count line under a list: "1 device", "3 devices", or "100 of 250 devices" when paged."""
    counted = total if total is not None else shown
    word = noun if counted == 1 else plural or f"{noun}s"
    return f"{shown} {word}" if counted == shown else f"{shown} of {total} {word}"


def parse_host_port(text: str, option: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT``; ConfigError naming the option otherwise."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{option} {text!r}: expected HOST:PORT with a port in 1..65535")
    return host, int(port)
