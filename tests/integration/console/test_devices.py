"""The Devices and owners pages: the registry paged and filtered in SQL (1,000 devices), one device
and its actions (each audited), owners, and enrollment tokens shown once and usable over EST; an
owner-limited officer sees and changes only its owner's devices and tokens."""

from __future__ import annotations

import base64
import html
import re
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

from otward.adapters.db.schema import devices
from otward.adapters.keys import generate_private_key
from otward.core.audit import AuditFilter, AuditRecord, EventType
from otward.core.keys import KeyType, signature_hash_for
from otward.core.records import DeviceStatus
from tests.integration.console.conftest import SETUP, Console, csrf_of

pytestmark = pytest.mark.integration

DASH = "\N{EN DASH}"  # "Showing 1-50" is written with an en dash
_TOKEN = re.compile(r'id="new-token" readonly value="([^"]+)"')


def events(console: Console, kind: EventType) -> list[AuditRecord]:
    records, _total = console.pki.stores.audit.list_audit(AuditFilter(type=kind.value), limit=200, offset=0)
    return list(records)


@pytest.fixture
def plant(console: Console) -> Console:
    """Owners line-1 and line-2, each with one device enrolled for real (a signed certificate)."""
    for owner in ("line-1", "line-2"):
        console.pki.owners.create(owner, actor=SETUP)
    for owner, device_id in (("line-1", "plc-1"), ("line-2", "plc-2")):
        list(console.pki.provisioning.provision(owner, [device_id], actor=SETUP))
    return console


def _insert_devices(console: Console, count: int) -> None:
    """``count`` registry rows straight into the table (no certificates): for paging and filters."""
    now = console.clock()
    rows = [
        {
            "device_id": f"bulk-{n:04d}",
            "owner": "line-2" if n % 4 == 0 else "line-1",
            "status": DeviceStatus.DISABLED.value if n % 10 == 0 else DeviceStatus.ACTIVE.value,
            "profile": "device",
            "current_serial": None,
            "enrollment_token_id": None,
            "first_seen": now,
            "last_seen": now,
        }
        for n in range(count)
    ]
    with console.pki.stores.database.engine.begin() as conn:
        conn.execute(devices.insert(), rows)


def _ids(page: str) -> list[str]:
    return re.findall(r'<a href="/ui/devices/([^"/?]+)">', page)


def _post(browser: TestClient, page_url: str, action: str, **fields: str):  # type: ignore[no-untyped-def]
    csrf = csrf_of(browser.get(page_url).text)
    return browser.post(action, data={"csrf": csrf, **fields})


# --- the registry ----------------------------------------------------------------------------


def test_the_registry_shows_devices_with_their_certificate(plant: Console) -> None:
    browser = plant.sign_in("alice")
    page = browser.get("/ui/devices")
    assert page.status_code == 200
    assert _ids(page.text) == ["plc-1", "plc-2"]
    device = plant.pki.devices.get("plc-1")
    assert f'href="/ui/certificates/{device.current_serial}"' in page.text
    certificate = plant.pki.devices.certificates("plc-1")[0]
    assert certificate.not_valid_after.strftime("%Y-%m-%d %H:%M UTC") in page.text
    assert f"Showing 1{DASH}2 of 2 devices" in page.text
    assert '<th scope="col">Last seen' in page.text


def test_an_empty_registry_says_what_to_do(console: Console) -> None:
    page = console.sign_in("alice").get("/ui/devices")
    assert "No devices yet." in page.text
    assert "otward agent enroll" in page.text


