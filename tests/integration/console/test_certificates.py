"""The Certificates page: filters and paging in SQL, details with decoded extensions, the PEM
download, and revocation through a confirmation page (audited, refused without the role)."""

from __future__ import annotations

import hashlib
import html
import re
import time
from dataclasses import dataclass, replace
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ReasonFlags

from otward.core.audit import AuditFilter, EventType
from otward.core.records import CertificateFilter, CertificateRecord
from otward.services.audit import Actor
from tests.conftest import build_csr, make_key
from tests.integration.console.conftest import Console, csrf_of

pytestmark = pytest.mark.integration

DEVICE = Actor(component="est", identity="est", source="192.0.2.60")
DASH = "\u2013"  # the en dash of "Showing 1-50"
_SERIAL_CELL = re.compile(r'<td class="mono serial">([0-9a-f]+)</td>')


@dataclass
class Issued:
    operator: str  # tls-client op-anna
    modbus: str  # modbus-role, role Operator
    server: str  # tls-server historian.plant.example
    plc1: str  # device plc-1 of line-1
    plc2: str  # device plc-2 of line-2


def _device(console: Console, owner: str, device_id: str) -> str:
    _, token = console.pki.enrollment_tokens.create(owner)
    csr = x509.load_pem_x509_csr(build_csr(make_key(), cn=device_id)).public_bytes(Encoding.DER)
    return console.pki.est.enroll(csr, token, label=None, actor=DEVICE).serial


@pytest.fixture
def issued(console: Console) -> Issued:
    pki = console.pki
    pki.owners.create("line-1")
    pki.owners.create("line-2")

    def issue(cn: str, profile: str, **options: object) -> str:
        return pki.issuance.issue(build_csr(make_key(), cn=cn, **options), profile=profile).serial  # type: ignore[arg-type]

    return Issued(
        operator=issue("op-anna", "tls-client"),
        modbus=_modbus(console),
        server=issue("historian.plant.example", "tls-server", dns=("historian.plant.example",)),
        plc1=_device(console, "line-1", "plc-1"),
        plc2=_device(console, "line-2", "plc-2"),
    )


def _modbus(console: Console) -> str:
    return console.pki.issuance.issue(
        build_csr(make_key(), cn="hmi-3"), profile="modbus-role", role="Operator"
    ).serial


def _serials(html: str) -> list[str]:
    return _SERIAL_CELL.findall(html)


def test_the_list_filters_by_each_field(console: Console, issued: Issued) -> None:
    browser = console.sign_in("alice")
    everything = browser.get("/ui/certificates")
    assert everything.status_code == 200
    assert {issued.operator, issued.modbus, issued.server, issued.plc1, issued.plc2} <= set(
        _serials(everything.text)
    )
    assert '<th scope="col">Not after</th>' in everything.text

    def shown(**filters: str) -> set[str]:
        answer = browser.get("/ui/certificates", params=filters)
        assert answer.status_code == 200, answer.text
        return set(_serials(answer.text))

    assert shown(subject="OP-AN") == {issued.operator}  # a part of the DN, any case
    assert shown(subject="plc-") == {issued.plc1, issued.plc2}
    assert shown(serial=issued.server) == {issued.server}
    colons = ":".join(re.findall("..", issued.server.zfill(len(issued.server) + len(issued.server) % 2)))
    assert shown(serial=colons.upper()) == {issued.server}  # as openssl prints it
    assert issued.server in shown(serial=issued.server[:6])
    assert shown(profile="modbus-role") == {issued.modbus}
    assert shown(owner="line-2") == {issued.plc2}
    assert shown(owner="line-1", subject="plc") == {issued.plc1}
    assert shown(subject="op-anna", status="valid") == {issued.operator}
    assert shown(subject="op-anna", status="revoked") == set()
    assert shown(subject="op-anna", ca="issuing") == {issued.operator}
    assert shown(subject="op-anna", ca="root") == set()
    assert shown(subject="op-anna", expiring_within="30d") == set()
    assert shown(subject="op-anna", expiring_within="400d") == {issued.operator}
    console.clock.advance(timedelta(days=800))
    browser = console.sign_in("alice")  # the session ended with the clock's leap
    assert issued.operator in shown(status="expired")
    assert shown(status="valid", subject="op-anna") == set()


def test_an_empty_result_says_what_to_do(console: Console, issued: Issued) -> None:
    page = console.sign_in("alice").get("/ui/certificates", params={"subject": "no-such-name"})
    assert page.status_code == 200
    assert "No certificate matches these filters" in page.text
    assert 'value="no-such-name"' in page.text  # the form keeps what was asked


