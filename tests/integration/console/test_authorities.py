"""Authorities: the CA tree for pki readers, with validity, key, status and the downloads."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from cryptography import x509

from otward.console.pages.authorities import key_backend
from otward.core.audit import AuditFilter
from otward.core.keys import KeyType
from otward.core.revocation import ReasonFlags
from tests.integration.console.conftest import Console

pytestmark = pytest.mark.integration


def _tree_rows(html: str) -> list[str]:
    body = html.split('id="authority-tree"', 1)[1].split("</table>", 1)[0].split("<tbody>", 1)[1]
    return re.findall(r"<tr>(.*?)</tr>", body, re.S)


def _name(row: str) -> str:
    match = re.search(
        r'class="tree depth-(\d)">.*?(?:<a [^>]*>)?([a-z0-9-]+)(?:</a>)?\s*<span class="', row, re.S
    )
    assert match, row
    return f"{match.group(1)}:{match.group(2)}"


def test_the_tree_roots_first_with_subordinates_under_their_parent(console: Console) -> None:
    authorities = console.pki.authorities
    authorities.create_subordinate(
        "line-2", parent="root", key_type=KeyType.EC_P256, organization="ACME", path_length=1
    )
    authorities.create_subordinate("cell-4", parent="line-2", key_type=KeyType.EC_P256, organization="ACME")
    authorities.create_pending("plant-b", key_type=KeyType.EC_P256, organization="ACME")
    page = console.sign_in("alice").get("/ui/authorities")
    assert page.status_code == 200
    rows = _tree_rows(page.text)
    assert [_name(r) for r in rows] == ["0:root", "1:issuing", "1:line-2", "2:cell-4", "0:plant-b"]
    root = rows[0]
    assert "CN=ACME Chemicals Root CA" in root
    assert "ec-p256" in root
    assert "file (encrypted)" in root
    assert '<span class="badge ok">active</span>' in root
    days_left = (
        x509.load_der_x509_certificate(authorities.record("root").certificate_der).not_valid_after_utc
        - console.clock()
    ).days
    assert f'<td class="num">{days_left}</td>' in root
    assert 'href="/ui/authorities/root/chain.pem"' in root
    assert 'href="/ui/authorities/root/crl"' in root
    assert "pending" in rows[4]
    assert "chain.pem" not in rows[4]
    assert 'id="authorities"' in page.text
    assert page.text.count("<h1>") == 1


def test_status_revoked_and_expiring(console: Console) -> None:
    authorities = console.pki.authorities
    authorities.create_subordinate(
        "line-2", parent="root", key_type=KeyType.EC_P256, organization="ACME", path_length=1
    )
    authorities.create_subordinate("cell-4", parent="line-2", key_type=KeyType.EC_P256, organization="ACME")
    console.pki.revocation.revoke_authority("line-2", ReasonFlags.key_compromise)
    rows = _tree_rows(console.sign_in("alice").get("/ui/authorities").text)
    line, cell = rows[2], rows[3]
    assert '<span class="badge bad">revoked</span>' in line
    assert "revoked (parent line-2)" in cell
    end = x509.load_der_x509_certificate(authorities.record("issuing").certificate_der).not_valid_after_utc
    console.clock.now = end - timedelta(days=20, hours=1)
    rows = _tree_rows(console.sign_in("alice").get("/ui/authorities").text)
    assert "expiring" in rows[1]
    assert "expires in 20 days" in rows[1]


def test_detail_page(console: Console) -> None:
    page = console.sign_in("alice").get("/ui/authorities/issuing")
    assert page.status_code == 200
    text = page.text
    assert "<h1>CA issuing</h1>" in text
    assert 'href="/ui/authorities/root"' in text  # the parent
    crl = console.pki.stores.crls.get_crl("issuing")
    assert crl is not None
    assert f"<dd>{crl.crl_number}</dd>" in text
    assert "fresh" in text
    pem = re.search(r'<textarea id="ca-certificate"[^>]*>(.*?)</textarea>', text, re.S)
    assert pem is not None
    certificate = x509.load_pem_x509_certificate(pem.group(1).encode())
    assert (
        certificate.serial_number
        == x509.load_der_x509_certificate(
            console.pki.authorities.record("issuing").certificate_der
        ).serial_number
    )
    root = console.sign_in("alice").get("/ui/authorities/root").text
    assert 'href="/ui/authorities/issuing"' in root  # the subordinate


def test_downloads_are_attachments(console: Console) -> None:
    browser = console.sign_in("alice")
    chain = browser.get("/ui/authorities/issuing/chain.pem")
    assert chain.status_code == 200
    assert chain.headers["content-disposition"] == 'attachment; filename="issuing-chain.pem"'
    certificates = x509.load_pem_x509_certificates(chain.content)
    assert [c.subject for c in certificates] == [
        c.subject for c in console.pki.authorities.certificate_chain("issuing")
    ]
    crl = browser.get("/ui/authorities/issuing/crl")
    assert crl.status_code == 200
    assert crl.headers["content-type"] == "application/pkix-crl"
    assert crl.headers["content-disposition"] == 'attachment; filename="issuing.crl"'
    stored = console.pki.stores.crls.get_crl("issuing")
    assert stored is not None
    assert crl.content == stored.der
    x509.load_der_x509_crl(crl.content)
    assert "content-security-policy" in crl.headers


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/ui/authorities/nope", 404),
        ("/ui/authorities/nope/chain.pem", 404),
        ("/ui/authorities/nope/crl", 404),
        ("/ui/authorities/Bad_Name", 400),
    ],
)
def test_unknown_or_bad_names(console: Console, path: str, status: int) -> None:
    answer = console.sign_in("alice").get(path)
    assert answer.status_code == status
    assert "text/html" in answer.headers["content-type"]


def test_pending_ca_has_no_detail_page_yet(console: Console) -> None:
    console.pki.authorities.create_pending("plant-b", key_type=KeyType.EC_P256, organization="ACME")
    answer = console.sign_in("alice").get("/ui/authorities/plant-b")
    assert answer.status_code in (409, 422)
    assert "waits for its certificate" in answer.text


@pytest.mark.parametrize(
    "path",
    [
        "/ui/authorities",
        "/ui/authorities/issuing",
        "/ui/authorities/issuing/chain.pem",
        "/ui/authorities/issuing/crl",
    ],
)
def test_an_account_without_pki_read_is_refused(console: Console, path: str) -> None:
    answer = console.sign_in("olga").get(path)
    assert answer.status_code == 403
    _, denied = console.pki.stores.audit.list_audit(AuditFilter(type="authz.denied"), limit=1, offset=0)
    assert denied == 1


def test_the_auditor_may_read(console: Console) -> None:
    assert console.sign_in("audrey").get("/ui/authorities").status_code == 200


@pytest.mark.parametrize(
    ("key_ref", "shown"),
    [
        ("file:ca-issuing-1a2b.pem", "file (encrypted)"),
        ("pkcs11:token=otward;object=ca-issuing", "HSM (PKCS#11)"),
        ("vault:transit/ca", "vault"),
        ("", "unknown"),
    ],
)
def test_key_backend_from_the_key_reference(key_ref: str, shown: str) -> None:
    assert key_backend(key_ref) == shown