def test_a_thousand_devices_are_paged_and_filtered_in_sql(plant: Console) -> None:
    _insert_devices(plant, 1000)
    browser = plant.sign_in("alice")
    first = browser.get("/ui/devices")
    assert f"Showing 1{DASH}50 of 1,002 devices" in first.text
    assert _ids(first.text)[:2] == ["bulk-0000", "bulk-0001"]
    assert len(_ids(first.text)) == 50
    assert 'href="/ui/devices?page=2" rel="next"' in first.text
    last = browser.get("/ui/devices?page=21")
    assert f"Showing 1,001{DASH}1,002 of 1,002 devices" in last.text
    assert _ids(last.text) == ["plc-1", "plc-2"]
    assert 'rel="next"' not in last.text
    # filters combine, and the pager keeps them
    filtered = browser.get("/ui/devices?q=bulk-00&owner=line-2&status=disabled")
    assert _ids(filtered.text) == ["bulk-0000", "bulk-0020", "bulk-0040", "bulk-0060", "bulk-0080"]
    assert "of 5 devices" in filtered.text
    disabled = browser.get("/ui/devices?status=disabled&page=2")
    assert f"Showing 51{DASH}100 of 100 devices" in disabled.text
    assert 'href="/ui/devices?status=disabled" rel="prev"' in disabled.text  # page 1: the filters alone
    # the substring is literal: _ and % are not wildcards
    assert _ids(browser.get("/ui/devices?q=bulk_").text) == []
    # htmx asks for the results only
    partial = browser.get("/ui/devices?q=plc", headers={"HX-Request": "true", "HX-Target": "results"})
    assert partial.text.lstrip().startswith('<section id="results"')
    assert _ids(partial.text) == ["plc-1", "plc-2"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("q=%3Cscript%3E", "q (device id contains)"),
        ("owner=Line%202", "owner"),
        ("status=lost", "status"),
        ("page=0", "page"),
        ("page=abc", "page"),
    ],
    ids=["q", "owner", "status", "page-zero", "page-text"],
)
def test_bad_filters_are_a_400_naming_the_field(console: Console, query: str, field: str) -> None:
    answer = console.sign_in("alice").get(f"/ui/devices?{query}")
    assert answer.status_code == 400
    assert field in html.unescape(answer.text)


def test_an_owner_limited_officer_sees_only_its_owners_devices(plant: Console) -> None:
    _insert_devices(plant, 1000)
    browser = plant.sign_in("olga")
    page = browser.get("/ui/devices")
    assert "of 251 devices" in page.text  # bulk-0000, 0004, ... (250) and plc-2
    assert "plc-1" not in browser.get("/ui/devices?q=plc").text
    assert _ids(browser.get("/ui/devices?q=plc").text) == ["plc-2"]
    assert browser.get("/ui/devices?owner=line-1").status_code == 403
    assert browser.get("/ui/devices/plc-1").status_code == 403
    assert browser.get("/ui/devices/plc-2").status_code == 200
    owners = browser.get("/ui/owners").text
    assert "line-2" in owners
    assert "line-1" not in owners


def test_a_reader_without_the_enrollment_role_is_refused(plant: Console) -> None:
    browser = plant.sign_in("audrey")  # the auditor reads every area...
    assert browser.get("/ui/devices").status_code == 200
    page_url = "/ui/devices/plc-1"
    assert "Disable device" not in browser.get(page_url).text
    for action in ("disable", "enable", "revoke", "reset"):
        answer = _post(browser, page_url, f"/ui/devices/plc-1/{action}")
        assert answer.status_code == 403, action  # ...but changes none
    assert _post(browser, page_url, "/ui/enrollment-tokens", owner="line-1").status_code == 403
    assert plant.pki.devices.get("plc-1").status is DeviceStatus.ACTIVE


# --- one device and its actions --------------------------------------------------------------


def test_the_device_page_shows_its_state_and_certificates(plant: Console) -> None:
    page = plant.sign_in("alice").get("/ui/devices/plc-1")
    assert page.status_code == 200
    serial = plant.pki.devices.get("plc-1").current_serial
    assert f'href="/ui/certificates/{serial}"' in page.text
    assert "Disable device" in page.text
    assert "Revoke device…" in page.text
    assert "Reset enrollment…" in page.text
    assert plant.sign_in("alice").get("/ui/devices/nope").status_code == 404


def test_disable_and_enable(plant: Console) -> None:
    browser = plant.sign_in("alice")
    answer = _post(browser, "/ui/devices/plc-1", "/ui/devices/plc-1/disable")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/devices/plc-1?done=disabled"
    assert plant.pki.devices.get("plc-1").status is DeviceStatus.DISABLED
    shown = browser.get(answer.headers["location"]).text
    assert "The device is disabled" in shown
    assert "Enable device" in shown
    [disabled] = events(plant, EventType.DEVICE_DISABLED)
    assert disabled.event.subject == "plc-1"
    assert disabled.event.details["actor"] == "admin:alice"
    assert disabled.event.component == "console"
    answer = _post(browser, "/ui/devices/plc-1", "/ui/devices/plc-1/enable")
    assert answer.headers["location"] == "/ui/devices/plc-1?done=enabled"
    assert plant.pki.devices.get("plc-1").status is DeviceStatus.ACTIVE
    assert [r.event.subject for r in events(plant, EventType.DEVICE_ENABLED)] == ["plc-1"]