@pytest.mark.parametrize(
    ("filters", "named"),
    [
        ({"serial": "xyz"}, "serial: 'xyz' is not a hexadecimal serial number"),
        ({"status": "lost"}, "status must be one of valid, expired, revoked"),
        ({"expiring_within": "soon"}, "expiring within: 'soon' is not a duration"),
        (
            {"expiring_within": "30d", "status": "revoked"},
            "expiring_within applies to valid certificates only",
        ),
        ({"page": "0"}, "page: a whole number from 1 to 1000000, not '0'"),
        ({"page": "x"}, "page: a whole number from 1 to 1000000, not 'x'"),
        ({"subject": "a" * 300}, "subject: at most 256 characters"),
    ],
    ids=["serial", "status", "duration", "expiring-revoked", "page-zero", "page-text", "subject-long"],
)
def test_bad_filters_are_a_400_naming_the_field(
    console: Console, filters: dict[str, str], named: str
) -> None:
    answer = console.sign_in("alice").get("/ui/certificates", params=filters)
    assert answer.status_code == 400
    assert named in html.unescape(answer.text)
    assert 'id="filter-subject"' in answer.text  # the form is shown again to correct it


def test_htmx_gets_only_the_results(console: Console, issued: Issued) -> None:
    browser = console.sign_in("alice")
    full = browser.get("/ui/certificates", params={"subject": "hmi"})
    assert 'hx-get="/ui/certificates"' in full.text
    assert 'hx-target="#results"' in full.text
    assert 'hx-push-url="true"' in full.text
    partial = browser.get(
        "/ui/certificates", params={"subject": "hmi"}, headers={"HX-Request": "true", "HX-Target": "results"}
    )
    assert partial.status_code == 200
    assert "<html" not in partial.text
    assert "<form" not in partial.text
    assert _serials(partial.text) == [issued.modbus]
    refused = browser.get(
        "/ui/certificates", params={"serial": "xyz"}, headers={"HX-Request": "true", "HX-Target": "results"}
    )
    assert refused.status_code == 200  # htmx swaps only a 2xx answer in: the refusal must show
    assert "is not a hexadecimal serial number" in refused.text
    assert "<html" not in refused.text


def _bulk(console: Console, count: int) -> list[CertificateRecord]:
    """``count`` rows cloned from one real certificate (distinct serial, subject and dates): every
    7th revoked, every 5th (not revoked) expired, the rest valid."""
    template_serial = console.pki.issuance.issue(
        build_csr(make_key(), cn="template"), profile="tls-client"
    ).serial
    template = console.pki.stores.certificates.get_certificate(int(template_serial, 16))
    assert template is not None
    now = console.clock()
    records = []
    for i in range(count):
        revoked = i % 7 == 0
        expired = not revoked and i % 5 == 0
        records.append(
            replace(
                template,
                serial_number=0x7A000000 + i,
                subject=f"CN=bulk-{i:05d},O=ACME Chemicals",
                not_valid_after=now - timedelta(days=1) if expired else now + timedelta(days=10 + i % 300),
                created_at=now - timedelta(seconds=count - i),
                revoked_at=now if revoked else None,
                revocation_reason=ReasonFlags.key_compromise if revoked else None,
                client_name=None,
            )
        )
    console.pki.stores.certificates.add_certificates(records, [])
    return records


