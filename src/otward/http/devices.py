"""The device registry (admin) and challenge-response attestation (the devices themselves).

``challenge`` and ``attest`` need no token: the signature is the proof. Both are
limited per source address, and failed attestations count as failed authentication.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from otward.core import b64url
from otward.core.attestation import ChallengePurpose
from otward.core.records import DeviceStatus
from otward.core.revocation import parse_reason
from otward.errors import InvalidRequestError
from otward.http.auth import EnrollmentReader, EnrollmentWriter, get_pki, request_actor
from otward.http.limits import guard_failures, spend
from otward.http.params import Count, DeviceId
from otward.http.schemas import (
    AttestRequest,
    AttestResponse,
    ChallengeRequest,
    ChallengeResponse,
    DeviceOut,
    DevicePage,
    RevokeRequest,
)
from otward.services.audit import Actor
from otward.services.devices import Attestation

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])


@router.get("", response_model=DevicePage)
def list_devices(
    request: Request,
    _actor: EnrollmentReader,
    owner: str | None = None,
    status: Annotated[
        str | None,
        Query(
            description="active, disabled or revoked",
            json_schema_extra={"enum": ["active", "disabled", "revoked"]},
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Count = 0,
) -> DevicePage:
    pki = get_pki(request)
    try:
        wanted = DeviceStatus(status) if status is not None else None  # "" is no status: 400
    except ValueError:
        raise InvalidRequestError(
            "status must be active, disabled or revoked", rule="device-status"
        ) from None
    records, total = pki.devices.list(owner=owner, status=wanted, limit=limit, offset=offset)
    now = pki.clock()
    return DevicePage(
        items=[DeviceOut.from_record(r, now) for r in records], total=total, limit=limit, offset=offset
    )


@router.get("/{device_id}", response_model=DeviceOut)
def show_device(device_id: DeviceId, request: Request, _actor: EnrollmentReader) -> DeviceOut:
    """The device with its certificate history, newest first."""
    pki = get_pki(request)
    record = pki.devices.get(device_id)
    return DeviceOut.from_record(record, pki.clock(), list(pki.devices.certificates(device_id)))


@router.post("/{device_id}/disable", response_model=DeviceOut)
def disable_device(device_id: DeviceId, request: Request, actor: EnrollmentWriter) -> DeviceOut:
    pki = get_pki(request)
    return DeviceOut.from_record(pki.devices.disable(device_id, actor), pki.clock())


@router.post("/{device_id}/enable", response_model=DeviceOut)
def enable_device(device_id: DeviceId, request: Request, actor: EnrollmentWriter) -> DeviceOut:
    pki = get_pki(request)
    return DeviceOut.from_record(pki.devices.enable(device_id, actor), pki.clock())


@router.post("/{device_id}/revoke", response_model=DeviceOut)
def revoke_device(
    device_id: DeviceId, request: Request, actor: EnrollmentWriter, body: RevokeRequest | None = None
) -> DeviceOut:
    """Revoke the device for good and every certificate it holds (CRLs republished at once)."""
    pki = get_pki(request)
    reason = parse_reason(body.reason if body else "cessationOfOperation")
    pki.devices.revoke(device_id, reason, actor)
    return DeviceOut.from_record(pki.devices.get(device_id), pki.clock())


@router.post("/{device_id}/reset", response_model=DeviceOut)
def reset_device(device_id: DeviceId, request: Request, actor: EnrollmentWriter) -> DeviceOut:
    """Undo an enrollment the device never used: its only certificate is revoked (superseded, CRL
    republished at once) and a new token of its owner enrolls it again; 409 for a device that
    renewed, attested or is not active."""
    pki = get_pki(request)
    pki.devices.reset(device_id, actor)
    return DeviceOut.from_record(
        pki.devices.get(device_id), pki.clock(), list(pki.devices.certificates(device_id))
    )


@router.post("/{device_id}/challenge", status_code=201, response_model=ChallengeResponse)
def challenge_device(
    device_id: DeviceId, request: Request, body: ChallengeRequest | None = None
) -> ChallengeResponse:
    """A fresh nonce (single use, 60 s) for the device to sign with its key."""
    spend(request, request_actor(request, "device"))
    try:
        purpose = ChallengePurpose((body or ChallengeRequest()).purpose)
    except ValueError:
        raise InvalidRequestError("purpose must be attest or renew", rule="challenge-purpose") from None
    record = get_pki(request).devices.challenge(device_id, purpose)
    return ChallengeResponse(
        challenge_id=record.challenge_id,
        nonce=b64url.encode(record.nonce),
        purpose=record.purpose,
        expires_at=record.expires_at,
    )


@router.post("/{device_id}/attest", response_model=AttestResponse)
async def attest_device(device_id: DeviceId, body: AttestRequest, request: Request) -> AttestResponse:
    """Check the signed challenge against the device's certificates; the result is recorded."""
    signature = b64url.decode(body.signature, "signature")

    def attest(actor: Actor) -> Attestation:
        return get_pki(request).devices.attest(device_id, body.challenge_id, signature, actor)

    actor = request_actor(request, f"device:{device_id[:64]}")
    result = await run_in_threadpool(guard_failures, request, actor, attest)
    return AttestResponse(
        device_id=result.device_id, result="passed", serial=result.serial, renewal_token=result.renewal_token
    )
