"""Administering the access model over HTTPS (``/api/v1/access``); every route needs the admin token."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from otward.core.access.model import (
    Asset,
    Person,
    PersonKind,
    Role,
    Schedule,
    make_asset,
    make_schedule,
    validate_identifier,
)
from otward.errors import InvalidRequestError
from otward.http.auth import AccessReader, AccessWriter, get_pki
from otward.http.params import AccessId, GrantId
from otward.services.access import (
    asset_json,
    explanation_json,
    grant_json,
    parse_instant,
    person_json,
    role_json,
    schedule_json,
)

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/access", tags=["access"])


class PersonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="person or robot id (letters, digits, '.', '_', '-')", max_length=64)
    name: str = Field(description="display name", min_length=1, max_length=255)
    kind: str = Field(default="person", description="person or robot")
    roles: list[str] = Field(description="role ids", min_length=1)
    shift: str | None = Field(default=None, description="schedule of the person's own shift")
    valid_from: date | None = Field(default=None, description="first valid day (local site date)")
    valid_until: date | None = Field(default=None, description="last valid day, inclusive")
    enabled: bool = True

    def to_person(self) -> Person:
        try:
            kind = PersonKind(self.kind)
        except ValueError:
            raise InvalidRequestError("kind must be person or robot", rule="access-person") from None
        return Person(
            id=validate_identifier(self.id, "id"),
            name=self.name,
            roles=tuple(self.roles),
            kind=kind,
            shift=self.shift,
            valid_from=self.valid_from,
            valid_until=self.valid_until,
            enabled=self.enabled,
        )


class PersonOut(BaseModel):
    id: str
    name: str
    kind: str
    roles: list[str]
    shift: str | None
    valid_from: date | None
    valid_until: date | None
    enabled: bool

    @classmethod
    def from_person(cls, person: Person) -> PersonOut:
        return cls.model_validate(person_json(person))


class GrantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str
    assets: list[str] = Field(min_length=1)
    functions: list[str] = Field(min_length=1)
    when: str | None = Field(default=None, description="schedule name or 'own-shift'; none means always")


class GrantOut(BaseModel):
    id: str
    role: str
    assets: list[str]
    functions: list[str]
    when: str | None


class AssetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="asset id (letters, digits, '.', '_', '-')", max_length=64)
    kind: str = Field(description="area, machine or system")
    functions: list[str] = Field(default=[], description="what can be done with it (an area: 'enter')")
    inside: str | None = Field(default=None, description="the area that contains it (informational)")

    def to_asset(self) -> Asset:
        return make_asset(self.id, self.kind, self.functions, self.inside)


class AssetOut(BaseModel):
    id: str
    kind: str
    functions: list[str]
    inside: str | None


class RoleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="role id", max_length=64)
    external: bool = Field(default=False, description="its people need validity dates (engagements)")

    def to_role(self) -> Role:
        return Role(validate_identifier(self.id, "id"), external=self.external)


class RoleOut(BaseModel):
    id: str
    external: bool


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(description="schedule name", max_length=64)
    days: list[str] = Field(min_length=1, description="mon ... sun")
    start: str = Field(alias="from", description="HH:MM local site time, included")
    end: str = Field(
        alias="to", description="HH:MM (24:00 allowed), excluded; before 'from' crosses midnight"
    )

    def to_schedule(self) -> Schedule:
        return make_schedule(self.name, self.days, self.start, self.end)


class ScheduleOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: str
    days: list[str]
    start: str = Field(alias="from")
    end: str = Field(alias="to")
    overnight: bool = Field(description="the window crosses midnight and belongs to the day it starts")


def _same_id(body_id: str, path_id: str) -> None:
    if body_id != path_id:
        raise InvalidRequestError("the id in the body differs from the path", rule="access-id")


class ImportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    yaml: str = Field(
        description="the access model in the YAML format of examples/chemical-plant.yaml",
        max_length=4_000_000,
    )
    replace: bool = Field(
        default=False, description="make the file the whole model (drop what it does not name)"
    )


class ImportResponse(BaseModel):
    site: str
    changed: bool
    revision: int
    details: dict[str, str] = Field(description="per kind: +added ~changed -removed")


class PolicyOut(BaseModel):
    id: str = Field(description="the policy's @id")
    grant: str | None = Field(description="the grant it compiles (none for the site-wide forbid policies)")
    asset: str = Field(description="the asset it concerns ('*' for site-wide)")
    text: str = Field(description="Cedar source")


class ExplainOut(BaseModel):
    decision: str = Field(description="allow or deny")
    reason: str
    person: str
    asset: str
    function: str
    at: str = Field(description="the instant evaluated, UTC")
    local_time: str = Field(description="the same instant in the site's time zone")
    policies: list[str] = Field(description="@id of the determining policies")
    policy_texts: list[str]


@router.get("/people", response_model=list[PersonOut])
def list_people(request: Request, _actor: AccessReader) -> list[PersonOut]:
    return [PersonOut.from_person(p) for p in get_pki(request).access.people()]


@router.post("/people", status_code=201, response_model=PersonOut)
def add_person(body: PersonIn, request: Request, actor: AccessWriter) -> PersonOut:
    return PersonOut.from_person(get_pki(request).access.add_person(body.to_person(), actor))


@router.get("/people/{person_id}", response_model=PersonOut)
def show_person(person_id: AccessId, request: Request, _actor: AccessReader) -> PersonOut:
    return PersonOut.from_person(get_pki(request).access.person(person_id))


@router.put("/people/{person_id}", response_model=PersonOut)
def update_person(person_id: AccessId, body: PersonIn, request: Request, actor: AccessWriter) -> PersonOut:
    """Replace the person's data; the id in the body must match the path."""
    _same_id(body.id, person_id)
    return PersonOut.from_person(get_pki(request).access.update_person(body.to_person(), actor))


