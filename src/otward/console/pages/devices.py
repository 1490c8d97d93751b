"""Devices and owners: the registry (paged and filtered in SQL), one device with its certificates
and its actions (disable, enable, revoke, reset), the owners, and enrollment tokens (created here,
shown once).

An owner-limited officer (``enrollment-officer:line-2``) sees only its owners' devices and tokens:
the lists are filtered in SQL by the owners its roles reach, and every page or action on one device
or token checks that resource's owner (refusals are audited as ``authz.denied``, a 403 page).
Every change goes through the services, which audit it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from otward.console.paging import MAX_PAGE, PAGE_SIZE, pager
from otward.console.render import PREFIX, SECURITY_HEADERS, render, wants_block
from otward.console.viewer import Submitted, Viewer, changing, reading
from otward.core.authz import Action, Area, Permission
from otward.core.durations import parse_duration
from otward.core.identifiers import DEVICE_ID, OWNER
from otward.core.keys import spki_pin
from otward.core.records import DeviceRecord, DeviceStatus, EnrollmentTokenRecord, OwnerRecord
from otward.core.revocation import REASON_NAMES, parse_reason
from otward.errors import InvalidRequestError, OtwardError
from otward.http.auth import get_pki
from otward.services.pki import Pki

__all__ = ["router"]

router = APIRouter()

_ID_TEXT = re.compile(r"[A-Za-z0-9._-]{1,64}")  # part of a device id, for the filter
# Reasons an officer may give for revoking a device (the RFC 5280 names the API takes too).
_DEVICE_REASONS = (
    ("cessationOfOperation", "Taken out of service (cessationOfOperation)"),
    ("keyCompromise", "Key compromised or device stolen (keyCompromise)"),
    ("affiliationChanged", "Moved to another owner or site (affiliationChanged)"),
    ("superseded", "Replaced by another device (superseded)"),
    ("privilegeWithdrawn", "No longer allowed (privilegeWithdrawn)"),
    ("unspecified", "No reason given (unspecified)"),
)
# What a redirect after a change says: fixed texts chosen by key, never text from the URL.
_NOTICES = {
    "disabled": "The device is disabled: it keeps its certificates but cannot enroll, re-enroll or renew.",
    "enabled": "The device is enabled again.",
    "revoked": "The device is revoked with every certificate it held; the CRLs were republished.",
    "reset": "The device was reset: its unused certificate is revoked (superseded). "
    "Enroll it again with a new enrollment token of its owner.",
    "token-revoked": "The enrollment token is revoked: it enrolls nothing any more.",
}

Viewing = Annotated[Viewer, Depends(reading(Area.ENROLLMENT))]
Changing = Annotated[Submitted, Depends(changing(Area.ENROLLMENT))]


def _require(pki: Pki, viewer: Viewer, owner: str, action: Action) -> None:
    """Refuse (403, audited) ``action`` on a resource of ``owner`` the viewer's roles do not reach."""
    if not viewer.may(Area.ENROLLMENT, action, owner=owner):
        pki.accounts.authorize(viewer.account, Permission(Area.ENROLLMENT, action), viewer.actor, owner=owner)


def _visible_owners(pki: Pki, viewer: Viewer, action: Action = Action.READ) -> list[OwnerRecord]:
    reach = viewer.owners(Area.ENROLLMENT, action)
    return [o for o in pki.owners.list() if reach is None or o.name in reach]


def _device(pki: Pki, viewer: Viewer, device_id: str, action: Action = Action.READ) -> DeviceRecord:
    if not DEVICE_ID.is_valid(device_id):
        raise InvalidRequestError("a device id is 1-64 letters, digits or ._-", rule="device-id")
    device = pki.devices.get(device_id)
    _require(pki, viewer, device.owner, action)
    return device


def _back_to(device_id: str, notice: str) -> Response:
    target = f"{PREFIX}/devices/{quote(device_id, safe='')}?done={notice}"
    return RedirectResponse(target, status_code=303, headers=dict(SECURITY_HEADERS))


# --- the registry ----------------------------------------------------------------------------