def test_ten_thousand_certificates_page_and_filter_in_sql(console: Console, capsys) -> None:  # type: ignore[no-untyped-def]
    count = 10_000
    records = _bulk(console, count)
    everything = console.pki.stores.certificates.list_certificates(CertificateFilter(), limit=1, offset=0)[1]
    assert everything >= count + 1
    browser = console.sign_in("alice")

    started = time.perf_counter()
    first = browser.get("/ui/certificates")
    first_page = time.perf_counter() - started
    assert first.status_code == 200
    assert f"Showing 1{DASH}50 of {everything:,}" in first.text
    assert len(_serials(first.text)) == 50
    assert "Previous page" not in first.text
    assert 'href="/ui/certificates?page=2"' in first.text

    filters = {"subject": "bulk-0", "status": "revoked"}
    started = time.perf_counter()
    revoked = browser.get("/ui/certificates", params={**filters, "page": "2"})
    filtered_page = time.perf_counter() - started
    wanted = [r for r in records if r.revoked_at is not None and "bulk-0" in r.subject]
    assert f"Showing 51{DASH}100 of {len(wanted):,}" in revoked.text
    newest_first = sorted(wanted, key=lambda r: r.created_at, reverse=True)
    assert _serials(revoked.text) == [r.serial for r in newest_first[50:100]]
    assert (
        'href="/ui/certificates?subject=bulk-0&amp;status=revoked"' in revoked.text
    )  # Previous, filters kept
    assert 'href="/ui/certificates?subject=bulk-0&amp;status=revoked&amp;page=3"' in revoked.text

    last_page = (len(wanted) + 49) // 50
    last = browser.get("/ui/certificates", params={**filters, "page": str(last_page)})
    assert "Next page" not in last.text
    assert len(_serials(last.text)) == len(wanted) - 50 * (last_page - 1)

    expired = browser.get("/ui/certificates", params={"status": "expired", "subject": "bulk"})
    assert (
        f"of {sum(1 for r in records if r.revoked_at is None and r.not_valid_after <= console.clock()):,}"
        in (expired.text)
    )
    exact = browser.get("/ui/certificates", params={"serial": records[4321].serial})
    assert _serials(exact.text) == [records[4321].serial]
    prefix = browser.get("/ui/certificates", params={"serial": "7a00001"})  # 0x7a000010..0x7a00001f
    assert f"Showing 1{DASH}16 of 16" in prefix.text
    soon = browser.get("/ui/certificates", params={"expiring_within": "20d", "subject": "bulk"})
    expected = sum(
        1
        for r in records
        if r.revoked_at is None
        and console.clock() <= r.not_valid_after < console.clock() + timedelta(days=20)
    )
    assert f"of {expected:,}" in soon.text
    with capsys.disabled():
        print(
            f"\n10,000 certificates: first page {first_page * 1000:.0f} ms,"
            f" filtered page 2 {filtered_page * 1000:.0f} ms"
        )


def test_details_show_every_extension_in_words(console: Console, issued: Issued) -> None:
    browser = console.sign_in("alice")
    page = browser.get(f"/ui/certificates/{issued.modbus}")
    assert page.status_code == 200
    record = console.pki.stores.certificates.get_certificate(int(issued.modbus, 16))
    assert record is not None
    certificate = x509.load_der_x509_certificate(record.der)
    fingerprint = ":".join(f"{b:02X}" for b in hashlib.sha256(record.der).digest())
    text = page.text
    for expected in (
        "<h1",
        "CN=hmi-3",
        certificate.issuer.rfc4514_string(),
        issued.modbus,
        fingerprint,
        "EC P-256 (secp256r1)",
        "Modbus/TCP Security role",
        "role: Operator",
        "TLS client authentication (1.3.6.1.5.5.7.3.2)",
        "Key usage",
        "digital signature",
        "certificate authority: no (end entity)",
        "Subject key identifier",
        "Authority key identifier",
        "modbus-role",
        "Revoke…",
        "Download PEM",
    ):
        assert expected in text, expected
    ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert ":".join(f"{b:02x}" for b in ski) in text
    server = browser.get(f"/ui/certificates/{issued.server}").text
    assert "DNS name: historian.plant.example" in server
    assert "TLS server authentication" in server
    device = browser.get(f"/ui/certificates/{issued.plc2}").text
    assert "plc-2 (owner line-2, active, its current certificate)" in device


def test_a_bad_or_unknown_serial_is_a_page_saying_so(console: Console) -> None:
    browser = console.sign_in("alice")
    bad = browser.get("/ui/certificates/not-hex")
    assert bad.status_code == 400
    assert "serial: &#39;not-hex&#39; is not a hexadecimal serial number" in bad.text
    unknown = browser.get("/ui/certificates/abcdef123")
    assert unknown.status_code == 404
    assert "there is no certificate with serial abcdef123" in unknown.text
    assert browser.get("/ui/certificates/abcdef123/pem").status_code == 404
    assert browser.get("/ui/certificates/zz/revoke").status_code == 400


def test_the_pem_downloads_as_an_attachment(console: Console, issued: Issued) -> None:
    answer = console.sign_in("audrey").get(f"/ui/certificates/{issued.server}/pem")
    assert answer.status_code == 200
    assert answer.headers["content-disposition"] == f'attachment; filename="certificate-{issued.server}.pem"'
    record = console.pki.stores.certificates.get_certificate(int(issued.server, 16))
    assert record is not None
    assert x509.load_pem_x509_certificate(answer.content).public_bytes(Encoding.DER) == record.der


