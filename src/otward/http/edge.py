"""Central endpoints for edge gatekeepers (bundle pull, trail push) and for administering them.

A gatekeeper authenticates with an edge token (``otward edge token create --asset A``) as
``Authorization: Bearer otwg_...``; the token is good for its own asset's two sync endpoints and
nothing else, so a stolen gatekeeper cannot administer anything. An admin token is accepted as well.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from otward.adapters.audit_file import record_from_line
from otward.core.audit import AuditRecord
from otward.core.authz import Action, Area, Permission
from otward.core.durations import parse_duration
from otward.core.edge.records import CredentialRecord
from otward.errors import AuthenticationError, InvalidRequestError
from otward.http.auth import AccessReader, AccessWriter, get_pki, request_actor
from otward.http.limits import guard_failures
from otward.http.params import Count, CredentialId, EdgeId
from otward.services.audit import Actor
from otward.services.edge import load_holder_public_key

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/edge", tags=["edge"])
_bearer = HTTPBearer(auto_error=False, description="An edge token for this asset, or an admin token")

JWT_MEDIA_TYPE = "application/jwt"


def gatekeeper_actor(
    asset: EdgeId,
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    """The gatekeeper of ``asset`` (edge token bound to it), or an API token whose scope covers the
    access area (reading the bundle, pushing the trail); failures are audited and limited per
    source, as for API tokens (:mod:`otward.http.limits`)."""
    pki = get_pki(request)
    text = (
        credentials.credentials if credentials is not None and credentials.scheme.lower() == "bearer" else ""
    )

    def authenticate(anonymous: Actor) -> Actor:
        if pki.edge.is_edge_token(text):
            token_id = pki.edge.authenticate(text, asset, anonymous).token_id
            return request_actor(request, f"edge-token:{token_id}")
        if not text:
            pki.tokens.authenticate("", anonymous)  # records the failure, raises
            raise AuthenticationError("an edge or admin token is required", rule="token")
        token = pki.tokens.authenticate(text, anonymous)
        action = Action.READ if request.method in ("GET", "HEAD") else Action.WRITE
        actor = pki.tokens.actor(token, request_actor(request))
        pki.tokens.authorize(token, Permission(Area.ACCESS, action), actor)
        return actor

    return guard_failures(request, request_actor(request), authenticate)


GatekeeperActor = Annotated[Actor, Depends(gatekeeper_actor)]


class TrailPushIn(BaseModel):
    records: list[dict[str, object]] = Field(max_length=5000)


class TrailPushOut(BaseModel):
    acknowledged: int
    stored: int
    problem: str | None = None


class TrailRecordOut(BaseModel):
    sequence: int
    previous_hash: str
    hash: str
    event: dict[str, object]

    @classmethod
    def from_record(cls, record: AuditRecord) -> TrailRecordOut:
        return cls(
            sequence=record.sequence,
            previous_hash=record.previous_hash.hex(),
            hash=record.hash.hex(),
            event=record.event.to_dict(),
        )


class BundleIn(BaseModel):
    ttl: str = "7d"
    fail_open: list[str] = Field(default_factory=list)


class BundleOut(BaseModel):
    asset: str
    version: int
    issued_at: datetime
    expires_at: datetime
    bundle: str


class CredentialIn(BaseModel):
    person: str
    public_key: str = Field(description="The holder's public key, PEM SubjectPublicKeyInfo")
    ttl: str = "12h"


class CredentialOut(BaseModel):
    credential_id: str
    person: str
    key_thumbprint: str
    issued_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    status: str
    credential: str | None = None

    @classmethod
    def from_record(cls, record: CredentialRecord, now: datetime, token: str | None = None) -> CredentialOut:
        return cls(
            credential_id=record.credential_id,
            person=record.person,
            key_thumbprint=record.key_thumbprint,
            issued_at=record.issued_at,
            expires_at=record.expires_at,
            revoked_at=record.revoked_at,
            status=record.status(now),
            credential=token,
        )


@router.get(
    "/assets/{asset}/bundle",
    responses={200: {"content": {JWT_MEDIA_TYPE: {}}}, 204: {"description": "no newer bundle"}},
)
def pull_bundle(
    asset: EdgeId,
    request: Request,
    actor: GatekeeperActor,
    after: Annotated[Count, Query(description="the version the gatekeeper holds")] = 0,
) -> Response:
    """The asset's newest signed bundle if its version is above ``after`` (else 204). A change to the
    asset's policies, people or revocations since the last bundle yields a new version here."""
    record = get_pki(request).edge.bundle_after(asset, after, actor)
    if record is None:
        return Response(status_code=204)
    headers = {"X-Otward-Bundle-Version": str(record.version)}
    return Response(record.token + "\n", media_type=JWT_MEDIA_TYPE, headers=headers)


