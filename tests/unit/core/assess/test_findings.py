from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from otward.core.assess.findings import (
    Finding,
    FindingsDocument,
    Severity,
    dump_findings,
    exit_status,
    merge_documents,
    parse_findings,
)
from otward.core.assess.waivers import apply_waivers, parse_waivers

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def finding(
    check: str = "tls.protocol.legacy", severity: Severity = Severity.HIGH, target: str = "plc-1:443"
) -> Finding:
    return Finding(
        check,
        severity,
        target,
        "TLS 1.0 accepted",
        "TLSv1 handshake completed",
        "Disable TLS < 1.2",
        ("CR 4.3",),
    )


def document(*findings: Finding) -> FindingsDocument:
    return FindingsDocument("tls", NOW, "otward 0.1", ("plc-1:443",), findings)


def test_round_trip_keeps_every_field_and_sorts_most_urgent_first() -> None:
    low = finding("tls.cert.expiring", Severity.MEDIUM)
    high = finding().as_accepted("vendor fix due")
    text = dump_findings(document(low, high))
    parsed = parse_findings(text)
    assert parsed.findings == (high, low)
    assert parsed.generated_at == NOW
    body = json.loads(text)
    assert body["version"] == 1
    assert body["summary"] == {"high": 1, "medium": 1, "low": 0, "info": 0}


def test_gate_fails_on_an_unaccepted_high_only() -> None:
    assert exit_status([document(finding())]) == 1
    assert exit_status([document(finding().as_accepted("isolated"))]) == 0
    assert exit_status([document(finding(severity=Severity.MEDIUM))]) == 0


def test_a_requirement_outside_the_table_is_refused() -> None:
    with pytest.raises(ValueError, match=r"CR 9\.9"):
        Finding("x.y", Severity.LOW, "t", "t", "e", "r", ("CR 9.9",))
    with pytest.raises(ValueError, match="names no"):
        Finding("x.y", Severity.LOW, "t", "t", "e", "r", ())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b.update(version=2), "version 2"),
        (lambda b: b.update(schema="other"), "not an otward findings"),
        (lambda b: b["findings"][0].update(severity="critical"), "findings\\[0\\].severity"),
        (lambda b: b["findings"][0].pop("check"), "'check' is missing"),
        (lambda b: b["findings"][0].update(requirements=["CR 0"]), "CR 0"),
        (lambda b: b.update(generated_at="yesterday"), "generated_at"),
    ],
)
def test_a_malformed_document_is_refused_with_the_place(mutate, message) -> None:  # type: ignore[no-untyped-def]
    body = json.loads(dump_findings(document(finding())))
    mutate(body)
    with pytest.raises(ValueError, match=message):
        parse_findings(json.dumps(body), "scan.json")


def test_merge_keeps_targets_once_and_all_findings() -> None:
    merged = merge_documents([document(finding()), document(finding(target="plc-2:443"))], NOW, "otward")
    assert merged.kind == "tls"
    assert merged.targets == ("plc-1:443",)
    assert len(merged.findings) == 2


def test_waiver_marks_matching_findings_and_lapses() -> None:
    waivers = parse_waivers(
        '[[accept]]\ncheck = "tls.protocol.*"\ntarget = "plc-*"\n'
        'reason = "cell network"\nuntil = 2027-01-31\n'
    )
    marked = apply_waivers(document(finding(), finding(target="hmi:443")), waivers, date(2027, 1, 1))
    assert [f.accepted for f in marked.findings] == ["cell network", None]
    lapsed = apply_waivers(document(finding()), waivers, date(2027, 2, 1))
    assert lapsed.findings[0].accepted is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[accept]]\ncheck = "a"\n', "reason is required"),
        ('[[accept]]\nreason = "x"\n', "check must name"),
        ('[[accept]]\ncheck = "a"\nreason = "x"\nuntil = "soon"\n', "until must be a date"),
        ('[[accept]]\ncheck = "a"\nreason = "x"\nwho = "me"\n', "unknown key"),
    ],
)
def test_a_bad_waiver_is_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_waivers(text)
