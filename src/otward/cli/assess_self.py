"""``otward assess self``: this installation's own checks as findings (docs/assess.md, docs/doctor.md)."""

from __future__ import annotations

from otward.cli.assess import AcceptOption, OutOption, app, emit_findings, now, tool_name
from otward.cli.common import DataOption, DbOption, JsonOption, handle_errors, load, require_local_root
from otward.core.assess.findings import FindingsDocument
from otward.errors import StorageError
from otward.services.selfcheck import run_selfcheck

__all__ = ["assess_self"]


@app.command("self")
@handle_errors
def assess_self(
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
    out: OutOption = None,
    accept: AcceptOption = None,
) -> None:
    """Check this installation: key and token permissions, CA, responder and service certificates,
    CRLs past nextUpdate, the audit chain's signed head, TLS settings, the Mosquitto listener."""
    require_local_root()
    settings = load(data, db)
    report = run_selfcheck(settings)
    for check in report.operational:
        if check.name in ("database", "migrations") and not check.ok:
            # without the database the CA, CRL and audit checks cannot run: no report is better than half
            raise StorageError(
                f"cannot assess the installation: {check.message}", rule="database-unreachable"
            )
    document = FindingsDocument(
        kind="self",
        generated_at=now(),
        tool=tool_name(),
        targets=(str(settings.data_dir),),
        findings=report.findings,
    )
    emit_findings(document, as_json=as_json, out=out, accept=accept)