@router.get("/devices", response_class=HTMLResponse)
def list_devices(
    request: Request,
    viewer: Viewing,
    q: Annotated[str, Query(max_length=64)] = "",
    owner: Annotated[str, Query(max_length=64)] = "",
    status: Annotated[str, Query(max_length=16)] = "",
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
) -> HTMLResponse:
    pki = get_pki(request)
    q, owner, status = q.strip(), owner.strip(), status.strip()
    if q and not _ID_TEXT.fullmatch(q):
        raise InvalidRequestError("q (device id contains): use letters, digits or ._-", rule="filter-q")
    if owner and not OWNER.is_valid(owner):
        raise InvalidRequestError("owner: 1-64 lower-case letters, digits or ._-", rule="filter-owner")
    try:
        wanted = DeviceStatus(status) if status else None
    except ValueError:
        raise InvalidRequestError(
            "status: choose active, disabled or revoked", rule="filter-status"
        ) from None
    reach = viewer.owners(Area.ENROLLMENT)
    if owner:
        _require(pki, viewer, owner, Action.READ)
    owners = frozenset({owner}) if owner else reach
    listings, total = pki.devices.find(
        owners=owners,
        id_contains=q or None,
        status=wanted,
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
    )
    filters = {"q": q, "owner": owner, "status": status}
    context: dict[str, Any] = {
        "listings": listings,
        "filters": filters,
        "filtered": any(filters.values()),
        "pager": pager(f"{PREFIX}/devices", filters, page, len(listings), total),
        "owners": _visible_owners(pki, viewer),
        "statuses": [s.value for s in DeviceStatus],
        "now": pki.clock(),
        "may_create_token": viewer.may_some(Area.ENROLLMENT, Action.WRITE),
    }
    block = "results" if wants_block(request, "results") else None
    return render(request, "devices.html", viewer, block=block, **context)


# --- one device ------------------------------------------------------------------------------


@router.get("/devices/{device_id}", response_class=HTMLResponse)
def show_device(
    request: Request,
    device_id: str,
    viewer: Viewing,
    done: Annotated[str, Query(max_length=32)] = "",
) -> HTMLResponse:
    pki = get_pki(request)
    device = _device(pki, viewer, device_id)
    certificates = pki.devices.certificates(device.device_id)
    return render(
        request,
        "device.html",
        viewer,
        device=device,
        certificates=certificates,
        now=pki.clock(),
        notice=_NOTICES.get(done),
        may_change=viewer.may(Area.ENROLLMENT, Action.WRITE, owner=device.owner),
    )


@router.post("/devices/{device_id}/disable")
def disable_device(request: Request, device_id: str, submitted: Changing) -> Response:
    pki = get_pki(request)
    device = _device(pki, submitted.viewer, device_id, Action.WRITE)
    pki.devices.disable(device.device_id, submitted.viewer.actor)
    return _back_to(device.device_id, "disabled")


@router.post("/devices/{device_id}/enable")
def enable_device(request: Request, device_id: str, submitted: Changing) -> Response:
    pki = get_pki(request)
    device = _device(pki, submitted.viewer, device_id, Action.WRITE)
    pki.devices.enable(device.device_id, submitted.viewer.actor)
    return _back_to(device.device_id, "enabled")


@router.get("/devices/{device_id}/revoke", response_class=HTMLResponse)
def confirm_revoke(request: Request, device_id: str, viewer: Viewing) -> HTMLResponse:
    pki = get_pki(request)
    device = _device(pki, viewer, device_id, Action.WRITE)
    certificates = [c for c in pki.devices.certificates(device.device_id) if c.revoked_at is None]
    return render(
        request,
        "device_revoke.html",
        viewer,
        device=device,
        certificates=certificates,
        reasons=_DEVICE_REASONS,
    )


@router.post("/devices/{device_id}/revoke")
def revoke_device(request: Request, device_id: str, submitted: Changing) -> Response:
    pki = get_pki(request)
    device = _device(pki, submitted.viewer, device_id, Action.WRITE)
    chosen = submitted.form.get("reason", "cessationOfOperation")
    if chosen not in REASON_NAMES:
        raise InvalidRequestError("reason: choose one of the listed reasons", rule="revocation-reason")
    pki.devices.revoke(device.device_id, parse_reason(chosen), submitted.viewer.actor)
    return _back_to(device.device_id, "revoked")


@router.get("/devices/{device_id}/reset", response_class=HTMLResponse)
def confirm_reset(request: Request, device_id: str, viewer: Viewing) -> HTMLResponse:
    pki = get_pki(request)
    device = _device(pki, viewer, device_id, Action.WRITE)
    current = next(
        (c for c in pki.devices.certificates(device.device_id) if c.serial == device.current_serial),
        None,
    )
    return render(request, "device_reset.html", viewer, device=device, current=current)


@router.post("/devices/{device_id}/reset")
def reset_device(request: Request, device_id: str, submitted: Changing) -> Response:
    pki = get_pki(request)
    device = _device(pki, submitted.viewer, device_id, Action.WRITE)
    pki.devices.reset(device.device_id, submitted.viewer.actor)
    return _back_to(device.device_id, "reset")


# --- owners ----------------------------------------------------------------------------------


@router.get("/owners", response_class=HTMLResponse)
def list_owners(request: Request, viewer: Viewing) -> HTMLResponse:
    """Owners are few (a plant's lines, customers): one page, no paging. Creating one stays with
    ``otward owner create`` (it may need a sub-CA made first)."""
    pki = get_pki(request)
    return render(
        request,
        "owners.html",
        viewer,
        owners=_visible_owners(pki, viewer),
        counts=pki.devices.count_by_owner(),
    )