def test_revoke_asks_for_a_reason_then_revokes_every_certificate(plant: Console) -> None:
    browser = plant.sign_in("alice")
    confirm = browser.get("/ui/devices/plc-1/revoke")
    assert confirm.status_code == 200
    assert "This cannot be undone" in confirm.text
    assert '<select id="revoke-reason" name="reason">' in confirm.text
    serial = plant.pki.devices.get("plc-1").current_serial
    answer = _post(browser, "/ui/devices/plc-1/revoke", "/ui/devices/plc-1/revoke", reason="keyCompromise")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/devices/plc-1?done=revoked"
    assert plant.pki.devices.get("plc-1").status is DeviceStatus.REVOKED
    revoked = [r for r in events(plant, EventType.CERT_REVOKED) if r.event.subject == serial]
    assert [r.event.reason for r in revoked] == ["keyCompromise"]
    assert revoked[0].event.details["actor"] == "admin:alice"
    assert "revoked for good" in browser.get("/ui/devices/plc-1").text
    bad = _post(browser, "/ui/devices/plc-2/revoke", "/ui/devices/plc-2/revoke", reason="certificateHold")
    assert bad.status_code == 400
    assert plant.pki.devices.get("plc-2").status is DeviceStatus.ACTIVE


def test_reset_explains_itself_then_revokes_the_unused_certificate(plant: Console) -> None:
    browser = plant.sign_in("alice")
    confirm = browser.get("/ui/devices/plc-1/reset")
    assert "superseded" in confirm.text
    assert "new enrollment token" in confirm.text
    serial = plant.pki.devices.get("plc-1").current_serial
    answer = _post(browser, "/ui/devices/plc-1/reset", "/ui/devices/plc-1/reset")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/devices/plc-1?done=reset"
    [reset] = events(plant, EventType.DEVICE_RESET)
    assert reset.event.subject == "plc-1"
    assert reset.event.details["serial"] == serial
    certificate = plant.pki.devices.certificates("plc-1")[0]
    assert certificate.revoked_at is not None
    # a second reset is refused by the service (nothing valid left to reset): a 409 page
    again = _post(browser, "/ui/devices/plc-1/reset", "/ui/devices/plc-1/reset")
    assert again.status_code == 409


def test_an_owner_limited_officer_changes_only_its_owners_devices(plant: Console) -> None:
    browser = plant.sign_in("olga")
    page_url = "/ui/devices/plc-2"
    for action in ("disable", "revoke", "reset"):
        answer = _post(browser, page_url, f"/ui/devices/plc-1/{action}")
        assert answer.status_code == 403, action
    assert browser.get("/ui/devices/plc-1/revoke").status_code == 403
    assert plant.pki.devices.get("plc-1").status is DeviceStatus.ACTIVE
    denied = events(plant, EventType.AUTHZ_DENIED)
    assert any(r.event.details["actor"] == "admin:olga" for r in denied)
    assert _post(browser, page_url, "/ui/devices/plc-2/disable").status_code == 303
    assert plant.pki.devices.get("plc-2").status is DeviceStatus.DISABLED


def test_an_action_without_the_csrf_token_changes_nothing(plant: Console) -> None:
    browser = plant.sign_in("alice")
    assert browser.post("/ui/devices/plc-1/disable", data={}).status_code == 403
    assert plant.pki.devices.get("plc-1").status is DeviceStatus.ACTIVE


# --- owners ----------------------------------------------------------------------------------


def test_owners_are_listed_with_their_ca_and_device_count(plant: Console) -> None:
    _insert_devices(plant, 8)
    page = plant.sign_in("alice").get("/ui/owners")
    assert page.status_code == 200
    assert '<a href="/ui/devices?owner=line-1">7 devices</a>' in page.text  # 6 bulk + plc-1
    assert '<a href="/ui/devices?owner=line-2">3 devices</a>' in page.text  # bulk-0000, 0004, plc-2
    assert "<td>issuing</td>" in page.text


# --- enrollment tokens -----------------------------------------------------------------------


def _create_token(browser: TestClient, **fields: str):  # type: ignore[no-untyped-def]
    values = {"owner": "line-2", "ttl": "24h", "uses": "2", "device_id_pattern": "plc-*", **fields}
    return _post(browser, "/ui/enrollment-tokens", "/ui/enrollment-tokens", **values)


def _csr(device_id: str) -> bytes:
    key = generate_private_key(KeyType.EC_P256)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
        .sign(key, signature_hash_for(key))  # type: ignore[arg-type]
    )
    return csr.public_bytes(Encoding.DER)