def test_revoking_after_confirmation_republishes_and_is_audited(console: Console, issued: Issued) -> None:
    browser = console.sign_in("alice")
    confirm = browser.get(f"/ui/certificates/{issued.plc1}/revoke")
    assert confirm.status_code == 200
    assert '<select id="revoke-reason" name="reason"' in confirm.text
    assert '<option value="keyCompromise">' in confirm.text
    assert "Revoke certificate</button>" in confirm.text
    assert "CN=plc-1" in confirm.text
    crl_before = console.pki.stores.crls.get_crl("issuing")
    answer = browser.post(
        f"/ui/certificates/{issued.plc1}/revoke",
        data={"csrf": csrf_of(confirm.text), "reason": "keyCompromise"},
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/ui/certificates/{issued.plc1}?notice=revoked"
    details = browser.get(answer.headers["location"]).text
    assert (
        f"Certificate {issued.plc1} revoked (reason keyCompromise)."
        " The CRL was republished and OCSP answers revoked." in details
    )
    assert "Revoke…" not in details
    record = console.pki.stores.certificates.get_certificate(int(issued.plc1, 16))
    assert record is not None
    assert record.revocation_reason is ReasonFlags.key_compromise
    crl = console.pki.stores.crls.get_crl("issuing")
    assert crl is not None
    assert crl_before is None or crl.crl_number > crl_before.crl_number
    listed = x509.load_der_x509_crl(crl.der).get_revoked_certificate_by_serial_number(int(issued.plc1, 16))
    assert listed is not None

    revoked = browser.get("/ui/certificates", params={"status": "revoked"})
    assert _serials(revoked.text) == [issued.plc1]
    assert "Revoked</span>" in revoked.text
    events = [
        r.event
        for r in console.pki.stores.audit.list_audit(
            AuditFilter(type=EventType.CERT_REVOKED.value), limit=10, offset=0
        )[0]
    ]
    assert [(e.subject, e.component, e.details["actor"], e.reason) for e in events] == [
        (issued.plc1, "console", "admin:alice", "keyCompromise")
    ]

    again = browser.post(
        f"/ui/certificates/{issued.plc1}/revoke", data={"csrf": csrf_of(confirm.text), "reason": "superseded"}
    )
    assert again.status_code == 409
    assert f"certificate {issued.plc1} is already revoked" in again.text
    assert "This certificate is already revoked" in again.text
    assert "already revoked" in browser.get(f"/ui/certificates/{issued.plc1}/revoke").text


def test_a_bad_reason_is_refused_and_nothing_revoked(console: Console, issued: Issued) -> None:
    browser = console.sign_in("alice")
    token = csrf_of(browser.get(f"/ui/certificates/{issued.server}/revoke").text)
    answer = browser.post(
        f"/ui/certificates/{issued.server}/revoke", data={"csrf": token, "reason": "certificateHold"}
    )
    assert answer.status_code == 400
    assert "revocation in otward is permanent" in answer.text
    record = console.pki.stores.certificates.get_certificate(int(issued.server, 16))
    assert record is not None
    assert record.revoked_at is None


def test_an_auditor_reads_but_cannot_revoke(console: Console, issued: Issued) -> None:
    browser = console.sign_in("audrey")
    assert browser.get("/ui/certificates").status_code == 200
    details = browser.get(f"/ui/certificates/{issued.operator}")
    assert details.status_code == 200
    assert "Revoke…" not in details.text
    assert browser.get(f"/ui/certificates/{issued.operator}/revoke").status_code == 403
    refused = browser.post(
        f"/ui/certificates/{issued.operator}/revoke",
        data={"csrf": csrf_of(details.text), "reason": "keyCompromise"},
    )
    assert refused.status_code == 403
    record = console.pki.stores.certificates.get_certificate(int(issued.operator, 16))
    assert record is not None
    assert record.revoked_at is None


def test_an_account_without_the_pki_role_cannot_see_certificates(console: Console, issued: Issued) -> None:
    browser = console.sign_in("olga")  # enrollment officer of line-2: devices, not certificates
    assert browser.get("/ui/certificates").status_code == 403
    assert browser.get(f"/ui/certificates/{issued.plc2}").status_code == 403
    assert browser.get(f"/ui/certificates/{issued.plc2}/pem").status_code == 403
    token = csrf_of(browser.get("/ui/").text)
    assert browser.post(f"/ui/certificates/{issued.plc2}/revoke", data={"csrf": token}).status_code == 403


def test_without_a_session_the_pages_lead_to_sign_in(console: Console, issued: Issued) -> None:
    answer = console.client().get("/ui/certificates?subject=plc")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/ui/sign-in")