@router.delete("/people/{person_id}", status_code=204)
def remove_person(person_id: AccessId, request: Request, actor: AccessWriter) -> Response:
    get_pki(request).access.remove_person(person_id, actor)
    return Response(status_code=204)


@router.post("/people/{person_id}/disable", response_model=PersonOut)
def disable_person(person_id: AccessId, request: Request, actor: AccessWriter) -> PersonOut:
    """Deny the person everything; assets enforce it with their next bundle."""
    return PersonOut.from_person(get_pki(request).access.disable_person(person_id, actor))


@router.post("/people/{person_id}/enable", response_model=PersonOut)
def enable_person(person_id: AccessId, request: Request, actor: AccessWriter) -> PersonOut:
    return PersonOut.from_person(get_pki(request).access.enable_person(person_id, actor))


@router.get("/grants", response_model=list[GrantOut])
def list_grants(
    request: Request, _actor: AccessReader, role: str | None = None, asset: str | None = None
) -> list[GrantOut]:
    return [
        GrantOut.model_validate(grant_json(g)) for g in get_pki(request).access.grants(role=role, asset=asset)
    ]


@router.post("/grants", status_code=201, response_model=GrantOut)
def add_grant(body: GrantIn, request: Request, actor: AccessWriter) -> GrantOut:
    grant = get_pki(request).access.add_grant(body.role, body.assets, body.functions, body.when, actor)
    return GrantOut.model_validate(grant_json(grant))


@router.delete("/grants/{grant_id}", status_code=204)
def remove_grant(grant_id: GrantId, request: Request, actor: AccessWriter) -> Response:
    get_pki(request).access.remove_grant(grant_id, actor)
    return Response(status_code=204)


@router.post("/import", response_model=ImportResponse)
def import_model(body: ImportRequest, request: Request, actor: AccessWriter) -> ImportResponse:
    """Import or update the model from YAML; importing the same text again changes nothing."""
    result = get_pki(request).access.import_yaml(body.yaml, actor, replace_all=body.replace)
    return ImportResponse(
        site=result.site, changed=result.changed, revision=result.revision, details=result.details
    )


@router.get("/policies", response_model=list[PolicyOut])
def list_policies(request: Request, _actor: AccessReader, asset: str | None = None) -> list[PolicyOut]:
    """The Cedar policies the grants compile to (for one asset, if given)."""
    return [
        PolicyOut(id=p.id, grant=p.grant or None, asset=p.asset, text=p.text)
        for p in get_pki(request).access.policies(asset)
    ]


@router.get("/schema", response_class=PlainTextResponse)
def cedar_schema(request: Request, _actor: AccessReader) -> PlainTextResponse:
    """The Cedar schema (human syntax) of the compiled policies."""
    return PlainTextResponse(get_pki(request).access.schema())


@router.get("/explain", response_model=ExplainOut)
def explain(
    request: Request,
    _actor: AccessReader,
    person: str,
    asset: str,
    function: str,
    at: Annotated[
        str | None, Query(description="ISO 8601; without offset it is local site time; default now")
    ] = None,
) -> ExplainOut:
    """Decide as the asset would, with the policies that decided and the local time evaluated."""
    access = get_pki(request).access
    instant = parse_instant(at, access.model().timezone) if at else None
    return ExplainOut.model_validate(explanation_json(access.explain(person, asset, function, instant)))


