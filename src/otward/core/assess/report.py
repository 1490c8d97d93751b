"""The assessment report as data, and its Markdown form.

Several findings documents (a TLS scan, an OPC UA scan, ``firmware verify``, ``assess self``) become
one report: merged, accepted risks applied, grouped by severity (most urgent first), each finding
with the IEC 62443-4-2 requirements it concerns and their titles, and a summary per severity, per
target and per requirement. The HTML form is rendered from this model by a template
(``otward/adapters/templates``); the Markdown form is made here, because escaping it is a matter of
text, and text rules belong in the core.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from otward.core.assess.findings import Finding, FindingsDocument, Severity, merge_documents
from otward.core.assess.requirements import REQUIREMENTS, requirement_title
from otward.core.assess.waivers import Waiver, apply_waivers

__all__ = [
    "Report",
    "RequirementSummary",
    "SeverityCount",
    "TargetSummary",
    "build_report",
    "escape_markdown",
    "render_markdown",
]

# Markdown's inline punctuation; block markers (#, -, +, 1.) matter only at a line's start, where
# escaped text is never put
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


@dataclass(frozen=True)
class SeverityCount:
    """Findings of one severity: how many are open and how many accepted."""

    severity: Severity
    open: int
    accepted: int


@dataclass(frozen=True)
class TargetSummary:
    """One target's open findings per severity (high, medium, low, info) and its accepted ones."""

    target: str
    open: tuple[int, int, int, int]
    accepted: int


@dataclass(frozen=True)
class RequirementSummary:
    """One IEC 62443-4-2 requirement: its title, how many findings concern it, and by which checks."""

    number: str
    title: str
    open: int
    accepted: int
    checks: tuple[str, ...]


@dataclass(frozen=True)
class Report:
    """Everything a report shows, in the order it shows it."""

    document: FindingsDocument
    sources: tuple[str, ...]
    groups: tuple[tuple[Severity, tuple[Finding, ...]], ...]
    severities: tuple[SeverityCount, ...]
    targets: tuple[TargetSummary, ...]
    requirements: tuple[RequirementSummary, ...]

    @property
    def blocking(self) -> int:
        """High findings not accepted: each fails the gate."""
        return sum(1 for f in self.document.findings if f.blocking)

    @property
    def generated(self) -> str:
        return self.document.generated_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    def titles(self, finding: Finding) -> tuple[tuple[str, str], ...]:
        """The finding's requirements with their titles."""
        return tuple((number, requirement_title(number)) for number in finding.requirements)


def build_report(
    documents: Sequence[FindingsDocument],
    sources: Sequence[str],
    *,
    generated_at: datetime,
    tool: str,
    waivers: Sequence[Waiver] = (),
    today: date | None = None,
) -> Report:
    """Merge ``documents``, apply ``waivers`` (as of ``today``) and summarise."""
    merged = merge_documents(documents, generated_at, tool)
    if waivers:
        merged = apply_waivers(merged, waivers, today or generated_at.date())
    ordered = merged.sorted()
    groups = tuple(
        (severity, tuple(f for f in ordered if f.severity is severity))
        for severity in Severity
        if any(f.severity is severity for f in ordered)
    )
    severities = tuple(
        SeverityCount(
            severity,
            sum(1 for f in ordered if f.severity is severity and f.accepted is None),
            sum(1 for f in ordered if f.severity is severity and f.accepted is not None),
        )
        for severity in Severity
    )
    by_target: dict[str, list[Finding]] = {t: [] for t in merged.targets}
    for f in ordered:
        by_target.setdefault(f.target, []).append(f)
    targets = [
        TargetSummary(
            target,
            (
                _open(mine, Severity.HIGH),
                _open(mine, Severity.MEDIUM),
                _open(mine, Severity.LOW),
                _open(mine, Severity.INFO),
            ),
            sum(1 for f in mine if f.accepted is not None),
        )
        for target, mine in by_target.items()
    ]
    by_requirement: dict[str, list[Finding]] = {}
    for f in ordered:
        for number in f.requirements:
            by_requirement.setdefault(number, []).append(f)
    requirements = [
        RequirementSummary(
            number,
            title,
            sum(1 for f in by_requirement[number] if f.accepted is None),
            sum(1 for f in by_requirement[number] if f.accepted is not None),
            tuple(dict.fromkeys(f.check for f in by_requirement[number])),
        )
        for number, title in REQUIREMENTS.items()
        if number in by_requirement
    ]
    return Report(merged, tuple(sources), groups, severities, tuple(targets), tuple(requirements))


def _open(findings: Sequence[Finding], severity: Severity) -> int:
    return sum(1 for f in findings if f.severity is severity and f.accepted is None)


def escape_markdown(text: str) -> str:
    """Text safe in a Markdown paragraph or table cell: Markdown's punctuation backslash-escaped, HTML
    special characters as entities (renderers pass raw HTML through), line breaks as spaces."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = " ".join(text.splitlines())
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _code_block(text: str) -> str:
    """``text`` verbatim in a fenced block whose fence is longer than any backtick run inside it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def render_markdown(report: Report, title: str = "otward assessment report") -> str:
    """The report as CommonMark/GFM text."""
    lines = [f"# {escape_markdown(title)}", ""]
    lines.append(
        f"Generated {report.generated} by {escape_markdown(report.document.tool)} from "
        f"{escape_markdown(', '.join(report.sources) or 'no documents')}."
    )
    gate = "FAIL" if report.blocking else "PASS"
    lines += ["", f"**Gate: {gate}** ({report.blocking} high finding(s) not accepted)", "", "## Summary", ""]
    lines += ["| Severity | Open | Accepted |", "|---|---:|---:|"]
    lines += [f"| {c.severity.value} | {c.open} | {c.accepted} |" for c in report.severities]
    lines += [
        "",
        "### Per target",
        "",
        "| Target | High | Medium | Low | Info | Accepted |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for t in report.targets:
        lines.append(
            f"| {escape_markdown(t.target)} | " + " | ".join(map(str, t.open)) + f" | {t.accepted} |"
        )
    lines += [
        "",
        "### Per IEC 62443-4-2 requirement",
        "",
        "| Requirement | Title | Open | Accepted | Checks |",
    ]
    lines.append("|---|---|---:|---:|---|")
    for r in report.requirements:
        checks = ", ".join(escape_markdown(c) for c in r.checks)
        lines.append(f"| {r.number} | {escape_markdown(r.title)} | {r.open} | {r.accepted} | {checks} |")
    if not report.groups:
        lines += ["", "No findings."]
    for severity, findings in report.groups:
        lines += ["", f"## {severity.value.capitalize()} ({len(findings)})"]
        for f in findings:
            accepted = " (accepted risk)" if f.accepted is not None else ""
            lines += ["", f"### {escape_markdown(f.title)}{accepted}", ""]
            lines.append(f"- **Target:** {escape_markdown(f.target)}")
            lines.append(f"- **Check:** {escape_markdown(f.check)}")
            requirements = "; ".join(f"{n} {escape_markdown(t)}" for n, t in report.titles(f))
            lines.append(f"- **IEC 62443-4-2:** {requirements}")
            if f.accepted is not None:
                lines.append(f"- **Accepted:** {escape_markdown(f.accepted)}")
            lines.append(f"- **Fix:** {escape_markdown(f.recommendation)}")
            lines += ["", "Evidence:", "", _code_block(f.evidence)]
    return "\n".join(lines) + "\n"