@router.post("/assets/{asset}/trail", response_model=TrailPushOut)
def push_trail(asset: EdgeId, body: TrailPushIn, request: Request, actor: GatekeeperActor) -> TrailPushOut:
    """Store the asset's trail records (idempotent by sequence; the chain must continue). The answer's
    ``acknowledged`` is the highest sequence stored: the gatekeeper resends everything after it."""
    try:
        records = [record_from_line(json.dumps(item)) for item in body.records]
    except ValueError as exc:
        raise InvalidRequestError(f"not an audit record: {exc}", rule="trail-record") from None
    push = get_pki(request).edge.push_trail(asset, records, actor)
    return TrailPushOut(acknowledged=push.acknowledged, stored=push.stored, problem=push.problem)


@router.get("/assets/{asset}/trail", response_model=list[TrailRecordOut])
def list_trail(
    asset: EdgeId,
    request: Request,
    _actor: AccessReader,
    after: Count = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> list[TrailRecordOut]:
    """The records an asset pushed, in sequence order."""
    return [
        TrailRecordOut.from_record(r) for r in get_pki(request).edge.trail(asset, after=after, limit=limit)
    ]


@router.post("/assets/{asset}/bundles", status_code=201, response_model=BundleOut)
def issue_bundle(asset: EdgeId, body: BundleIn, request: Request, actor: AccessWriter) -> BundleOut:
    """Sign a new bundle now (its ttl and fail-open functions become the asset's settings)."""
    record = get_pki(request).edge.issue_bundle(
        asset, ttl=parse_duration(body.ttl), fail_open=body.fail_open, actor=actor
    )
    return BundleOut(
        asset=record.asset,
        version=record.version,
        issued_at=record.issued_at,
        expires_at=record.expires_at,
        bundle=record.token,
    )


@router.post("/credentials", status_code=201, response_model=CredentialOut)
def issue_credential(body: CredentialIn, request: Request, actor: AccessWriter) -> CredentialOut:
    """A credential binding the holder's public key to a person (``credential`` is the JWT)."""
    pki = get_pki(request)
    issued = pki.edge.issue_credential(
        body.person,
        load_holder_public_key(body.public_key.encode()),
        ttl=parse_duration(body.ttl),
        actor=actor,
    )
    return CredentialOut.from_record(issued.record, pki.clock(), issued.token)


@router.get("/credentials", response_model=list[CredentialOut])
def list_credentials(
    request: Request, _actor: AccessReader, person: str | None = None
) -> list[CredentialOut]:
    pki = get_pki(request)
    now = pki.clock()
    return [CredentialOut.from_record(r, now) for r in pki.edge.credentials(person)]


@router.post("/credentials/{credential_id}/revoke", response_model=CredentialOut)
def revoke_credential(credential_id: CredentialId, request: Request, actor: AccessWriter) -> CredentialOut:
    """Revoke for good; gatekeepers refuse it from their next bundle on."""
    pki = get_pki(request)
    return CredentialOut.from_record(pki.edge.revoke_credential(credential_id, actor), pki.clock())
