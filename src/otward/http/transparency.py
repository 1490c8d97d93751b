"""``/api/v1/transparency``: signed tree heads and proofs of the issuance log (public, read-only).

Relying parties need no token: a proof reveals only hashes and the serial asked about.
"""

from __future__ import annotations

import base64
from typing import Annotated

from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from otward.core.audit import format_time
from otward.core.records import format_serial, parse_serial
from otward.core.transparency import TreeHead
from otward.errors import InvalidRequestError
from otward.http.auth import get_pki
from otward.http.params import Count
from otward.services.signers import AUDIT_SIGNER, SIGNER_CA

__all__ = ["ConsistencyOut", "InclusionOut", "TreeHeadOut", "router"]

router = APIRouter(prefix="/api/v1/transparency", tags=["transparency"])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class TreeHeadOut(BaseModel):
    tree_size: int
    timestamp: str
    timestamp_ms: int
    root_hash: str
    signature: str
    signer_serial: str

    @classmethod
    def from_head(cls, head: TreeHead) -> TreeHeadOut:
        return cls(
            tree_size=head.tree_size,
            timestamp=format_time(head.timestamp),
            timestamp_ms=int(head.timestamp.timestamp() * 1000),
            root_hash=_b64(head.root_hash),
            signature=_b64(head.signature),
            signer_serial=format_serial(head.signer_serial),
        )


class InclusionOut(BaseModel):
    serial: str
    leaf_index: int
    tree_size: int
    leaf_hash: str
    audit_path: list[str]


class ConsistencyOut(BaseModel):
    first: int
    second: int
    consistency: list[str]


@router.get("/sth", response_model=TreeHeadOut)
def signed_tree_head(request: Request) -> TreeHeadOut:
    """The current signed tree head (RFC 9162 TreeHeadDataV2, signed by the audit signer)."""
    return TreeHeadOut.from_head(get_pki(request).transparency.tree_head())


@router.get("/sth/{tree_size}", response_model=TreeHeadOut)
def earlier_tree_head(tree_size: Count, request: Request) -> TreeHeadOut:
    return TreeHeadOut.from_head(get_pki(request).transparency.head_for_size(tree_size))


@router.get("/proof/{serial}", response_model=InclusionOut)
def inclusion(
    serial: str, request: Request, tree_size: Annotated[Count | None, Query(ge=1)] = None
) -> InclusionOut:
    """Audit path of a certificate (leaf = SHA-256(0x00 || certificate DER))."""
    try:
        serial_number = parse_serial(serial)
    except ValueError as exc:
        raise InvalidRequestError(str(exc), rule="serial") from None
    proof = get_pki(request).transparency.inclusion(serial_number, tree_size)
    return InclusionOut(
        serial=proof.serial,
        leaf_index=proof.leaf_index,
        tree_size=proof.tree_size,
        leaf_hash=_b64(proof.leaf_hash),
        audit_path=[_b64(p) for p in proof.audit_path],
    )


@router.get("/consistency", response_model=ConsistencyOut)
def consistency(
    request: Request, first: Annotated[Count, Query(ge=1)], second: Annotated[Count, Query(ge=1)]
) -> ConsistencyOut:
    proof = get_pki(request).transparency.consistency(first, second)
    return ConsistencyOut(first=first, second=second, consistency=[_b64(p) for p in proof])


@router.get("/signer", response_class=PlainTextResponse)
def signer(request: Request) -> str:
    """PEM of the log signer's certificate followed by its CA chain up to the root."""
    pki = get_pki(request)
    _, certificate = pki.signers.get(AUDIT_SIGNER)
    chain = [certificate, *pki.authorities.chain_of(certificate, SIGNER_CA)]
    return "".join(c.public_bytes(Encoding.PEM).decode() for c in chain)