# --- enrollment tokens -----------------------------------------------------------------------


@dataclass(frozen=True)
class TokenForm:
    """The create-token form's values as typed, so that a refused form comes back filled in."""

    owner: str = ""
    ttl: str = "24h"
    uses: str = "1"
    pattern: str = "*"


def _tokens_page(
    request: Request,
    viewer: Viewer,
    *,
    page: int = 1,
    form: TokenForm | None = None,
    error: str | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    pki = get_pki(request)
    reach = viewer.owners(Area.ENROLLMENT)
    tokens, total = pki.enrollment_tokens.find(owners=reach, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    now = pki.clock()
    return render(
        request,
        "enrollment_tokens.html",
        viewer,
        status_code=status_code,
        tokens=[(t, t.state_at(now)) for t in tokens],
        pager=pager(f"{PREFIX}/enrollment-tokens", {}, page, len(tokens), total),
        owners=_visible_owners(pki, viewer, Action.WRITE),
        may_create=viewer.may_some(Area.ENROLLMENT, Action.WRITE),
        form=form or TokenForm(),
        error=error,
        notice=notice,
        now=now,
    )


@router.get("/enrollment-tokens", response_class=HTMLResponse)
def list_tokens(
    request: Request,
    viewer: Viewing,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    done: Annotated[str, Query(max_length=32)] = "",
) -> HTMLResponse:
    return _tokens_page(request, viewer, page=page, notice=_NOTICES.get(done))


def _parse_token_form(form: TokenForm) -> tuple[timedelta, int]:
    """The TTL and number of uses, or InvalidRequestError naming the field."""
    try:
        ttl = parse_duration(form.ttl)
    except InvalidRequestError:
        raise InvalidRequestError(
            "Valid for: write a duration such as 24h, 7d or 90m (1 minute to 30 days)", rule="token-ttl"
        ) from None
    if not form.uses.isdigit() or len(form.uses) > 6:
        raise InvalidRequestError("Number of uses: a whole number from 1 to 100000", rule="token-uses")
    return ttl, int(form.uses)


@router.post("/enrollment-tokens", response_class=HTMLResponse)
def create_token(request: Request, submitted: Changing) -> HTMLResponse:
    """Answer the new token on this page (200, never cached, never in a URL): it is shown once."""
    pki = get_pki(request)
    viewer = submitted.viewer
    form = TokenForm(
        owner=submitted.form.get("owner"),
        ttl=submitted.form.get("ttl"),
        uses=submitted.form.get("uses"),
        pattern=submitted.form.get("device_id_pattern"),
    )
    if not OWNER.is_valid(form.owner):
        return _tokens_page(request, viewer, form=form, error="Owner: choose an owner", status_code=400)
    _require(pki, viewer, form.owner, Action.WRITE)
    try:
        ttl, uses = _parse_token_form(form)
        record, text = pki.enrollment_tokens.create(
            form.owner, uses=uses, ttl=ttl, device_id_pattern=form.pattern, actor=viewer.actor
        )
    except OtwardError as exc:
        if exc.rule not in ("token-ttl", "token-uses", "token-pattern", "owner"):
            raise
        status, message = (404, exc.message) if exc.rule == "owner" else (400, exc.message)
        return _tokens_page(request, viewer, form=form, error=message, status_code=status)
    return render(
        request,
        "enrollment_token_new.html",
        viewer,
        token=record,
        text=text,
        server=str(request.base_url).rstrip("/"),
        pin=_root_pin(pki),
        example_id=_example_device_id(record),
    )


def _root_pin(pki: Pki) -> str:
    """What ``otward agent enroll --pin`` takes (``otward ca pin root``), or a placeholder."""
    try:
        return spki_pin(pki.authorities.get("root").certificate.public_key())
    except OtwardError:
        return "sha256/...   # otward ca pin root"


def _example_device_id(token: EnrollmentTokenRecord) -> str:
    """The device id to show in the enrollment command: the pattern itself when it names one."""
    if any(c in token.device_id_pattern for c in "*?[]"):
        return "DEVICE-ID"
    return token.device_id_pattern


@router.post("/enrollment-tokens/{token_id}/revoke")
def revoke_token(request: Request, token_id: str, submitted: Changing) -> Response:
    pki = get_pki(request)
    if len(token_id) > 64 or not token_id.isalnum():
        raise InvalidRequestError("not an enrollment token id", rule="enroll-token")
    token = pki.enrollment_tokens.get(token_id)
    _require(pki, submitted.viewer, token.owner, Action.WRITE)
    pki.enrollment_tokens.revoke(token.token_id, submitted.viewer.actor)
    return RedirectResponse(
        f"{PREFIX}/enrollment-tokens?done=token-revoked", status_code=303, headers=dict(SECURITY_HEADERS)
    )
