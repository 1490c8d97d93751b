"""``otward assess ...``: endpoint checks along IEC 62443-4-2 and their report.

Every assess command ends the same way (:func:`emit_findings`): a table of findings on the terminal or the
findings JSON (``--json``), optionally written to ``--out``, waivers (``--accept FILE``) applied, and exit
status 1 when a high finding was not accepted, so a CI pipeline can gate on it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from otward import __version__
from otward.cli.common import check_output, console, write_output
from otward.core.assess.findings import FindingsDocument, Severity, dump_findings, exit_status
from otward.core.assess.waivers import Waiver, apply_waivers, parse_waivers
from otward.errors import ConfigError

__all__ = ["AcceptOption", "OutOption", "app", "emit_findings", "now", "tool_name"]

app = typer.Typer(
    help="Check endpoints (TLS, OPC UA, Modbus, this installation) along IEC 62443-4-2; report findings.",
    no_args_is_help=True,
)

OutOption = Annotated[
    Path | None, typer.Option("--out", help="Also write the findings JSON to this file", show_default=False)
]
AcceptOption = Annotated[
    Path | None,
    typer.Option(
        "--accept",
        help="TOML file of accepted risks ([[accept]] check, target, reason, until); still reported",
        show_default=False,
    ),
]

_STYLE = {Severity.HIGH: "bold red", Severity.MEDIUM: "yellow", Severity.LOW: "cyan", Severity.INFO: "dim"}
_MAX_WAIVER_BYTES = 1 << 20


def tool_name() -> str:
    """What findings documents name as their producer."""
    return f"otward {__version__}"


def now() -> datetime:
    """The time findings are stamped with (UTC)."""
    return datetime.now(UTC)


def emit_findings(
    document: FindingsDocument, *, as_json: bool, out: Path | None = None, accept: Path | None = None
) -> None:
    """Apply accepted risks, print or write the findings, and end the command with the gate's status."""
    if out is not None:
        check_output(out, "--out", force=True)
    if accept is not None:
        document = apply_waivers(document, _read_waivers(accept), now().date())
    text = dump_findings(document)
    if out is not None:
        write_output(out, text.encode())
    if as_json:
        typer.echo(text, nl=False)
    else:
        _print_table(document)
    raise typer.Exit(exit_status([document]))


def _read_waivers(path: Path) -> list[Waiver]:
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_WAIVER_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"--accept {path}: {exc.strerror or exc}", rule="file") from None
    if len(raw) > _MAX_WAIVER_BYTES:
        raise ConfigError(f"--accept {path} is larger than {_MAX_WAIVER_BYTES} bytes", rule="file")
    try:
        return parse_waivers(raw.decode(), str(path))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(str(exc), rule="accept") from None


def _print_table(document: FindingsDocument) -> None:
    findings = document.sorted()
    if not findings:
        console.print(f"No findings for {escape(', '.join(document.targets) or 'the targets')}.")
        return
    table = Table(show_lines=False)
    for column in ("Severity", "Target", "Check", "Finding", "Requirements"):
        table.add_column(column)
    for f in findings:
        severity = f"[{_STYLE[f.severity]}]{f.severity.value}[/]"
        if f.accepted is not None:
            severity += " (accepted)"
        table.add_row(severity, escape(f.target), f.check, escape(f.title), ", ".join(f.requirements))
    console.print(table)
    blocking = sum(1 for f in findings if f.blocking)
    console.print(f"{len(findings)} finding(s), {blocking} high not accepted.")
