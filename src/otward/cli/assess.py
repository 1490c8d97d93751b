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
from otward.adapters.files import read_limited
from otward.cli.common import check_output, console, err_console, handle_errors, write_output
from otward.core.assess.findings import FindingsDocument, Severity, dump_findings, exit_status
from otward.core.assess.targets import Target, parse_target, parse_targets
from otward.core.assess.waivers import Waiver, apply_waivers, parse_waivers
from otward.errors import ConfigError

__all__ = ["AcceptOption", "OutOption", "app", "emit_findings", "now", "read_waivers", "tool_name"]

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
        help="TOML file of accepted risks (\\[\\[accept]] check, target, reason, until); still reported",
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
        document = apply_waivers(document, read_waivers(accept), now().date())
    text = dump_findings(document)
    if out is not None:
        write_output(out, text.encode())
    if as_json:
        typer.echo(text, nl=False)
    else:
        _print_table(document)
    raise typer.Exit(exit_status([document]))


def read_waivers(path: Path) -> list[Waiver]:
    """The accepted risks of ``--accept`` (TOML, at most 1 MiB); ConfigError naming what is wrong."""
    data = read_limited(path, _MAX_WAIVER_BYTES, "accepted risks")
    try:
        return parse_waivers(data.decode(), str(path))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(str(exc), rule="accept") from None


def _print_table(document: FindingsDocument) -> None:
    findings = document.sorted()
    if not findings:
        console.print(f"No findings for {escape(', '.join(document.targets) or 'the targets')}.")
        return
    table = Table(show_lines=False)
    for column in ("Severity", "Target", "Check", "Finding", "Requirements"):
        # fold rather than cut: a check id is what an accepted risk names, it must be readable whole
        table.add_column(column, overflow="fold")
    for f in findings:
        severity = f"[{_STYLE[f.severity]}]{f.severity.value}[/]"
        if f.accepted is not None:
            severity += " (accepted)"
        table.add_row(severity, escape(f.target), f.check, escape(f.title), ", ".join(f.requirements))
    console.print(table)
    blocking = sum(1 for f in findings if f.blocking)
    console.print(f"{len(findings)} finding(s), {blocking} high not accepted.")


# --- network checks: tls, opcua, modbus (one target, or many with --targets) -------------------------

_MAX_TARGETS_BYTES = 16 << 20
TargetsOption = Annotated[
    Path | None,
    typer.Option(
        "--targets",
        help="File of targets: one a line ('#' comments), or a CSV with a host/address column "
        "(optional port, name)",
        show_default=False,
    ),
]
ConcurrencyOption = Annotated[
    int, typer.Option("--concurrency", min=1, max=1024, help="Targets scanned at once (one connection each)")
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", min=0.1, help="Seconds allowed per target (each connection at most 5)")
]
TrustOption = Annotated[
    Path | None,
    typer.Option(
        "--trust",
        help="PEM trust anchors the endpoint's chain must lead to (default: the system CA bundle)",
        show_default=False,
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the findings JSON instead of a table")]


def _targets(kind: str, target: str | None, targets_file: Path | None) -> list[Target]:
    if (target is None) == (targets_file is None):
        raise typer.BadParameter("give one target or --targets FILE (not both)")
    if target is not None:
        try:
            return [parse_target(target, kind, port_required=kind == "tls")]
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    if targets_file is None:  # pragma: no cover - excluded above
        raise typer.BadParameter("--targets FILE is required")
    try:
        with targets_file.open("rb") as handle:
            raw = handle.read(_MAX_TARGETS_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"--targets {targets_file}: {exc.strerror or exc}", rule="file") from None
    if len(raw) > _MAX_TARGETS_BYTES:
        raise ConfigError(f"--targets {targets_file} is larger than {_MAX_TARGETS_BYTES} bytes", rule="file")
    try:
        return parse_targets(raw.decode("utf-8-sig"), kind, str(targets_file))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(str(exc), rule="targets") from None


def _scan(
    kind: str,
    targets: list[Target],
    *,
    trust: Path | None,
    server_name: str | None,
    timeout: float,
    concurrency: int,
) -> FindingsDocument:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from otward.services.assess import assess_targets, load_trust

    anchors = load_trust(trust) if kind != "modbus" else ()
    progress = Progress(
        TextColumn(f"assess {kind}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )
    with progress:
        task = progress.add_task(kind, total=len(targets))
        return assess_targets(
            kind,
            targets,
            trust=anchors,
            server_name=server_name,
            timeout=timeout,
            concurrency=concurrency,
            now=now(),
            tool=tool_name(),
            on_done=lambda _target: progress.advance(task),
        )


@app.command("tls")
@handle_errors
def assess_tls(
    target: Annotated[str | None, typer.Argument(help="HOST:PORT", show_default=False)] = None,
    targets_file: TargetsOption = None,
    trust: TrustOption = None,
    servername: Annotated[
        str | None,
        typer.Option("--servername", help="Name to send (SNI) and expect in the certificate (default: HOST)"),
    ] = None,
    concurrency: ConcurrencyOption = 16,
    timeout: TimeoutOption = 30.0,
    as_json: JsonFlag = False,
    out: OutOption = None,
    accept: AcceptOption = None,
) -> None:
    """Protocol versions, cipher suites, certificate chain and client-certificate handling of TLS
    endpoints. Exit 1 when a high finding is not accepted."""
    targets = _targets("tls", target, targets_file)
    document = _scan(
        "tls", targets, trust=trust, server_name=servername, timeout=timeout, concurrency=concurrency
    )
    emit_findings(document, as_json=as_json, out=out, accept=accept)


@app.command("opcua")
@handle_errors
def assess_opcua(
    target: Annotated[
        str | None, typer.Argument(help="opc.tcp://HOST[:PORT][/PATH]", show_default=False)
    ] = None,
    targets_file: TargetsOption = None,
    trust: TrustOption = None,
    concurrency: ConcurrencyOption = 16,
    timeout: TimeoutOption = 30.0,
    as_json: JsonFlag = False,
    out: OutOption = None,
    accept: AcceptOption = None,
) -> None:
    """Security policies, modes, user tokens and the certificate of OPC UA servers (GetEndpoints).
    Exit 1 when a high finding is not accepted."""
    targets = _targets("opcua", target, targets_file)
    document = _scan(
        "opcua", targets, trust=trust, server_name=None, timeout=timeout, concurrency=concurrency
    )
    emit_findings(document, as_json=as_json, out=out, accept=accept)


@app.command("modbus")
@handle_errors
def assess_modbus(
    target: Annotated[
        str | None, typer.Argument(help="HOST[:PORT] (port 502 by default)", show_default=False)
    ] = None,
    targets_file: TargetsOption = None,
    concurrency: ConcurrencyOption = 16,
    timeout: TimeoutOption = 10.0,
    as_json: JsonFlag = False,
    out: OutOption = None,
    accept: AcceptOption = None,
) -> None:
    """Plaintext Modbus/TCP exposure, with one harmless read (FC 3, never a write); a port answering TLS
    is reported as protected. Exit 1 when a high finding is not accepted."""
    targets = _targets("modbus", target, targets_file)
    document = _scan(
        "modbus", targets, trust=None, server_name=None, timeout=timeout, concurrency=concurrency
    )
    emit_findings(document, as_json=as_json, out=out, accept=accept)
