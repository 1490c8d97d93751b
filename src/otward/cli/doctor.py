"""``otward doctor``: what is wrong with this installation, in plain words (docs/doctor.md)."""

from __future__ import annotations

import typer
from rich.markup import escape

from otward.cli.common import (
    DataOption,
    DbOption,
    JsonOption,
    console,
    handle_errors,
    load,
    print_json,
    require_local_root,
)
from otward.core.assess.findings import Severity
from otward.services.selfcheck import run_selfcheck

__all__ = ["doctor"]

_WORD = {Severity.HIGH: "PROBLEM", Severity.MEDIUM: "PROBLEM", Severity.LOW: "warning", Severity.INFO: "ok"}
_STYLE = {Severity.HIGH: "bold red", Severity.MEDIUM: "red", Severity.LOW: "yellow", Severity.INFO: "green"}


@handle_errors
def doctor(data: DataOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Check the installation: file permissions, database and migrations, CA, responder and service
    certificates, CRLs, the audit chain, clock skew against the database, free disk. Exit 1 when
    something needs action."""
    require_local_root()
    report = run_selfcheck(load(data, db))
    if as_json:
        print_json(
            {
                "data_dir": str(report.data_dir),
                "needs_action": report.needs_action,
                "checks": [{"name": c.name, "ok": c.ok, "message": c.message} for c in report.operational],
                "findings": [
                    {
                        "check": f.check,
                        "severity": f.severity.value,
                        "target": f.target,
                        "title": f.title,
                        "evidence": f.evidence,
                        "recommendation": f.recommendation,
                    }
                    for f in sorted(report.findings, key=lambda f: (f.severity.rank, f.target, f.check))
                ],
            }
        )
    else:
        console.print(f"otward doctor: {escape(str(report.data_dir))}", highlight=False)
        for check in report.operational:
            word = "[green]ok[/]" if check.ok else "[bold red]PROBLEM[/]"
            console.print(f"  {word:>7} {check.name}: {escape(check.message)}", highlight=False)
        for f in sorted(report.findings, key=lambda f: (f.severity.rank, f.target, f.check)):
            if f.severity is Severity.INFO:
                continue
            word = f"[{_STYLE[f.severity]}]{_WORD[f.severity]}[/]"
            console.print(
                f"  {word} {escape(f.target)}: {escape(f.title)} ({escape(f.evidence)}). "
                f"Fix: {escape(f.recommendation)} " + escape(f"[{f.check}]"),
                highlight=False,
            )
        console.print(
            "something needs action" if report.needs_action else "nothing needs action", highlight=False
        )
    raise typer.Exit(1 if report.needs_action else 0)
