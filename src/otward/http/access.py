"""Administering the access model over HTTPS (``/api/v1/access``); every route needs the admin token."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from otward.core.access.model import Person, PersonKind, validate_identifier
from otward.errors import InvalidRequestError
from otward.http.auth import AdminActor, get_pki
from otward.services.access import explanation_json, grant_json, parse_instant, person_json

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
def list_people(request: Request, _actor: AdminActor) -> list[PersonOut]:
    return [PersonOut.from_person(p) for p in get_pki(request).access.people()]


@router.post("/people", status_code=201, response_model=PersonOut)
def add_person(body: PersonIn, request: Request, actor: AdminActor) -> PersonOut:
    return PersonOut.from_person(get_pki(request).access.add_person(body.to_person(), actor))


@router.get("/people/{person_id}", response_model=PersonOut)
def show_person(person_id: str, request: Request, _actor: AdminActor) -> PersonOut:
    return PersonOut.from_person(get_pki(request).access.person(person_id))


@router.put("/people/{person_id}", response_model=PersonOut)
def update_person(person_id: str, body: PersonIn, request: Request, actor: AdminActor) -> PersonOut:
    """Replace the person's data; the id in the body must match the path."""
    if body.id != person_id:
        raise InvalidRequestError("the id in the body differs from the path", rule="access-person")
    return PersonOut.from_person(get_pki(request).access.update_person(body.to_person(), actor))


@router.delete("/people/{person_id}", status_code=204)
def remove_person(person_id: str, request: Request, actor: AdminActor) -> Response:
    get_pki(request).access.remove_person(person_id, actor)
    return Response(status_code=204)


@router.post("/people/{person_id}/disable", response_model=PersonOut)
def disable_person(person_id: str, request: Request, actor: AdminActor) -> PersonOut:
    """Deny the person everything; assets enforce it with their next bundle."""
    return PersonOut.from_person(get_pki(request).access.disable_person(person_id, actor))


@router.post("/people/{person_id}/enable", response_model=PersonOut)
def enable_person(person_id: str, request: Request, actor: AdminActor) -> PersonOut:
    return PersonOut.from_person(get_pki(request).access.enable_person(person_id, actor))


@router.get("/grants", response_model=list[GrantOut])
def list_grants(
    request: Request, _actor: AdminActor, role: str | None = None, asset: str | None = None
) -> list[GrantOut]:
    return [
        GrantOut.model_validate(grant_json(g)) for g in get_pki(request).access.grants(role=role, asset=asset)
    ]


@router.post("/grants", status_code=201, response_model=GrantOut)
def add_grant(body: GrantIn, request: Request, actor: AdminActor) -> GrantOut:
    grant = get_pki(request).access.add_grant(body.role, body.assets, body.functions, body.when, actor)
    return GrantOut.model_validate(grant_json(grant))


@router.delete("/grants/{grant_id}", status_code=204)
def remove_grant(grant_id: str, request: Request, actor: AdminActor) -> Response:
    get_pki(request).access.remove_grant(grant_id, actor)
    return Response(status_code=204)


@router.post("/import", response_model=ImportResponse)
def import_model(body: ImportRequest, request: Request, actor: AdminActor) -> ImportResponse:
    """Import or update the model from YAML; importing the same text again changes nothing."""
    result = get_pki(request).access.import_yaml(body.yaml, actor, replace_all=body.replace)
    return ImportResponse(
        site=result.site, changed=result.changed, revision=result.revision, details=result.details
    )


@router.get("/policies", response_model=list[PolicyOut])
def list_policies(request: Request, _actor: AdminActor, asset: str | None = None) -> list[PolicyOut]:
    """The Cedar policies the grants compile to (for one asset, if given)."""
    return [
        PolicyOut(id=p.id, grant=p.grant or None, asset=p.asset, text=p.text)
        for p in get_pki(request).access.policies(asset)
    ]


@router.get("/schema", response_class=PlainTextResponse)
def cedar_schema(request: Request, _actor: AdminActor) -> PlainTextResponse:
    """The Cedar schema (human syntax) of the compiled policies."""
    return PlainTextResponse(get_pki(request).access.schema())


@router.get("/explain", response_model=ExplainOut)
def explain(
    request: Request,
    _actor: AdminActor,
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
def asset_slice(asset_id: str, request: Request, _actor: AdminActor) -> dict[str, Any]:
    """What the asset needs to decide alone: its Cedar policies and entities (unsigned)."""
    return get_pki(request).access.asset_slice(asset_id).to_dict()