def test_a_new_token_is_shown_once_and_enrolls_a_device(plant: Console) -> None:
    browser = plant.sign_in("alice")
    answer = _create_token(browser)
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    match = _TOKEN.search(answer.text)
    assert match
    token = match.group(1)
    assert token.startswith("otwe_")
    assert '<button type="button" data-copy="new-token" aria-describedby="copy-status">Copy</button>' in (
        answer.text
    )
    assert "it will not be shown again" in answer.text
    assert "otward agent enroll --server https://testserver --device-id DEVICE-ID" in answer.text
    assert "/.well-known/est/simpleenroll" in answer.text
    [created] = events(plant, EventType.ENROLL_TOKEN_CREATED)
    assert created.event.details["owner"] == "line-2"
    assert created.event.details["pattern"] == "plc-*"
    assert created.event.details["actor"] == "admin:alice"
    # the list shows it, never its secret
    listing = browser.get("/ui/enrollment-tokens").text
    token_id = created.event.subject.removeprefix("enroll_token:")
    assert token_id in listing
    assert token not in listing
    assert "2 of 2" in listing
    # a device enrolls with it over EST (HTTP Basic, as the curl command shown) and appears in the registry
    with plant.client() as device:
        enrolled = device.post(
            "/.well-known/est/simpleenroll",
            content=base64.encodebytes(_csr("plc-9")),
            headers={"Content-Type": "application/pkcs10"},
            auth=("dev", token),
        )
    assert enrolled.status_code == 200, enrolled.text
    assert "plc-9" in _ids(browser.get("/ui/devices?q=plc-9").text)
    assert "1 of 2" in browser.get("/ui/enrollment-tokens").text


def test_a_refused_token_form_comes_back_with_the_reason(plant: Console) -> None:
    browser = plant.sign_in("alice")
    for fields, message in (
        ({"ttl": "forever"}, "Valid for: write a duration"),
        ({"ttl": "90d"}, "ttl must be between 1 minute and 30 days"),
        ({"uses": "0"}, "uses must be between 1 and 100000"),
        ({"uses": "-1"}, "Number of uses"),
        ({"device_id_pattern": "plc/*"}, "device id pattern"),
        ({"owner": ""}, "Owner: choose an owner"),
    ):
        answer = _create_token(browser, **fields)
        assert answer.status_code == 400, fields
        assert message in html.unescape(answer.text), fields
        assert not _TOKEN.search(answer.text)
    assert _create_token(browser, owner="ghost").status_code == 404
    assert events(plant, EventType.ENROLL_TOKEN_CREATED) == []


def test_an_owner_limited_officer_creates_and_revokes_tokens_of_its_owner_only(plant: Console) -> None:
    browser = plant.sign_in("olga")
    form = browser.get("/ui/enrollment-tokens").text
    assert '<option value="line-2"' in form
    assert '<option value="line-1"' not in form
    assert _create_token(browser, owner="line-1").status_code == 403
    assert _create_token(browser, owner="line-2").status_code == 200
    other, _ = plant.pki.enrollment_tokens.create("line-1", actor=SETUP)
    assert other.token_id not in browser.get("/ui/enrollment-tokens").text
    refused = _post(browser, "/ui/enrollment-tokens", f"/ui/enrollment-tokens/{other.token_id}/revoke")
    assert refused.status_code == 403
    assert plant.pki.enrollment_tokens.get(other.token_id).revoked_at is None
    [own] = [e for e in events(plant, EventType.ENROLL_TOKEN_CREATED) if e.event.details["owner"] == "line-2"]
    own_id = own.event.subject.removeprefix("enroll_token:")
    answer = _post(browser, "/ui/enrollment-tokens", f"/ui/enrollment-tokens/{own_id}/revoke")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/enrollment-tokens?done=token-revoked"
    assert plant.pki.enrollment_tokens.get(own_id).revoked_at is not None
    assert [r.event.subject for r in events(plant, EventType.ENROLL_TOKEN_REVOKED)] == [
        f"enroll_token:{own_id}"
    ]


def test_an_expired_token_is_listed_as_expired(plant: Console) -> None:
    plant.pki.enrollment_tokens.create("line-1", ttl=timedelta(hours=1), actor=SETUP)
    plant.clock.advance(timedelta(hours=2))
    listing = plant.sign_in("alice").get("/ui/enrollment-tokens").text
    assert '<span class="badge muted">expired</span>' in listing
    assert ">Revoke</button>" not in listing
