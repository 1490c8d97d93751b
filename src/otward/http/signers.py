"""``/api/v1/signers``: the service's signers (audit, edge) and their rotation (admin only)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from otward.core.approvals import Operation
from otward.core.revocation import parse_reason
from otward.http.approvals import ApprovalOut
from otward.http.auth import PkiReader, PkiWriter, get_pki
from otward.http.params import SignerName
from otward.services.signers import SIGNERS, SignerInfo

__all__ = ["RotateRequest", "SignerOut", "router"]

router = APIRouter(prefix="/api/v1/signers", tags=["signers"])


class SignerOut(BaseModel):
    name: str
    serial: str
    not_before: datetime
    not_after: datetime
    revoked: bool
    sha256: str

    @classmethod
    def from_info(cls, info: SignerInfo) -> SignerOut:
        return cls.model_validate(info.summary())


class RotateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    revoke_previous: str | None = Field(
        default=None,
        description="Also revoke the previous certificate with this RFC 5280 reason (e.g. keyCompromise);"
        " without it, what the previous key signed keeps verifying until it expires",
    )


@router.get("", response_model=list[SignerOut])
def list_signers(request: Request, _actor: PkiReader) -> list[SignerOut]:
    """The current certificate of each signer that exists (signers are made on first use)."""
    pki = get_pki(request)
    return [SignerOut.from_info(info) for name in SIGNERS if (info := pki.signers.current(name)) is not None]


@router.post(
    "/{name}/rotate",
    response_model=SignerOut,
    responses={202: {"model": ApprovalOut, "description": "Stored for four-eyes approval; nothing done yet"}},
)
def rotate_signer(
    name: SignerName,
    request: Request,
    actor: PkiWriter,
    body: RotateRequest | None = None,
) -> SignerOut | JSONResponse:
    """A new key and certificate for the signer (audited); new edge bundles list the previous edge
    signer, or name it revoked. With ``revoke_previous`` while approvals apply, the rotation is
    stored as an approval request (202) for another pki-officer to approve."""
    pki = get_pki(request)
    reason = parse_reason(body.revoke_previous) if body and body.revoke_previous else None
    if reason is not None and body is not None and pki.approvals.applies():
        parameters = {"name": name, "reason": body.revoke_previous}
        stored = pki.approvals.request(Operation.SIGNER_ROTATE_REVOKE, parameters, actor)
        return JSONResponse(ApprovalOut.from_request(stored).model_dump(mode="json"), status_code=202)
    return SignerOut.from_info(pki.signers.rotate(name, revoke_previous=reason, actor=actor))
