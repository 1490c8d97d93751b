"""The Access pages: the roles x machines/functions matrix, people (add, disable, enable, remove),
who may use a machine now, and where each asset's gatekeeper stands.

Changes go through ``pki.access`` (AccessAdmin), which records ``access.changed``; gatekeepers get a
new bundle version on their next poll (``EdgeService.bundle_after`` sees the changed slice), exactly
as after ``otward access person disable`` on the command line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from otward.console.forms import Form
from otward.console.render import PREFIX, SECURITY_HEADERS, render, wants_block
from otward.console.viewer import Submitted, Viewer, changing, reading
from otward.core.access.matrix import build_matrix
from otward.core.access.model import (
    AccessModel,
    AssetKind,
    Person,
    PersonKind,
    parse_date,
    validate_identifier,
)
from otward.core.authz import Action, Area
from otward.errors import ConflictError, InvalidRequestError, NotFoundError
from otward.http.auth import get_pki

__all__ = ["router"]

router = APIRouter()

PEOPLE_PAGE = 50
MATRIX_ASSETS_PAGE = 12  # assets per matrix page: about 30 function columns stay readable
GATEKEEPERS_PAGE = 50
_DONE = {"added": "added", "disabled": "disabled", "enabled": "enabled again", "removed": "removed"}
_STATUSES = ("", "enabled", "disabled")

Offset = Annotated[int, Query(ge=0, le=10**9)]
Text = Annotated[str, Query(max_length=100)]


def _model(request: Request) -> AccessModel | None:
    """The stored model, or None before the first import (the pages then say how to import one)."""
    try:
        return get_pki(request).access.model()
    except NotFoundError:
        return None


def _link(path: str, params: Mapping[str, object]) -> str:
    kept = {key: value for key, value in params.items() if value not in ("", None, 0)}
    return f"{PREFIX}{path}" + (f"?{urlencode(kept)}" if kept else "")


def _pager(path: str, params: Mapping[str, object], offset: int, size: int, total: int) -> dict[str, Any]:
    """Where this page starts and ends, and the Previous/Next links that keep the filters."""
    return {
        "first": offset + 1 if total else 0,
        "last": min(offset + size, total),
        "total": total,
        "previous": _link(path, {**params, "offset": max(offset - size, 0)}) if offset > 0 else None,
        "next": _link(path, {**params, "offset": offset + size}) if offset + size < total else None,
    }


# --- matrix -----------------------------------------------------------------------------------------


@router.get("/access", response_class=HTMLResponse)
def matrix_page(
    request: Request,
    viewer: Annotated[Viewer, Depends(reading(Area.ACCESS))],
    kind: Text = "",
    offset: Offset = 0,
) -> HTMLResponse:
    """Roles by asset functions; a page of assets at a time, optionally only areas, machines or systems."""
    if kind not in ("", *(k.value for k in AssetKind)):
        raise InvalidRequestError("kind: choose area, machine, system or all", rule="filter")
    model = _model(request)
    context: dict[str, Any] = {"model": model, "kind": kind, "kinds": [k.value for k in AssetKind]}
    if model is not None:
        assets = [a.id for a in model.assets if not kind or a.kind.value == kind]
        page = assets[offset : offset + MATRIX_ASSETS_PAGE]
        context["matrix"] = build_matrix(model, page)
        context["pager"] = _pager("/access", {"kind": kind}, offset, MATRIX_ASSETS_PAGE, len(assets))
    block = "results" if model is not None and wants_block(request, "results") else None
    return render(request, "access.html", viewer, block=block, **context)


# --- people -----------------------------------------------------------------------------------------


def _people_context(model: AccessModel | None, q: str, status: str, role: str, offset: int) -> dict[str, Any]:
    context: dict[str, Any] = {"model": model, "q": q, "status": status, "role": role}
    if model is None:
        return context
    needle = q.casefold()
    chosen = [
        person
        for person in sorted(model.people, key=lambda p: p.id)
        if (not needle or needle in person.id.casefold() or needle in person.name.casefold())
        and (not status or person.enabled == (status == "enabled"))
        and (not role or role in person.roles)
    ]
    context["people"] = chosen[offset : offset + PEOPLE_PAGE]
    params = {"q": q, "status": status, "role": role}
    context["pager"] = _pager("/access/people", params, offset, PEOPLE_PAGE, len(chosen))
    context["here"] = _link("/access/people", {**params, "offset": offset})
    context["roles"] = sorted(r.id for r in model.roles)
    context["schedules"] = sorted(s.name for s in model.schedules)
    return context


@router.get("/access/people", response_class=HTMLResponse)
def people_page(
    request: Request,
    viewer: Annotated[Viewer, Depends(reading(Area.ACCESS))],
    q: Text = "",
    status: Text = "",
    role: Text = "",
    offset: Offset = 0,
    done: Text = "",
    who: Text = "",
) -> HTMLResponse:
    """People and robots with their roles and status, and the buttons that change them."""
    if status not in _STATUSES:
        raise InvalidRequestError("status: choose enabled, disabled or all", rule="filter")
    if role:
        validate_identifier(role, "role")
    model = _model(request)
    context = _people_context(model, q, status, role, offset)
    notice = None
    if done in _DONE and who:
        person = model.person(who) if model is not None else None
        notice = f"{person.name if person else who} ({who}) {_DONE[done]}."
    block = "results" if model is not None and wants_block(request, "results") else None
    return render(
        request,
        "access_people.html",
        viewer,
        block=block,
        notice=notice,
        add_error=None,
        added=Form(),
        may_change=viewer.may(Area.ACCESS, Action.WRITE),
        **context,
    )


def _done(action: str, person_id: str, back: str) -> Response:
    """Post/Redirect/Get: back to the list the button was on, saying what happened."""
    target = back if back.startswith(f"{PREFIX}/access/people") and "//" not in back else None
    base = target or f"{PREFIX}/access/people"
    separator = "&" if "?" in base else "?"
    location = f"{base}{separator}{urlencode({'done': action, 'who': person_id})}"
    return RedirectResponse(location, status_code=303, headers=dict(SECURITY_HEADERS))


def _person_from(form: Form) -> Person:
    """The Add person form as a :class:`Person`; errors name the form field."""
    person_id = validate_identifier(form.get("person_id"), "Id")
    name = form.get("name") or person_id
    if len(name) > 255:
        raise InvalidRequestError("Name: at most 255 characters", rule="access-person")
    roles = tuple(validate_identifier(value, "Roles") for value in form.values("roles") if value)
    if not roles:
        raise InvalidRequestError("Roles: choose at least one role", rule="access-person")
    shift = form.get("shift")
    valid_from: date | None = (
        parse_date(form.get("valid_from"), "Valid from") if form.get("valid_from") else None
    )
    valid_until = parse_date(form.get("valid_until"), "Valid until") if form.get("valid_until") else None
    return Person(
        id=person_id,
        name=name,
        roles=roles,
        kind=PersonKind.ROBOT if form.get("robot") == "yes" else PersonKind.PERSON,
        shift=validate_identifier(shift, "Shift") if shift else None,
        valid_from=valid_from,
        valid_until=valid_until,
    )


@router.post("/access/people", response_model=None)
def add_person(request: Request, submitted: Annotated[Submitted, Depends(changing(Area.ACCESS))]) -> Response:
    """Add a person; a refused entry shows the form again with the reason and what was typed."""
    pki = get_pki(request)
    try:
        person = _person_from(submitted.form)
        pki.access.add_person(person, submitted.viewer.actor)
    except (InvalidRequestError, ConflictError, NotFoundError) as exc:
        status = 409 if isinstance(exc, ConflictError) else 400
        context = _people_context(_model(request), "", "", "", 0)
        return render(
            request,
            "access_people.html",
            submitted.viewer,
            status_code=status,
            notice=None,
            add_error=exc.message,
            added=submitted.form,
            may_change=True,
            **context,
        )
    return _done("added", person.id, "")


@router.post("/access/people/{person_id}/disable")
def disable_person(
    request: Request, person_id: str, submitted: Annotated[Submitted, Depends(changing(Area.ACCESS))]
) -> Response:
    """Deny the person everything: every gatekeeper enforces it with its next bundle."""
    validate_identifier(person_id, "person")
    get_pki(request).access.disable_person(person_id, submitted.viewer.actor)
    return _done("disabled", person_id, submitted.form.get("back"))


@router.post("/access/people/{person_id}/enable")
def enable_person(
    request: Request, person_id: str, submitted: Annotated[Submitted, Depends(changing(Area.ACCESS))]
) -> Response:
    validate_identifier(person_id, "person")
    get_pki(request).access.enable_person(person_id, submitted.viewer.actor)
    return _done("enabled", person_id, submitted.form.get("back"))


@router.get("/access/people/{person_id}/remove", response_class=HTMLResponse)
def confirm_remove(
    request: Request,
    person_id: str,
    viewer: Annotated[Viewer, Depends(reading(Area.ACCESS, Action.WRITE))],
) -> HTMLResponse:
    """What removing the person means, with the button that does it."""
    validate_identifier(person_id, "person")
    person = get_pki(request).access.person(person_id)
    return render(request, "access_remove.html", viewer, person=person)


@router.post("/access/people/{person_id}/remove")
def remove_person(
    request: Request, person_id: str, submitted: Annotated[Submitted, Depends(changing(Area.ACCESS))]
) -> Response:
    validate_identifier(person_id, "person")
    get_pki(request).access.remove_person(person_id, submitted.viewer.actor)
    return _done("removed", person_id, "")


# --- who may use a machine now ------------------------------------------------------------------


def _split_target(target: str, model: AccessModel) -> tuple[str, str]:
    asset_id, _, function = target.partition("/")
    asset = model.asset(asset_id) if asset_id else None
    if asset is None or (function and function not in asset.functions):
        raise InvalidRequestError(f"target: unknown asset or function {target!r}", rule="filter")
    return asset.id, function or asset.functions[0]


@router.get("/access/now", response_class=HTMLResponse)
def who_now(
    request: Request,
    viewer: Annotated[Viewer, Depends(reading(Area.ACCESS))],
    target: Annotated[str, Query(max_length=140)] = "",
) -> HTMLResponse:
    """Everyone with a grant on the asset, decided for the function now, as the asset would."""
    pki = get_pki(request)
    model = _model(request)
    context: dict[str, Any] = {"model": model, "target": target, "decided": None}
    if model is not None and target:
        asset, function = _split_target(target, model)
        now = pki.clock()
        decided: Sequence[tuple[Person, Any]] = pki.access.who_may(asset, function, now)
        context.update(
            asset=asset,
            function=function,
            target=f"{asset}/{function}",
            at=now,
            allowed=[(p, d) for p, d in decided if d.allowed],
            refused=[(p, d) for p, d in decided if not d.allowed],
            decided=decided,
            local_time=decided[0][1].local_time if decided else "",
        )
    return render(request, "access_now.html", viewer, **context)


# --- gatekeepers ------------------------------------------------------------------------------------


@router.get("/access/gatekeepers", response_class=HTMLResponse)
def gatekeepers(
    request: Request,
    viewer: Annotated[Viewer, Depends(reading(Area.ACCESS))],
    offset: Offset = 0,
) -> HTMLResponse:
    """The newest bundle version per asset and when its gatekeeper last pushed its trail."""
    pki = get_pki(request)
    rows, total = pki.edge.sync_status(limit=GATEKEEPERS_PAGE, offset=offset)
    return render(
        request,
        "access_gatekeepers.html",
        viewer,
        rows=rows,
        now=pki.clock(),
        pager=_pager("/access/gatekeepers", {}, offset, GATEKEEPERS_PAGE, total),
    )