@router.get("/assets/{asset_id}/slice")
def asset_slice(asset_id: AccessId, request: Request, _actor: AccessReader) -> dict[str, Any]:
    """What the asset needs to decide alone: its Cedar policies and entities (unsigned)."""
    return get_pki(request).access.asset_slice(asset_id).to_dict()


@router.get("/assets", response_model=list[AssetOut])
def list_assets(request: Request, _actor: AccessReader) -> list[AssetOut]:
    return [AssetOut.model_validate(asset_json(a)) for a in get_pki(request).access.assets()]


@router.post("/assets", status_code=201, response_model=AssetOut)
def add_asset(body: AssetIn, request: Request, actor: AccessWriter) -> AssetOut:
    added = get_pki(request).access.put_asset(body.to_asset(), create=True, actor=actor)
    return AssetOut.model_validate(asset_json(added))


@router.get("/assets/{asset_id}", response_model=AssetOut)
def show_asset(asset_id: AccessId, request: Request, _actor: AccessReader) -> AssetOut:
    return AssetOut.model_validate(asset_json(get_pki(request).access.asset(asset_id)))


@router.put("/assets/{asset_id}", response_model=AssetOut)
def update_asset(asset_id: AccessId, body: AssetIn, request: Request, actor: AccessWriter) -> AssetOut:
    """Replace the asset; refused if a grant would name a function it no longer has."""
    _same_id(body.id, asset_id)
    replaced = get_pki(request).access.put_asset(body.to_asset(), create=False, actor=actor)
    return AssetOut.model_validate(asset_json(replaced))


@router.delete("/assets/{asset_id}", status_code=204)
def remove_asset(asset_id: AccessId, request: Request, actor: AccessWriter) -> Response:
    """Remove an asset; refused (409) while grants name it or assets are inside it."""
    get_pki(request).access.remove_asset(asset_id, actor)
    return Response(status_code=204)


@router.get("/roles", response_model=list[RoleOut])
def list_roles(request: Request, _actor: AccessReader) -> list[RoleOut]:
    return [RoleOut.model_validate(role_json(r)) for r in get_pki(request).access.roles()]


@router.post("/roles", status_code=201, response_model=RoleOut)
def add_role(body: RoleIn, request: Request, actor: AccessWriter) -> RoleOut:
    added = get_pki(request).access.put_role(body.to_role(), create=True, actor=actor)
    return RoleOut.model_validate(role_json(added))


@router.put("/roles/{role_id}", response_model=RoleOut)
def update_role(role_id: AccessId, body: RoleIn, request: Request, actor: AccessWriter) -> RoleOut:
    _same_id(body.id, role_id)
    replaced = get_pki(request).access.put_role(body.to_role(), create=False, actor=actor)
    return RoleOut.model_validate(role_json(replaced))


@router.delete("/roles/{role_id}", status_code=204)
def remove_role(role_id: AccessId, request: Request, actor: AccessWriter) -> Response:
    """Remove a role; refused (409) while grants are for it or people hold it."""
    get_pki(request).access.remove_role(role_id, actor)
    return Response(status_code=204)


@router.get("/schedules", response_model=list[ScheduleOut])
def list_schedules(request: Request, _actor: AccessReader) -> list[ScheduleOut]:
    return [ScheduleOut.model_validate(schedule_json(s)) for s in get_pki(request).access.schedules()]


@router.post("/schedules", status_code=201, response_model=ScheduleOut)
def add_schedule(body: ScheduleIn, request: Request, actor: AccessWriter) -> ScheduleOut:
    added = get_pki(request).access.put_schedule(body.to_schedule(), create=True, actor=actor)
    return ScheduleOut.model_validate(schedule_json(added))


@router.put("/schedules/{name}", response_model=ScheduleOut)
def update_schedule(name: AccessId, body: ScheduleIn, request: Request, actor: AccessWriter) -> ScheduleOut:
    """Change a schedule's days or hours; grants and shifts using it follow with the next bundles."""
    _same_id(body.name, name)
    changed = get_pki(request).access.put_schedule(body.to_schedule(), create=False, actor=actor)
    return ScheduleOut.model_validate(schedule_json(changed))


@router.delete("/schedules/{name}", status_code=204)
def remove_schedule(name: AccessId, request: Request, actor: AccessWriter) -> Response:
    """Remove a schedule; refused (409) while grants or people's shifts use it."""
    get_pki(request).access.remove_schedule(name, actor)
    return Response(status_code=204)
