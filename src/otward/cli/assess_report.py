"""``otward assess report FINDINGS.json ...``: one HTML or Markdown report from several findings documents.

Registered on :data:`otward.cli.assess.app`; the exit status is the gate's, like every assess command:
1 when a high finding is open (not accepted), else 0.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from otward.adapters.files import read_limited
from otward.adapters.report_html import render_html
from otward.cli.assess import AcceptOption, app, now, read_waivers, tool_name
from otward.cli.common import ForceOption, check_output, console, handle_errors, write_output
from otward.core.assess.findings import FindingsDocument, parse_findings
from otward.core.assess.report import build_report, render_markdown
from otward.errors import ParseError

__all__ = ["ReportFormat", "report"]

_MAX_FINDINGS_BYTES = 64 << 20  # a scan of thousands of targets stays far below this


class ReportFormat(StrEnum):
    HTML = "html"
    MARKDOWN = "markdown"


@app.command("report")
@handle_errors
def report(
    findings: Annotated[
        list[Path], typer.Argument(help="Findings documents (JSON of any assess or firmware command)")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the report here [default: standard output]", show_default=False),
    ] = None,
    report_format: Annotated[
        ReportFormat | None,
        typer.Option(
            "--format",
            help="html or markdown [default: from --out's suffix (.md: markdown), else html]",
            show_default=False,
        ),
    ] = None,
    accept: AcceptOption = None,
    title: Annotated[str, typer.Option("--title", help="Report title")] = "otward assessment report",
    force: ForceOption = False,
) -> None:
    """Combine findings into one report: grouped by severity, mapped to IEC 62443-4-2, accepted risks
    marked with their reason, summary per severity, target and requirement. Exit 1 when a high finding
    is open."""
    if out is not None:
        check_output(out, "--out", force=force)
    documents = [_read_findings(path) for path in findings]
    waivers = read_waivers(accept) if accept is not None else []
    stamp = now()
    built = build_report(
        documents,
        [str(path) for path in findings],
        generated_at=stamp,
        tool=tool_name(),
        waivers=waivers,
        today=stamp.date(),
    )
    chosen = report_format or (
        ReportFormat.MARKDOWN
        if out is not None and out.suffix.lower() in {".md", ".markdown"}
        else ReportFormat.HTML
    )
    text = render_html(built, title) if chosen is ReportFormat.HTML else render_markdown(built, title)
    if out is None:
        typer.echo(text, nl=False)
    else:
        write_output(out, text.encode())
        open_count = sum(c.open for c in built.severities)
        accepted = sum(c.accepted for c in built.severities)
        console.print(
            f"wrote {escape(str(out))} ({chosen.value}): {open_count} open finding(s), {accepted} accepted, "
            f"{built.blocking} high not accepted",
            highlight=False,
        )
    raise typer.Exit(1 if built.blocking else 0)


def _read_findings(path: Path) -> FindingsDocument:
    data = read_limited(path, _MAX_FINDINGS_BYTES, "findings document")
    try:
        return parse_findings(data, str(path))
    except ValueError as exc:
        raise ParseError(str(exc), rule="findings") from None
